#pragma once
// Y = alpha · X Wᵀ for a few samples through a wide Linear layer. OpenBLAS packs the whole weight
// matrix for every call, which at 16 samples costs more than the arithmetic: on a 2048 × 3072 layer
// this kernel took 2.2–2.5 ms against OpenBLAS's 3.9–4.6 ms (medians of a microbenchmark with the caches
// flushed before each call, 2 threads, AVX-512). Each output is one dot product summed in a fixed order,
// whatever the thread count.

#include <cstdint>

#include "cpu/backend.hpp"

namespace xntk::detail {

/// The most samples skinny_product takes (its partial sums live on the stack).
inline constexpr int64_t kSkinnyMaxBatch = 32;

/// Whether skinny_product is compiled with wide vectors (AVX2 or AVX-512); without them BLAS is faster.
#if defined(__AVX2__) || defined(__AVX512F__)
inline constexpr bool kSkinnyProduct = true;
#else
inline constexpr bool kSkinnyProduct = false;
#endif

namespace skinny {

/// rows [j0, j0 + RB) of W against samples [s0, s0 + SB) of X over k in [0, kv): RB·SB dot products,
/// each as V partial sums (one vector register) added to acc.
template <int RB, int SB, class T>
inline void block(const T* __restrict x, const T* __restrict w, int64_t k, int64_t kv, int64_t j0, int64_t s0,
                  T (*__restrict acc)[64 / sizeof(T)]) {
  constexpr int V = 64 / static_cast<int>(sizeof(T));
  T a[RB][SB][V];
  for (int r = 0; r < RB; ++r)
    for (int b = 0; b < SB; ++b)
      for (int l = 0; l < V; ++l) a[r][b][l] = acc[r * SB + b][l];
  const T* wr = w + j0 * k;
  const T* xr = x + s0 * k;
  for (int64_t kk = 0; kk < kv; kk += V)
    for (int r = 0; r < RB; ++r)
      for (int b = 0; b < SB; ++b)
#pragma omp simd
        for (int l = 0; l < V; ++l) a[r][b][l] += wr[r * k + kk + l] * xr[b * k + kk + l];
  for (int r = 0; r < RB; ++r)
    for (int b = 0; b < SB; ++b)
      for (int l = 0; l < V; ++l) acc[r * SB + b][l] = a[r][b][l];
}

/// y[s, j0 + r] = alpha · ⟨x_s, w_(j0+r)⟩ for r < RB and every sample s < batch ≤ kSkinnyMaxBatch.
template <int RB, class T>
inline void rows(const T* x, const T* w, int64_t batch, int64_t k, int64_t j0, T* y, int64_t n, T alpha) {
  constexpr int V = 64 / static_cast<int>(sizeof(T));
  const int64_t kv = k / V * V;
  T acc[RB * kSkinnyMaxBatch][V] = {};
  const int64_t full = batch / 4 * 4;
  for (int64_t s0 = 0; s0 < full; s0 += 4) block<RB, 4>(x, w, k, kv, j0, s0, acc + s0 * RB);
  for (int64_t s0 = full; s0 < batch; ++s0) block<RB, 1>(x, w, k, kv, j0, s0, acc + s0 * RB);
  for (int64_t s = 0; s < batch; ++s)
    for (int r = 0; r < RB; ++r) {
      const int64_t slot = s < full ? (s / 4 * 4) * RB + r * 4 + s % 4 : s * RB + r;
      T sum = 0;
      for (int l = 0; l < V; ++l) sum += acc[slot][l];
      for (int64_t q = kv; q < k; ++q) sum += w[(j0 + r) * k + q] * x[s * k + q];
      y[s * n + j0 + r] = alpha * sum;
    }
}

}  // namespace skinny

/// y (batch × n) = alpha · x (batch × k) · wᵀ with w (n × k), all row-major and contiguous;
/// batch ≤ kSkinnyMaxBatch.
template <class T>
void skinny_product(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) {
  // a plain OpenMP loop over whole blocks, the last n % 4 rows after it: through parallel_for, or with
  // the remainder rows in the same loop, the compiled loop was 15-30% slower (microbenchmark, 16 samples
  // × 3072 inputs through 2048 rows). Nothing here throws.
  const int64_t blocks = n / 4;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1 && !omp_in_parallel())
#endif
  for (int64_t bj = 0; bj < blocks; ++bj) skinny::rows<4>(x, w, batch, k, bj * 4, y, n, alpha);
  for (int64_t j = blocks * 4; j < n; ++j) skinny::rows<1>(x, w, batch, k, j, y, n, alpha);
}

}  // namespace xntk::detail
