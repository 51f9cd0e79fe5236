#pragma once
// Scratch memory kept between kernel computations. A fresh multi-megabyte buffer costs about a
// millisecond of page faults per 4 MB; repeated calls (benchmarks, training loops, sweeps over
// checkpoints) would pay that on every Gram. Blocks of 64 KB and more are mapped directly and, when
// handed back, cached for later requests; smaller ones go through malloc.
//
// Idle blocks stay cached up to cached_limit(). A request that no cached block fits gets a new block, and
// idle blocks are freed first, as few as will do, so that the cache could take the new one back within
// its limit: idle blocks never stack more than the limit on top of a computation's peak, and none on
// top of a computation whose blocks are larger. xntk::release_cached_memory() frees them.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xntk::detail {

/// The least and the most bytes of idle blocks kept cached. The functorch tutorial's CNN (20 × 5 images)
/// hands back ~70 MB of blocks per call; when a miss freed as much as it allocated (largest blocks first)
/// every call mapped 62 MB afresh (~3900 page faults), and under a 64 MB limit it still maps 23 MB. With
/// 100 images it hands back ~330 MB (blocks of 115, 100, 2 × 37, 2 × 10 and 2 × 8.7 MB): under 128 MB every
/// call mapped all of them afresh, 10–12% of its time in the kernel clearing pages.
inline constexpr size_t kMinCachedBytes = size_t{128} << 20, kMaxCachedBytes = size_t{2} << 30;

/// Bytes of idle blocks kept cached: a sixteenth of the memory available when first asked (the system's
/// and the memory cgroups', as the tile plan reads it), within [kMinCachedBytes, kMaxCachedBytes]; fixed
/// for the process from then on.
size_t cached_limit();

/// Blocks of at least this many bytes are mapped and cached; smaller ones come from malloc.
inline constexpr size_t kMapBytes = size_t{64} << 10;

/// A block of at least `bytes` (64-byte aligned, contents unspecified; a cached one is reused only if at
/// most twice that); `bytes` becomes its capacity.
void* acquire_block(size_t& bytes);
/// Hands a block from acquire_block back to the cache (or frees it if the cache would exceed `keep`).
void return_block(void* p, size_t bytes, size_t keep = cached_limit());
/// Frees a block from acquire_block without caching it.
void free_block(void* p, size_t bytes);
/// Bytes currently cached (for tests).
size_t cached_bytes();
/// Blocks mapped from the system so far (for tests).
size_t mapped_blocks();

/// Asks for 2 MB pages on the whole 2 MB-aligned pages inside [p, p + bytes) before they are first
/// touched (no-op for small ranges or where the system does not offer them).
void advise_huge_pages(void* p, size_t bytes);

/// A zero-filled vector of n values whose pages are faulted in as 2 MB pages where possible: the
/// kernel's result arrays, which are returned to the caller and so cannot come from the cache.
template <class T>
std::vector<T> zeroed_vector(int64_t n) {
  std::vector<T> v;
  v.reserve(static_cast<size_t>(n));
  advise_huge_pages(v.data(), static_cast<size_t>(n) * sizeof(T));
  v.resize(static_cast<size_t>(n));
  return v;
}

}  // namespace xntk::detail
