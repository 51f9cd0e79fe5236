#pragma once
// din = alpha · dout · W for a few samples whose back-propagated rows are exactly zero at the same
// columns, as they are after a ReLU: sample s's R rows (one per output) only need the rows of W at the
// columns k where one of them is non-zero, about half of them at initialisation. A dense GEMM does all
// the work; this kernel skips the zero columns, sample by sample.
//
// Loop order (per thread, over its own 2V-column strips of W):
//   for each block of kBlockRows rows of W: copy the block's strips into a small buffer (the reads are
//   sequential and the buffer stays in L2), then for each strip and each sample accumulate the sample's
//   active rows of the block into an R × 2V register tile of din.
// Each output sums its terms in increasing k whatever the thread count, so results do not depend on it.
// Measured on workload 4's (16 samples × 8 outputs) · (2048 × 2048) with half the columns active
// (microbenchmark, 2 threads, caches flushed, median of 9): 4.95 ms against OpenBLAS's dense 6.99 ms.

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/cache.hpp"
#include "cpu/vector.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::detail {

/// Whether masked_product is compiled in: its register tiles need AVX-512's 32 vector registers.
#if defined(__AVX512F__)
inline constexpr bool kMaskedProduct = true;
#else
inline constexpr bool kMaskedProduct = false;
#endif

/// The most rows per sample (outputs) and the most samples masked_product takes.
inline constexpr int64_t kMaskedMaxRows = 8;
inline constexpr int64_t kMaskedMaxBatch = 32;

namespace masked {

/// Rows of W per block: the block's share of a thread's strips stays in L2.
inline constexpr int64_t kBlockRows = 64;
/// Above this fraction of active (sample, column) pairs the dense GEMM is used. Medians of 9 runs for
/// the product above: at 50/60/70/80% active, 4.95/5.22/6.10/6.65 ms against OpenBLAS's 6.99/6.40/
/// 6.96/7.19 ms.
inline constexpr double kMaxActive = 0.8;

/// out (R × 2V, leading dimension ldo) (+)= Σ_a d[a·R + r] · strip[(rows[a] − k0) · 2V + c] over the active
/// rows a < na of one sample.
template <int R, bool Accumulate, class T>
inline void tile(const T* __restrict d, const int32_t* __restrict rows, int64_t na, int64_t k0,
                 const T* __restrict strip, T* __restrict out, int64_t ldo) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>, C = 2 * L;
  V acc[R][2];
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) {
      if constexpr (Accumulate) {
        std::memcpy(&acc[r][h], out + r * ldo + h * L, sizeof(V));
      } else {
        acc[r][h] = V{};
      }
    }
  for (int64_t a = 0; a < na; ++a) {
    const T* wr = strip + (rows[a] - k0) * C;
    V w0, w1;
    std::memcpy(&w0, wr, sizeof(V));
    std::memcpy(&w1, wr + L, sizeof(V));
    const T* da = d + a * R;
    for (int r = 0; r < R; ++r) {
      acc[r][0] += da[r] * w0;
      acc[r][1] += da[r] * w1;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) std::memcpy(out + r * ldo + h * L, &acc[r][h], sizeof(V));
}

