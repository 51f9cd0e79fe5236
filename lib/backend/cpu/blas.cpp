#include "backend/cpu/blas.hpp"

#include <algorithm>
#include <cmath>

#ifdef XNTK_HAVE_CBLAS
#include <cblas.h>
#else
#include <Eigen/Core>
#endif

#include "backend/buffer.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::backend::cpu {

namespace {

#ifndef XNTK_HAVE_CBLAS
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Map = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CMap = Eigen::Map<const Mat<T>, 0, Eigen::OuterStride<>>;

template <class T>
void eigen_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                int64_t ldb, T beta, T* c, int64_t ldc) {
  Map<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0))
    C.setZero();
  else if (beta != T(1))
    C *= beta;
  // A is (m × k) or, transposed, stored as (k × m); likewise B.
  const CMap<T> A(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  const CMap<T> B(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  if (!ta && !tb) C.noalias() += alpha * A * B;
  if (!ta && tb) C.noalias() += alpha * A * B.transpose();
  if (ta && !tb) C.noalias() += alpha * A.transpose() * B;
  if (ta && tb) C.noalias() += alpha * A.transpose() * B.transpose();
}

template <class T>
void eigen_syrk(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc) {
  Map<T> C(c, n, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0))
    C.template triangularView<Eigen::Lower>().setZero();
  else if (beta != T(1))
    C.template triangularView<Eigen::Lower>() *= beta;
  C.template selfadjointView<Eigen::Lower>().rankUpdate(CMap<T>(a, n, k, Eigen::OuterStride<>(lda)), alpha);
}
#endif

}  // namespace

