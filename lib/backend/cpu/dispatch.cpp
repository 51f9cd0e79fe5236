// Picks the CPU backend's variant at run time: the instruction sets this CPU runs, and the backend of the
// best one unless a test asks for another.

#include <utility>

#include "backend/cpu/cpu.hpp"
#include "xntk/error.hpp"

namespace xntk::backend::cpu {

namespace isa_generic {
std::unique_ptr<CpuBackend> make_variant(const Paths& paths);
}
namespace isa_avx2 {
std::unique_ptr<CpuBackend> make_variant(const Paths& paths);
}
namespace isa_avx512 {
std::unique_ptr<CpuBackend> make_variant(const Paths& paths);
}

const char* name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

std::vector<Isa> compiled() { return {Isa::generic, Isa::avx2, Isa::avx512}; }

bool supported(Isa isa) {
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    case Isa::avx512:
      return supported(Isa::avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
  }
  return false;
}

Isa best() {
  if (supported(Isa::avx512)) return Isa::avx512;
  if (supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

std::vector<std::pair<std::string, Choice Paths::*>> path_names() {
  return {{"skinny", &Paths::skinny},           {"masked_product", &Paths::masked_product},
          {"gated_tiles", &Paths::gated_tiles}, {"masked_gram", &Paths::masked_gram},
          {"direct_conv", &Paths::direct_conv}, {"split_k", &Paths::split_k},
          {"fast_tanh", &Paths::fast_tanh},     {"channel_conv", &Paths::channel_conv}};
}

bool compiled_in(Isa isa, Path path) { return path != Path::gated_tiles || isa == Isa::avx512; }

std::unique_ptr<CpuBackend> make(const Paths& paths) {
  if (!supported(paths.isa))
    throw Error(std::string("cpu backend: this CPU does not run the ") + name(paths.isa) + " variant");
  switch (paths.isa) {
    case Isa::avx512: return isa_avx512::make_variant(paths);
    case Isa::avx2: return isa_avx2::make_variant(paths);
    case Isa::generic: break;
  }
  return isa_generic::make_variant(paths);
}

const CpuBackend& instance() {
  static const std::unique_ptr<CpuBackend> b = make();
  return *b;
}

}  // namespace xntk::backend::cpu
