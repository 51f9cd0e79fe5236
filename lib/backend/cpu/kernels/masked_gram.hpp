// The Gram matrix of back-propagated deltas in full mode, D[(i,r), (j,s)] = Σ_k a[i·R + r, k] · b[j·R + s, k],
// where each sample owns R rows (one per output). After a ReLU a sample's R rows are zero at the same
// columns k (ReLU'(z_k) = 0), about half of them at initialisation, so a sample pair has only about a
// quarter of the k terms in common that are not exactly zero. A dense SYRK or GEMM multiplies all of
// them; this kernel sums, for each R × R block, only the columns where both samples have a non-zero row.
//
// Layout: the rows of a and b are copied sample by sample into k × P blocks (P = 8 or 16 lanes ≥ R, zero
// padded), so that column k of a sample is one vector: a shared column is one vector load of b's sample and
// R broadcasts of a's. Each block sums its terms in increasing k, whatever the thread count, so results do
// not depend on it.
// Measured on workload 4's three 128 × 2048 delta Grams (16 samples × 8 outputs, a quarter of the units
// shared, 2 threads, microbenchmark in /tmp, medians of 21): 0.16–0.18 ms each against 0.29–0.33 ms for
// OpenBLAS's SYRK; the blocks alone take ~2.1 ns per shared unit on one core.

// Included inside the ISA region by variant.inc; prelude.hpp provides the includes.

/// Whether masked_gram is taken automatically: its R × P accumulators need AVX-512's 32 vector registers
/// (elsewhere it computes the same, slower).
inline constexpr bool kMaskedGram = kVectorRegisters >= 32;

/// The rows per sample masked_gram takes. Below 4 most of a vector's lanes would be padding; above 12
/// its accumulators would not fit in the registers.
inline constexpr int64_t kMaskedGramMinRows = 4, kMaskedGramMaxRows = 12;