template <int R, class T>
void run(int64_t batch, int64_t k, int64_t n, const T* packed, const int32_t* active, const int64_t* count, const T* w,
         T* din) {
  constexpr int64_t C = 2 * kLanes<T>;
  const int64_t strips = n / C;
#ifdef _OPENMP
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  const int threads = 1;
#endif
  const int64_t most = (strips + threads - 1) / threads;
  Buffer<T> blocks;
  blocks.resize(static_cast<int64_t>(threads) * most * kBlockRows * C);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int t = 0, nt = 1;
#endif
    const int64_t s0 = strips * t / nt, s1 = strips * (t + 1) / nt;
    T* block = blocks.data() + t * most * kBlockRows * C;
    int64_t first[kMaskedMaxBatch], last[kMaskedMaxBatch];
    std::fill(first, first + batch, 0);
    for (int64_t k0 = 0; k0 < k && s1 > s0; k0 += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, k - k0);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t s = s0; s < s1; ++s)
          std::memcpy(block + ((s - s0) * kBlockRows + i) * C, w + (k0 + i) * n + s * C, C * sizeof(T));
      for (int64_t b = 0; b < batch; ++b) {
        const int32_t* act = active + b * k;
        int64_t e = first[b];
        while (e < count[b] && act[e] < k0 + rows) ++e;
        last[b] = e;
      }
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t b = 0; b < batch; ++b) {
          const int64_t a0 = first[b], na = last[b] - a0;
          const T* d = packed + (b * k + a0) * R;
          const int32_t* rws = active + b * k + a0;
          T* out = din + b * R * n + s * C;
          const T* strip = block + (s - s0) * kBlockRows * C;
          if (k0 == 0)
            tile<R, false>(d, rws, na, k0, strip, out, n);
          else if (na > 0)
            tile<R, true>(d, rws, na, k0, strip, out, n);
        }
      std::copy(last, last + batch, first);
    }
  }
  // columns past the last whole strip
  for (int64_t b = 0; b < batch; ++b)
    for (int r = 0; r < R; ++r)
      for (int64_t j = strips * C; j < n; ++j) {
        T sum = 0;
        for (int64_t a = 0; a < count[b]; ++a) sum += packed[(b * k + a) * R + r] * w[active[b * k + a] * n + j];
        din[(b * R + r) * n + j] = sum;
      }
}

}  // namespace masked

/// din (batch·rows × n) = alpha · dout (batch·rows × k) · w (k × n), all row-major, where sample b owns
/// rows [b·rows, (b + 1)·rows) and terms whose column k of dout is zero in all of the sample's rows are
/// skipped (so a NaN or infinite weight met only by zeros does not reach din). Returns false, computing
/// nothing, when more than kMaxActive of the (sample, column) pairs are active: a dense GEMM is faster
/// there, and also outside 1 ≤ rows ≤ kMaskedMaxRows, 1 ≤ batch ≤ kMaskedMaxBatch, or for k = 0.
template <class T>
bool masked_product(int64_t batch, int64_t rows, int64_t k, int64_t n, T alpha, const T* dout, const T* w, T* din) {
  if (batch < 1 || batch > kMaskedMaxBatch || rows < 1 || rows > kMaskedMaxRows || k < 1) return false;
  auto on = [&](int64_t b, int64_t j) {
    const T* d = dout + b * rows * k + j;
    bool any = false;
    for (int64_t r = 0; r < rows; ++r) any |= d[r * k] != T(0);
    return any;
  };
  // count first (reads only), so that dense deltas cost one pass over dout before the GEMM
  int64_t count[kMaskedMaxBatch];
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (batch > 1 && !omp_in_parallel())
#endif
  for (int64_t b = 0; b < batch; ++b) {
    int64_t c = 0;
    for (int64_t j = 0; j < k; ++j) c += on(b, j);
    count[b] = c;
  }
  int64_t total = 0;
  for (int64_t b = 0; b < batch; ++b) total += count[b];
  if (static_cast<double>(total) > masked::kMaxActive * static_cast<double>(batch * k)) return false;

  Buffer<T> packed;
  Buffer<int32_t> active;
  packed.resize(batch * k * rows);
  active.resize(batch * k);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (batch > 1 && !omp_in_parallel())
#endif
  for (int64_t b = 0; b < batch; ++b) {
    int64_t c = 0;
    for (int64_t j = 0; j < k; ++j) {
      if (!on(b, j)) continue;
      active[b * k + c] = static_cast<int32_t>(j);
      for (int64_t r = 0; r < rows; ++r) packed[(b * k + c) * rows + r] = alpha * dout[(b * rows + r) * k + j];
      ++c;
    }
  }
  switch (rows) {
    case 1: masked::run<1>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 2: masked::run<2>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 3: masked::run<3>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 4: masked::run<4>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 5: masked::run<5>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 6: masked::run<6>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    case 7: masked::run<7>(batch, k, n, packed.data(), active.data(), count, w, din); break;
    default: masked::run<8>(batch, k, n, packed.data(), active.data(), count, w, din); break;
  }
  return true;
}

}  // namespace xntk::detail
