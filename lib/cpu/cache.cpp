#include "cpu/cache.hpp"

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#include "xntk/kernel.hpp"

namespace xntk {
namespace detail {

namespace {

constexpr std::align_val_t kAlign{64};

struct Cache {
  std::mutex mutex;
  std::vector<std::pair<void*, size_t>> blocks;  // (pointer, capacity)
  size_t bytes = 0;

  void free_all() {
    for (auto& [p, n] : blocks) ::operator delete(p, n, kAlign);
    blocks.clear();
    bytes = 0;
  }
  ~Cache() { free_all(); }
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

void* acquire_block(size_t& bytes) {
  bytes = std::max<size_t>((bytes + 63) / 64 * 64, 64);
  {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    // the smallest cached block that fits
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
      if (it->second >= bytes && (best == c.blocks.end() || it->second < best->second)) best = it;
    if (best != c.blocks.end()) {
      const auto [p, n] = *best;
      c.blocks.erase(best);
      c.bytes -= n;
      bytes = n;
      return p;
    }
    c.free_all();  // none fits: what is cached would only add to the peak
  }
  return ::operator new(bytes, kAlign);
}

void return_block(void* p, size_t bytes, size_t keep) {
  if (p == nullptr) return;
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  c.blocks.emplace_back(p, bytes);
  c.bytes += bytes;
  // drop the largest blocks first until the cache is within `keep`
  while (c.bytes > keep) {
    auto largest = std::max_element(c.blocks.begin(), c.blocks.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
    ::operator delete(largest->first, largest->second, kAlign);
    c.bytes -= largest->second;
    c.blocks.erase(largest);
  }
}

void free_block(void* p, size_t bytes) {
  if (p != nullptr) ::operator delete(p, bytes, kAlign);
}

size_t cached_bytes() {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

}  // namespace detail

void release_cached_memory() {
  auto& c = detail::cache();
  std::lock_guard lock(c.mutex);
  c.free_all();
}

}  // namespace xntk
