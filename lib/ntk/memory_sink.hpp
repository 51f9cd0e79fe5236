#pragma once
// The in-memory sink behind `ntk`: the result tensors of a Kernel, filled block by block (or in place when
// one block covers everything), and mirrored once at the end when X2 was omitted.

#include <algorithm>

#include "xntk/sink.hpp"

namespace xntk::engine {

template <class T>
class MemorySink final : public Sink<T> {
 public:
  /// Tensors `k` already holds in the result's shape are reused, zeroed in place (engine::explicit_kernel_into);
  /// an empty Kernel gets new ones.
  explicit MemorySink(Kernel<T>& k) : k_(k) {}
  /// Allocates the total and the components (or zeroes those held in the result's shape); xntk::Error if they
  /// need more than 90% of the available memory.
  void begin(const KernelLayout& layout) override;
  double resident_bytes(const KernelLayout& layout) const override;
  T* whole(int slot) override { return tensor(slot).data(); }
  void put(int slot, const KernelBlock& block, const T* values) override;
  void end() override;

 private:
  Tensor<T>& tensor(int slot) { return slot == 0 ? k_.total : k_.components[static_cast<size_t>(slot - 1)]; }
  Kernel<T>& k_;
  KernelLayout layout_;
};

/// The values of pair (j, i) from those of pair (i, j): in full mode the O × O block transposed (outputs
/// swapped), otherwise the same values.
template <class T>
inline void copy_swapped(const T* src, T* dst, int64_t outputs, Mode mode) {
  if (mode != Mode::full) {
    std::copy(src, src + (mode == Mode::diagonal ? outputs : 1), dst);
    return;
  }
  for (int64_t o = 0; o < outputs; ++o)
    for (int64_t q = 0; q < outputs; ++q) dst[q * outputs + o] = src[o * outputs + q];
}

/// Copies the pairs (i, j ≤ i) of each block (i, j) onto (j, i): samples swapped and, in full mode, outputs
/// swapped. Copies only, so the result is exactly symmetric.
template <class T>
void mirror_samples(T* k, int64_t n, int64_t outputs, Mode mode);

}  // namespace xntk::engine
