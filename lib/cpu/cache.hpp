#pragma once
// Scratch memory kept between kernel computations. A fresh multi-megabyte buffer costs about a
// millisecond of page faults per 4 MB; repeated calls (benchmarks, training loops, sweeps over
// checkpoints) would pay that on every Gram. Blocks handed back are cached and reused by later requests.
//
// Peak memory is never above what plain allocation reaches: a request that no cached block fits frees
// the whole cache before allocating. Between computations at most kCachedBytes stay cached;
// xntk::release_cached_memory() frees them.

#include <cstddef>

namespace xntk::detail {

/// Bytes kept cached once a computation hands its blocks back.
inline constexpr size_t kCachedBytes = size_t{64} << 20;

/// A block of at least `bytes` (64-byte aligned, contents unspecified); `bytes` becomes its capacity.
void* acquire_block(size_t& bytes);
/// Hands a block from acquire_block back to the cache (or frees it if the cache would exceed `keep`).
void return_block(void* p, size_t bytes, size_t keep = kCachedBytes);
/// Frees a block from acquire_block without caching it.
void free_block(void* p, size_t bytes);
/// Bytes currently cached (for tests).
size_t cached_bytes();

}  // namespace xntk::detail