#ifdef XNTK_HAVE_CBLAS
#define XNTK_OP(t) ((t) ? CblasTrans : CblasNoTrans)
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, XNTK_OP(ta), XNTK_OP(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, XNTK_OP(ta), XNTK_OP(tb), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#undef XNTK_OP
#endif

namespace {

void blas_syrk(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
#ifdef XNTK_HAVE_CBLAS
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
#else
  eigen_syrk(n, k, alpha, a, lda, beta, c, ldc);
#endif
}
void blas_syrk(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc) {
#ifdef XNTK_HAVE_CBLAS
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
#else
  eigen_syrk(n, k, alpha, a, lda, beta, c, ldc);
#endif
}

/// OpenBLAS's OpenMP build runs SYRKs of fewer than 256 rows on one thread (128 × 2048: 0.65 ms with 1
/// thread or 2). Below that, from kSplitDepth columns, the two halves of k run side by side and are
/// summed: 0.33 ms there, 0.67 against 0.99 ms at 200 × 2048 (medians of 31, 2 threads).
constexpr int64_t kSplitRows = 255, kSplitDepth = 512;

/// From 256 rows OpenBLAS threads the SYRK itself, but unevenly (a triangle), its idle thread yielding.
/// There the triangle is cut at row r = n/√2 into two parts of equal work: the SYRK of rows [0, r), and
/// rows [r, n) as a GEMM against rows [0, r) plus the SYRK of their diagonal block. With two threads the
/// parts run side by side as single-threaded calls, with one thread one after the other (the same calls,
/// so the same results). From three threads OpenBLAS threads the one call: two parts would leave the
/// other cores idle (OpenBLAS runs single-threaded inside a parallel region), and its threaded parts
/// round differently from the single-threaded ones, so nothing is gained by keeping them.
/// Medians of 21 (2 threads, caches flushed), one OpenBLAS call against the two parts:
/// - 256 × 100: 0.121/0.088 ms; 256 × 3072: 2.04/1.77; 364 × 784: 0.94/0.73; 364 × 46080: 57.0/45.4;
/// - 1000 × 100: 1.33/0.84; 1000 × 784: 4.9–6.5/4.3–4.6 and 1000 × 9216: 58–71/55–56 (three sweeps);
/// - 1400 × 3072: 34.2/34.2; 2000 × 3072: 73.9/69.7; 4096 × 1024: 94/91.
/// Slower than OpenBLAS in two measurements of five sweeps: 256 × 3072 (1.91 against 1.86 ms) and
/// 1000 × 784 in a noisy sweep (7.9 against 5.7). Four or eight parts (of equal work) measured slower
/// than two wherever k ≥ 3072, as did row blocks of a fixed height.
template <class T>
void syrk_halves(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc) {
  const int64_t r = static_cast<int64_t>(std::lround(static_cast<double>(n) / std::sqrt(2.0)));
  auto part = [&](int p) {
    if (p == 0) {
      blas_syrk(r, k, alpha, a, lda, beta, c, ldc);
      return;
    }
    gemm(false, true, n - r, r, k, alpha, a + r * lda, lda, a, lda, beta, c + r * ldc, ldc);
    blas_syrk(n - r, k, alpha, a + r * lda, lda, beta, c + r * ldc + r, ldc);
  };
#ifdef _OPENMP
  if (omp_get_max_threads() == 2 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static) num_threads(2)
    for (int p = 0; p < 2; ++p) part(p);
    return;
  }
#endif
  part(0);
  part(1);
}

/// Whether syrk_halves applies: from 256 rows, where this process runs at most two threads (inside a
/// parallel region every BLAS call runs on one thread, and so do the parts).
inline bool use_halves(int64_t n) {
#ifdef _OPENMP
  return n > kSplitRows && (omp_in_parallel() || omp_get_max_threads() <= 2);
#else
  return n > kSplitRows;
#endif
}

/// C (m × n; only its lower triangle with `lower`) as a product summed over the two halves of k:
/// product(k0, len, first, out, ld) forms it over columns [k0, k0 + len) into out, the first half into c
/// (with the caller's beta), the second into a scratch block (beta 0), side by side on two threads (on one,
/// one after the other: the same calls), and the second is added in one fixed order.
template <class T, class Product>
void halves_of_k(int64_t m, int64_t n, int64_t k, bool lower, T* c, int64_t ldc, Product&& product) {
  const int64_t k1 = k / 2;
  Buffer<T> second;
  second.resize(m * n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(std::min(2, omp_get_max_threads())) if (!omp_in_parallel())
#endif
  for (int half = 0; half < 2; ++half) {
    if (half == 0)
      product(0, k1, true, c, ldc);
    else
      product(k1, k - k1, false, second.data(), n);
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < (lower ? i + 1 : n); ++j) c[i * ldc + j] += second[i * n + j];
}

template <class T>
bool syrk_any(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc, Split split) {
  if (split != Split::off && n > kSplitRows && (split == Split::on || use_halves(n))) {
    syrk_halves(n, k, alpha, a, lda, beta, c, ldc);
    return true;
  }
  if (split == Split::off || n > kSplitRows || k < (split == Split::on ? 2 : kSplitDepth)) {
    blas_syrk(n, k, alpha, a, lda, beta, c, ldc);
    return false;
  }
  halves_of_k(n, n, k, true, c, ldc, [&](int64_t k0, int64_t len, bool first, T* out, int64_t ld) {
    blas_syrk(n, len, alpha, a + k0, lda, first ? beta : T(0), out, ld);
  });
  return true;
}

/// A·Bᵀ has the same trouble as the SYRK below 256 rows: with a small output and long rows OpenBLAS's
/// OpenMP build barely threads it (200 × 50 × 9216, a conv layer's weight Gram of the tutorial CNN: 1.75
/// ms on 1 thread, 1.63 on 2). Up to 255 × 255 outputs from kSplitDepth columns, the two halves of k run
/// side by side (at any thread count the same two calls, summed in the same order): 0.92 ms there, 0.12
/// against 0.18 ms at 200 × 50 × 864, 2.56 against 3.25 ms at 200 × 200 × 9216 (medians of 21, caches
/// flushed, 2 threads; 1000 × 1000 × 9216 gained nothing: 50 against 53 ms, so larger outputs stay one call).
template <class T>
bool gram_any(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
              int64_t ldc, Split split) {
  const bool halves =
      split == Split::on ? k >= 2 : split == Split::automatic && m <= kSplitRows && n <= kSplitRows && k >= kSplitDepth;
  if (!halves) {
    gemm(false, true, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return false;
  }
  halves_of_k(m, n, k, false, c, ldc, [&](int64_t k0, int64_t len, bool first, T* out, int64_t ld) {
    gemm(false, true, m, n, len, alpha, a + k0, lda, b + k0, ldb, first ? beta : T(0), out, ld);
  });
  return true;
}

}  // namespace

bool gram_product(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float beta, float* c, int64_t ldc, Split split) {
  return gram_any(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, split);
}
bool gram_product(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                  int64_t ldb, double beta, double* c, int64_t ldc, Split split) {
  return gram_any(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, split);
}

bool syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc,
                Split split) {
  return syrk_any(n, k, alpha, a, lda, beta, c, ldc, split);
}
bool syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc,
                Split split) {
  return syrk_any(n, k, alpha, a, lda, beta, c, ldc, split);
}

#ifdef XNTK_HAVE_CBLAS
const char* blas_name() { return openblas_get_parallel() == 2 ? "openblas (openmp)" : "openblas (pthreads)"; }
#else
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  eigen_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  eigen_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
const char* blas_name() { return "eigen"; }
#endif

}  // namespace xntk::backend::cpu
