#pragma once
// Y = alpha · X Wᵀ for a few samples through a wide Linear layer. OpenBLAS packs the whole weight
// matrix for every call, which at 16 samples costs more than the arithmetic: on a 2048 × 3072 layer
// this kernel took 2.4 ms against OpenBLAS's 3.2–3.5 ms (a microbenchmark with the caches flushed before
// each call, 2 threads, AVX-512). Each output is one dot product summed in a fixed order, whatever the
// thread count.

#include <cstdint>

#include "cpu/backend.hpp"

namespace xntk::detail {

/// Whether skinny_product is compiled with wide vectors (AVX2 or AVX-512); without them BLAS is faster.
#if defined(__AVX2__) || defined(__AVX512F__)
inline constexpr bool kSkinnyProduct = true;
#else
inline constexpr bool kSkinnyProduct = false;
#endif

namespace skinny {

/// rows [j0, j0 + RB) of W against samples [s0, s0 + SB) of X: RB·SB dot products of length k, each in
/// V partial sums (one vector register) over k, then reduced.
template <int RB, int SB, class T>
inline void block(const T* __restrict x, const T* __restrict w, int64_t k, int64_t j0, int64_t s0, T* y, int64_t n,
                  T alpha) {
  constexpr int V = 64 / static_cast<int>(sizeof(T));
  T acc[RB][SB][V] = {};
  const T* wr = w + j0 * k;
  const T* xr = x + s0 * k;
  int64_t kk = 0;
  for (; kk + V <= k; kk += V)
    for (int a = 0; a < RB; ++a)
      for (int b = 0; b < SB; ++b)
#pragma omp simd
        for (int l = 0; l < V; ++l) acc[a][b][l] += wr[a * k + kk + l] * xr[b * k + kk + l];
  for (int a = 0; a < RB; ++a)
    for (int b = 0; b < SB; ++b) {
      T s = 0;
      for (int l = 0; l < V; ++l) s += acc[a][b][l];
      for (int64_t r = kk; r < k; ++r) s += wr[a * k + r] * xr[b * k + r];
      y[(s0 + b) * n + j0 + a] = alpha * s;
    }
}

template <int RB, class T>
inline void rows(const T* x, const T* w, int64_t batch, int64_t k, int64_t j0, T* y, int64_t n, T alpha) {
  int64_t s0 = 0;
  for (; s0 + 4 <= batch; s0 += 4) block<RB, 4>(x, w, k, j0, s0, y, n, alpha);
  for (; s0 < batch; ++s0) block<RB, 1>(x, w, k, j0, s0, y, n, alpha);
}

}  // namespace skinny

/// y (batch × n) = alpha · x (batch × k) · wᵀ with w (n × k), all row-major and contiguous.
template <class T>
void skinny_product(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) {
  const int64_t blocks = (n + 3) / 4;
  parallel_for(blocks, [&](int64_t bj) {
    const int64_t j0 = bj * 4;
    if (j0 + 4 <= n) {
      skinny::rows<4>(x, w, batch, k, j0, y, n, alpha);
    } else {
      for (int64_t j = j0; j < n; ++j) skinny::rows<1>(x, w, batch, k, j, y, n, alpha);
    }
  });
}

}  // namespace xntk::detail
