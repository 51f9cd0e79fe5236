// Y = alpha · X Wᵀ for a few samples through a wide Linear layer. OpenBLAS packs the whole weight
// matrix for every call, which at 16 samples costs more than the arithmetic. Two forms, each output a
// sum in a fixed order whatever the thread count:
// - sample-vectorised (from 5 float / 3 double samples up): the samples, transposed and zero-padded
//   to whole vectors, are one (or a few) vector registers per input; each weight is broadcast and
//   multiplied into them, RB rows of W at a time, so every load of W feeds a full vector of products.
//   On a 2048 × 3072 layer with 16 samples: 1.3–1.5 ms against the dot-product form's 2.5–2.8 ms and
//   OpenBLAS's 3.3–6.7 ms (medians of 9, caches flushed before each call, 2 threads, AVX-512; OpenBLAS
//   3.3–3.8 ms as Debian's pthreads build, 4.2–6.7 ms as the OpenMP build xntk links).
// - dot products (fewer samples, where padding would waste most of each vector): 4 rows × 4 samples
//   of partial-sum vectors along k. With 4 float samples: 1.2–1.3 ms against the padded form's 1.5.

// Included inside the ISA region by variant.inc; prelude.hpp provides the includes.

/// The most samples skinny_product takes (its partial sums live on the stack).
inline constexpr int64_t kSkinnyMaxBatch = 32;

/// Whether skinny_product is worth taking automatically: with wide vectors (AVX2 or AVX-512); without them
/// BLAS is faster.
inline constexpr bool kSkinnyProduct = XNTK_CPU_ISA >= 2;

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

/// The sample-vectorised form works in whole registers (with AVX2, a 64-byte vector is two registers
/// and its 8 × 1 tile spilled: 8 times slower than with 32-byte vectors).
inline constexpr int kOuterBytes = kRegisterBytes, kRegisters = kVectorRegisters;
template <class T>
inline constexpr int64_t kOuterLanes = kOuterBytes / static_cast<int64_t>(sizeof(T));
/// Rows of W per tile for SV vectors of samples: RB·SV accumulators, SV sample vectors and a broadcast
/// weight fit the registers (8 rows measured fastest where they fit).
template <int SV>
inline constexpr int kOuterRows = (8 * SV + SV + 1 <= kRegisters) ? 8 : (kRegisters - SV - 1) / SV;
/// The most vectors of samples the sample-vectorised form takes (with AVX2, 3 and 4 vectors measured
/// slower than the dot-product form).
inline constexpr int64_t kOuterMaxVectors = kRegisters / 8;

/// yt[i][·] = Σ_j w[i, j] · xt[j][·] (j increasing) for rows i in [i0, i0 + RB), where xt holds SV
/// vectors per input j (the samples, zero-padded) and yt SV vectors per row.
template <int RB, int SV, class T>
inline void outer_rows(const T* __restrict xt, const T* __restrict w, int64_t k, int64_t i0, T* __restrict yt) {
  using V = typename Vec<T, kOuterBytes>::type;
  constexpr int64_t L = kOuterLanes<T>;
  V acc[RB][SV];
  for (int r = 0; r < RB; ++r)
    for (int q = 0; q < SV; ++q) acc[r][q] = V{};
  const T* wr = w + i0 * k;
  for (int64_t j = 0; j < k; ++j) {
    // one vector at a time: copying the whole array at once made GCC keep acc in memory
    V xv[SV];
    for (int q = 0; q < SV; ++q) std::memcpy(&xv[q], xt + (j * SV + q) * L, sizeof(V));
    for (int r = 0; r < RB; ++r) {
      const T c = wr[r * k + j];
      for (int q = 0; q < SV; ++q) acc[r][q] += c * xv[q];
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int q = 0; q < SV; ++q) std::memcpy(yt + ((i0 + r) * SV + q) * L, &acc[r][q], sizeof(V));
}

/// The sample-vectorised form with SV vectors of samples per input.
template <int SV, class T>
void outer(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) {
  constexpr int RB = kOuterRows<SV>;
  constexpr int64_t P = SV * kOuterLanes<T>;
  Buffer<T> xt, yt;
  xt.resize(k * P);
  yt.resize(n * P);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t s = 0; s < P; ++s) xt[j * P + s] = s < batch ? x[s * k + j] : T(0);
  const int64_t blocks = n / RB;
  parallel_blocks(blocks, [&](int64_t b) { outer_rows<RB, SV>(xt.data(), w, k, b * RB, yt.data()); });
  for (int64_t i = blocks * RB; i < n; ++i) outer_rows<1, SV>(xt.data(), w, k, i, yt.data());
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t i = 0; i < n; ++i) y[s * n + i] = alpha * yt[i * P + s];
}

}  // namespace skinny

/// y (batch × n) = alpha · x (batch × k) · wᵀ with w (n × k), all row-major and contiguous;
/// batch ≤ kSkinnyMaxBatch.
template <class T>
void skinny_product(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) {
  constexpr int64_t L = skinny::kOuterLanes<T>;
  // the sample-vectorised form unless padding would leave most of a vector empty
  if (4 * batch > L && batch <= skinny::kOuterMaxVectors * L) {
    switch ((batch + L - 1) / L) {
      case 1: skinny::outer<1>(batch, n, k, alpha, x, w, y); return;
      case 2: skinny::outer<2>(batch, n, k, alpha, x, w, y); return;
      case 3: skinny::outer<3>(batch, n, k, alpha, x, w, y); return;
      default: skinny::outer<4>(batch, n, k, alpha, x, w, y); return;
    }
  }
  // a loop over whole blocks without exception handling, the last n % 4 rows after it: through
  // parallel_for (a try block around each body), or with the remainder rows in the same loop, the compiled
  // loop was 15-30% slower (microbenchmark, 16 samples × 3072 inputs through 2048 rows). Nothing here throws.
  const int64_t blocks = n / 4;
  parallel_blocks(blocks, [&](int64_t bj) { skinny::rows<4>(x, w, batch, k, bj * 4, y, n, alpha); });
  for (int64_t j = blocks * 4; j < n; ++j) skinny::rows<1>(x, w, batch, k, j, y, n, alpha);
}
