#include "cpu/cache.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#include "ntk/plan.hpp"
#include "xntk/kernel.hpp"

namespace xntk {
namespace detail {

namespace {

constexpr std::align_val_t kAlign{64};
// Blocks from 64 KB up are mapped from the kernel directly, so that freeing one returns its pages at
// once: through malloc they could stay in the heap (glibc raises its mmap threshold to the size of
// any mapped chunk freed), and repeated computations then grew the resident set call by call. From 1 MB
// (the limit until 2026-11-29) the tutorial CNN still faulted ~430 pages per call in malloc's blocks
// below it (a conv layer's per-sample patch matrix, the 5-image side's values): 4.5 ms of a 95 ms call
// on one thread where a fault costs ~11 µs (this VM); from 64 KB none.

std::atomic<size_t> mapped{0};

void* allocate(size_t bytes) {
  if (bytes < kMapBytes) return ::operator new(bytes, kAlign);
  mapped.fetch_add(1, std::memory_order_relaxed);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // 2 MB pages where the system allows them on request: one fault instead of 512
  if (bytes >= (size_t{4} << 20)) advise_huge_pages(p, bytes);
  return p;
}

void deallocate(void* p, size_t bytes) {
  if (bytes < kMapBytes)
    ::operator delete(p, kAlign);  // unsized: clang enables sized deallocation only with -fsized-deallocation
  else
    munmap(p, bytes);
}

struct Cache {
  std::mutex mutex;
  std::vector<std::pair<void*, size_t>> blocks;  // (pointer, capacity)
  size_t bytes = 0;

  /// Frees blocks until at most `limit` bytes stay cached, by best fit: the smallest block that frees
  /// enough on its own, else the largest, and again. Freeing no more than needed keeps the blocks that
  /// other requests of the same computation will ask for.
  void drop_until(size_t limit) {
    while (bytes > limit) {
      const size_t need = bytes - limit;
      auto pick = blocks.end();
      for (auto it = blocks.begin(); it != blocks.end(); ++it)
        if (it->second >= need && (pick == blocks.end() || it->second < pick->second)) pick = it;
      if (pick == blocks.end())
        pick = std::max_element(blocks.begin(), blocks.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; });
      deallocate(pick->first, pick->second);
      bytes -= pick->second;
      blocks.erase(pick);
    }
  }
  void free_all() {
    for (auto& [p, n] : blocks) deallocate(p, n);
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

size_t cached_limit() {
  static const size_t limit = [] {
    const double sixteenth = engine::available_bytes() / 16;
    if (!(sixteenth > static_cast<double>(kMinCachedBytes))) return kMinCachedBytes;
    return std::min(kMaxCachedBytes, static_cast<size_t>(sixteenth) / 4096 * 4096);
  }();
  return limit;
}

void* acquire_block(size_t& bytes) {
  bytes = std::max<size_t>((bytes + 63) / 64 * 64, 64);
  if (bytes < kMapBytes) return allocate(bytes);  // malloc serves small blocks well: not cached
  bytes = (bytes + 4095) / 4096 * 4096;
  {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    // the smallest cached block that fits and is at most twice the request (a larger one would sit
    // mostly unused while a later request it could have served allocates afresh)
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
      if (it->second >= bytes && it->second / 2 <= bytes && (best == c.blocks.end() || it->second < best->second))
        best = it;
    if (best != c.blocks.end()) {
      const auto [p, n] = *best;
      c.blocks.erase(best);
      c.bytes -= n;
      bytes = n;
      return p;
    }
    // none fits: a new block, which the cache must be able to take back within its limit, so idle
    // blocks make room for it now (a request above the limit empties the cache: a computation that
    // large gets no idle blocks stacked on top of its peak)
    const size_t limit = cached_limit();
    c.drop_until(limit > bytes ? limit - bytes : 0);
  }
  return allocate(bytes);
}

void return_block(void* p, size_t bytes, size_t keep) {
  if (p == nullptr) return;
  if (bytes < kMapBytes) {
    deallocate(p, bytes);
    return;
  }
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  c.blocks.emplace_back(p, bytes);
  c.bytes += bytes;
  c.drop_until(keep);
}

void advise_huge_pages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t huge = uintptr_t{2} << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + huge - 1) & ~(huge - 1),
                  end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(huge - 1);
  if (p != nullptr && end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

void free_block(void* p, size_t bytes) {
  if (p != nullptr) deallocate(p, bytes);
}

size_t mapped_blocks() { return mapped.load(std::memory_order_relaxed); }

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
