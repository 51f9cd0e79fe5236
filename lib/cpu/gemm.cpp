#include "cpu/gemm.hpp"

#include <Eigen/Core>

#ifdef XNTK_HAVE_CBLAS
#include <cblas.h>
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
void syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
  cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc) {
  cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, n, k, alpha, a, lda, beta, c, ldc);
}
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
void syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc) {
  eigen_syrk(n, k, alpha, a, lda, beta, c, ldc);
}
void syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc) {
  eigen_syrk(n, k, alpha, a, lda, beta, c, ldc);
}
const char* blas_name() { return "eigen"; }
#endif

}  // namespace xntk::detail
