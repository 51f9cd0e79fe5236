#include "cpu/gemm.hpp"

#include <Eigen/Core>
#include <algorithm>

#ifdef XNTK_HAVE_CBLAS
#include <cblas.h>
#endif

#include "cpu/cache.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::detail {

namespace {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Map = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CMap = Eigen::Map<const Mat<T>, 0, Eigen::OuterStride<>>;

#ifndef XNTK_HAVE_CBLAS
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
/// summed: 0.33 ms there, 0.67 against 0.99 ms at 200 × 2048 (medians of 31, 2 threads); from 256 rows
/// OpenBLAS threads the call itself and the split measured no faster. The split depends on the shape
/// only, so results do not depend on the thread count.
constexpr int64_t kSplitRows = 255, kSplitDepth = 512;

template <class T>
void syrk_any(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc) {
  if (n > kSplitRows || k < kSplitDepth) {
    blas_syrk(n, k, alpha, a, lda, beta, c, ldc);
    return;
  }
  const int64_t k1 = k / 2;
  Buffer<T> second;
  second.resize(n * n);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(std::min(2, omp_get_max_threads())) if (!omp_in_parallel())
#endif
  for (int half = 0; half < 2; ++half) {
    if (half == 0)
      blas_syrk(n, k1, alpha, a, lda, beta, c, ldc);
    else
      blas_syrk(n, k - k1, alpha, a + k1, lda, T(0), second.data(), n);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) c[i * ldc + j] += second[i * n + j];
}

}  // namespace

void syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
  syrk_any(n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc) {
  syrk_any(n, k, alpha, a, lda, beta, c, ldc);
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

}  // namespace xntk::detail
