// Backends by name, and the host memory the CPU and reference backends share.

#include "backend/backend.hpp"

#include "backend/cpu/cpu.hpp"
#include "backend/reference/reference.hpp"
#include "cpu/cache.hpp"
#include "xntk/error.hpp"

namespace xntk::backend {

namespace {

class HostMemory final : public Memory {
 public:
  void* acquire(size_t& bytes) const override { return detail::acquire_block(bytes); }
  void give_back(void* p, size_t bytes) const override { detail::return_block(p, bytes); }
  void free(void* p, size_t bytes) const override { detail::free_block(p, bytes); }
};

}  // namespace

const Memory& host_memory() {
  static const HostMemory m;
  return m;
}

std::vector<std::string> names() { return {"cpu", "reference"}; }

const Backend& get(const std::string& name) {
  if (name == "cpu") return cpu::instance();
  if (name == "reference") return reference::instance();
  throw Error("backend: unknown backend \"" + name + "\"; expected cpu or reference");
}

}  // namespace xntk::backend
