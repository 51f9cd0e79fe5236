#pragma once
// Scratch memory kept between kernel computations. A fresh multi-megabyte buffer costs about a
// millisecond of page faults per 4 MB; repeated calls (benchmarks, training loops, sweeps over
// checkpoints) would pay that on every Gram. Blocks of 1 MB and more are mapped directly and, when
// handed back, cached for later requests; smaller ones go through malloc.
//
// A request that no cached block fits makes the cache free at least as many bytes as it allocates
// (largest blocks first), so idle blocks do not stack on top of a computation's peak. At most
// kCachedBytes stay cached; xntk::release_cached_memory() frees them.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace xntk::detail {

/// Bytes kept cached once a computation hands its blocks back.
inline constexpr size_t kCachedBytes = size_t{64} << 20;

/// A block of at least `bytes` (64-byte aligned, contents unspecified; a cached one is reused only if at
/// most twice that); `bytes` becomes its capacity.
void* acquire_block(size_t& bytes);
/// Hands a block from acquire_block back to the cache (or frees it if the cache would exceed `keep`).
void return_block(void* p, size_t bytes, size_t keep = kCachedBytes);
/// Frees a block from acquire_block without caching it.
void free_block(void* p, size_t bytes);
/// Bytes currently cached (for tests).
size_t cached_bytes();

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

/// An uninitialised array of T from the block cache. resize() keeps the block when it is large enough
/// and does not keep the contents when it is not; release() hands the block back, free() frees it.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  ~Buffer() { release(); }

  void resize(int64_t n) {
    const size_t need = static_cast<size_t>(n) * sizeof(T);
    if (need > bytes_) {
      return_block(p_, bytes_);
      bytes_ = need;
      p_ = acquire_block(bytes_);
    }
    size_ = n;
  }
  /// Hands the block back to the cache.
  void release() {
    return_block(p_, bytes_);
    reset();
  }
  /// Frees the block without caching it (to lower a computation's peak).
  void free() {
    free_block(p_, bytes_);
    reset();
  }
  void swap(Buffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    std::swap(size_, o.size_);
  }
  T* data() { return static_cast<T*>(p_); }
  const T* data() const { return static_cast<const T*>(p_); }
  int64_t size() const { return size_; }
  T& operator[](int64_t i) { return data()[i]; }
  /// Bytes of the block held.
  size_t capacity_bytes() const { return bytes_; }

 private:
  void reset() {
    p_ = nullptr;
    bytes_ = 0;
    size_ = 0;
  }
  void* p_ = nullptr;
  size_t bytes_ = 0;
  int64_t size_ = 0;
};

}  // namespace xntk::detail