namespace mgram {

/// A column both samples of a pair have non-zero costs about as much as step_cost(R) multiply-adds of the
/// dense SYRK / GEMM (whose R² per column and pair run at ~120 GFLOP/s on these shapes): the time of a
/// block hardly depends on R up to a vector's 8 lanes, then R columns take two vectors. From workload 4's
/// delta Grams (R = 8, a quarter of the columns shared: 0.16 ms against SYRK's 0.29) and R = 12 (0.41
/// against 0.55 ms), microbenchmark in /tmp, 2 threads.
inline constexpr double step_cost(int64_t R) { return R <= 8 ? 140.0 : 280.0; }

/// Bit k of mask (k < n, 64 per word): whether any of the R rows at a + r·lda has a non-zero value at k.
/// A NaN counts as non-zero.
template <class T>
void nonzero_columns(const T* a, int64_t R, int64_t lda, int64_t n, uint64_t* mask) {
  const int64_t words = (n + 63) / 64;
  for (int64_t w = 0; w < words; ++w) {
    const int64_t k0 = w * 64, k1 = std::min(n, k0 + 64);
    uint64_t bits = 0;
#if XNTK_CPU_ISA >= 3
    constexpr int64_t L = kLanes<T>;
    int64_t k = k0;
    for (; k + L <= k1; k += L) {
      uint64_t m = 0;
      for (int64_t r = 0; r < R; ++r) {
        if constexpr (sizeof(T) == 4)
          m |= _mm512_cmp_ps_mask(_mm512_loadu_ps(a + r * lda + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        else
          m |= _mm512_cmp_pd_mask(_mm512_loadu_pd(a + r * lda + k), _mm512_setzero_pd(), _CMP_NEQ_UQ);
      }
      bits |= m << (k - k0);
    }
#else
    int64_t k = k0;
#endif
    for (; k < k1; ++k) {
      bool any = false;
      for (int64_t r = 0; r < R; ++r) any |= a[r * lda + k] != T(0);
      bits |= static_cast<uint64_t>(any) << (k - k0);
    }
    mask[w] = bits;
  }
}

/// out (R × R, leading dimension ldc) = alpha · Σ_k at[k·P + r] · bt[k·P + s] over the k set in both
/// masks, in increasing k.
template <int R, int P, class T>
void block(const T* __restrict at, const T* __restrict bt, const uint64_t* ma, const uint64_t* mb, int64_t words,
           T alpha, T* __restrict out, int64_t ldc) {
  using V = typename Vec<T, P * sizeof(T)>::type;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = V{};
  for (int64_t w = 0; w < words; ++w) {
    for (uint64_t m = ma[w] & mb[w]; m; m &= m - 1) {
      const int64_t k = w * 64 + std::countr_zero(m);
      V bv;
      std::memcpy(&bv, bt + k * P, sizeof(V));
      const T* ak = at + k * P;
      for (int r = 0; r < R; ++r) acc[r] += ak[r] * bv;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) out[r * ldc + s] = alpha * acc[r][s];
}

/// t (n × P) = the R rows at rows + s·lda transposed, lanes R to P zero.
template <int R, int P, class T>
void transpose_rows(const T* __restrict rows, int64_t lda, int64_t n, T* __restrict t) {
  for (int64_t k = 0; k < n; ++k) {
    T v[P] = {};
    for (int s = 0; s < R; ++s) v[s] = rows[s * lda + k];
    std::memcpy(t + k * P, v, sizeof(v));
  }
}

}  // namespace mgram

/// out (g1·R × g2·R, leading dimension ldc) = alpha · a bᵀ for a (g1·R × n) and b (g2·R × n), both
/// row-major with leading dimension lda, where sample i owns rows [i·R, (i + 1)·R): each R × R block sums
/// only the columns k at which both samples have a non-zero row (so a NaN or infinite value met only by
/// zeros does not reach out). With `same` (b = a) only the blocks j ≤ i are formed. Returns the FLOPs done
/// (2 per multiply-add), or a negative value, computing nothing, when the dense product would be faster
/// (by mgram::step_cost: too many columns that both samples of a pair have non-zero for R), outside
/// kMaskedGramMinRows ≤ R ≤ kMaskedGramMaxRows; with `cost_check` false, whenever R is in that range.
template <class T>
double masked_gram(int64_t g1, int64_t g2, int64_t R, int64_t n, const T* a, const T* b, int64_t lda, bool same,
                   T alpha, T* out, int64_t ldc, bool cost_check = true) {
  if (R < kMaskedGramMinRows || R > kMaskedGramMaxRows || g1 < 1 || g2 < 1 || n < 1) return -1;
  const int64_t words = (n + 63) / 64;
  const int64_t groups = g1 + (same ? 0 : g2), P = R <= 8 ? 8 : 16;
  Buffer<uint64_t> masks;
  masks.resize(groups * words);
  parallel_blocks(groups, [&](int64_t i) {
    const T* rows = i < g1 ? a + i * R * lda : b + (i - g1) * R * lda;
    mgram::nonzero_columns(rows, R, lda, n, masks.data() + i * words);
  });
  const uint64_t* ma = masks.data();
  const uint64_t* mb = same ? ma : ma + g1 * words;
  // the multiply-adds of the pairs, against the dense product's
  double shared = 0;
  for (int64_t i = 0; i < g1; ++i)
    for (int64_t j = 0; j < (same ? i + 1 : g2); ++j)
      for (int64_t w = 0; w < words; ++w) shared += std::popcount(ma[i * words + w] & mb[j * words + w]);
  const double pairs = same ? static_cast<double>(g1) * static_cast<double>(g1 + 1) / 2
                            : static_cast<double>(g1) * static_cast<double>(g2);
  if (cost_check && shared * mgram::step_cost(R) > pairs * static_cast<double>(n) * static_cast<double>(R * R))
    return -1;

  Buffer<T> transposed;
  transposed.resize(groups * n * P);
  const T* at = transposed.data();
  const T* bt = same ? at : at + g1 * n * P;
  with_rows<kMaskedGramMinRows, kMaskedGramMaxRows>(R, [&]<int Rc>() {
    constexpr int Pc = Rc <= 8 ? 8 : 16;
    parallel_blocks(groups, [&](int64_t i) {
      const T* rows = i < g1 ? a + i * R * lda : b + (i - g1) * R * lda;
      mgram::transpose_rows<Rc, Pc>(rows, lda, n, transposed.data() + i * n * P);
    });
    const int64_t count = same ? g1 * (g1 + 1) / 2 : g1 * g2;
    parallel_dynamic(count, 4, [&](int64_t p) {
      int64_t i, j;
      if (same) {  // p = i·(i + 1)/2 + j
        i = static_cast<int64_t>((std::sqrt(8.0 * static_cast<double>(p) + 1) - 1) / 2);
        while (i * (i + 1) / 2 > p) --i;
        while ((i + 1) * (i + 2) / 2 <= p) ++i;
        j = p - i * (i + 1) / 2;
      } else {
        i = p / g2;
        j = p % g2;
      }
      mgram::block<Rc, Pc>(at + i * n * P, bt + j * n * P, ma + i * words, mb + j * words, words, alpha,
                           out + i * R * ldc + j * R, ldc);
    });
  });
  return 2.0 * shared * static_cast<double>(R * R);
}
