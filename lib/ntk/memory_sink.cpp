#include "ntk/memory_sink.hpp"

#include <algorithm>

#include "backend/parallel.hpp"
#include "cpu/cache.hpp"
#include "ntk/plan.hpp"

namespace xntk::engine {

using backend::parallel_for_work;
using backend::parallel_rows;

namespace {

/// Copies a block (n1, n2, per) into the kernel at (i0, j0); with `mirror`, also its transpose (samples and,
/// in full mode, outputs swapped) at (j0, i0).
template <class T>
void scatter(const T* block, const KernelBlock& b, int64_t cols, int64_t outputs, Mode mode, bool mirror, T* dst) {
  const int64_t per = mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1;
  parallel_for_work(b.n1, static_cast<double>(b.n2 * per * (mirror ? 2 : 1)), [&](int64_t i) {
    for (int64_t j = 0; j < b.n2; ++j) {
      const T* src = block + (i * b.n2 + j) * per;
      std::copy(src, src + per, dst + ((b.i0 + i) * cols + b.j0 + j) * per);
      if (!mirror) continue;
      copy_swapped(src, dst + ((b.j0 + j) * cols + b.i0 + i) * per, outputs, mode);
    }
  });
}

}  // namespace

template <class T>
void mirror_samples(T* k, int64_t n, int64_t outputs, Mode mode) {
  const int64_t per = mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1;
  const int64_t b = 32, blocks = (n + b - 1) / b;
  // block row bi has blocks − bi blocks to fill: parallel_rows' pairing balances them
  parallel_rows(blocks, blocks, true, static_cast<double>(b * b * per), [&](int64_t bi) {
    const int64_t i0 = bi * b, i1 = std::min(n, i0 + b);
    for (int64_t j0 = i0; j0 < n; j0 += b) {
      const int64_t j1 = std::min(n, j0 + b);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t js = std::max(j0, i + 1);
        if (per == 1) {
          for (int64_t j = js; j < j1; ++j) k[i * n + j] = k[j * n + i];
          continue;
        }
        for (int64_t j = js; j < j1; ++j) copy_swapped(k + (j * n + i) * per, k + (i * n + j) * per, outputs, mode);
      }
    }
  });
}

template <class T>
double MemorySink<T>::resident_bytes(const KernelLayout& layout) const {
  return static_cast<double>(sizeof(T)) * static_cast<double>(numel(layout.shape)) *
         static_cast<double>(1 + layout.components.size());
}

template <class T>
void MemorySink<T>::begin(const KernelLayout& layout) {
  layout_ = layout;
  const double out_bytes = resident_bytes(layout), avail = available_bytes();
  if (out_bytes > 0.9 * avail)
    throw Error("kernel: the result needs " + std::to_string(out_bytes / 1e9) + " GB but only " +
                std::to_string(avail / 1e9) + " GB of memory is available; use trace or diagonal mode, fewer " +
                "samples, or no components");
  const int64_t size = numel(layout.shape);
  auto zeroed = [&](Tensor<T>& t) {
    if (t.shape() == layout.shape)
      std::fill(t.data(), t.data() + size, T(0));
    else
      t = Tensor<T>(layout.shape, detail::zeroed_vector<T>(size));
  };
  zeroed(k_.total);
  k_.components.resize(layout.components.size());
  for (auto& c : k_.components) zeroed(c);
}

template <class T>
void MemorySink<T>::put(int slot, const KernelBlock& block, const T* values) {
  scatter(values, block, layout_.m, layout_.outputs, layout_.mode, block.mirrored, tensor(slot).data());
}

template <class T>
void MemorySink<T>::end() {
  if (!layout_.symmetric) return;  // the blocks formed the pairs (i, j ≤ i) of each diagonal block
  mirror_samples(k_.total.data(), layout_.n, layout_.outputs, layout_.mode);
  for (auto& c : k_.components) mirror_samples(c.data(), layout_.n, layout_.outputs, layout_.mode);
}

template class MemorySink<float>;
template class MemorySink<double>;
template void mirror_samples(float*, int64_t, int64_t, Mode);
template void mirror_samples(double*, int64_t, int64_t, Mode);

}  // namespace xntk::engine
