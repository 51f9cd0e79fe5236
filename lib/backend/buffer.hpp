#pragma once
// Buffers in a backend's memory. On the host (the CPU and reference backends) they come from the block
// cache (lib/cpu/cache.hpp), so that repeated computations reuse pages they have already touched.

#include <cstddef>
#include <cstdint>
#include <utility>

#include "backend/backend.hpp"

namespace xntk::backend {

/// An uninitialised array of T in a backend's memory. resize() keeps the block when it is large enough and
/// does not keep the contents when it is not; release() hands the block back, free() frees it.
template <class T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(const Memory& memory) : memory_(&memory) {}
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
      release();
      bytes_ = need;
      p_ = mem().acquire(bytes_);
    }
    size_ = n;
  }
  /// Hands the block back to the memory's cache.
  void release() {
    if (p_) mem().give_back(p_, bytes_);
    reset();
  }
  /// Frees the block without caching it (to lower a computation's peak).
  void free() {
    if (p_) mem().free(p_, bytes_);
    reset();
  }
  void swap(Buffer& o) noexcept {
    std::swap(memory_, o.memory_);
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    std::swap(size_, o.size_);
  }
  T* data() { return static_cast<T*>(p_); }
  const T* data() const { return static_cast<const T*>(p_); }
  int64_t size() const { return size_; }
  T& operator[](int64_t i) { return data()[i]; }
  const T& operator[](int64_t i) const { return data()[i]; }
  /// Bytes of the block held.
  size_t capacity_bytes() const { return bytes_; }

 private:
  const Memory& mem() const { return memory_ ? *memory_ : host_memory(); }
  void reset() {
    p_ = nullptr;
    bytes_ = 0;
    size_ = 0;
  }
  const Memory* memory_ = nullptr;  // null: host memory
  void* p_ = nullptr;
  size_t bytes_ = 0;
  int64_t size_ = 0;
};

}  // namespace xntk::backend
