#pragma once
// Dense products on row-major buffers: OpenBLAS (its OpenMP build, so that one threading runtime is
// active) when the build found it, Eigen's own kernels otherwise. Measured on the 2-core AVX-512
// development machine: OpenBLAS 0.3.21 ~205 GFLOP/s SGEMM, Eigen 3.4 ~158 (docs/benchmarks.md).

#include <cstdint>

namespace xntk::detail {

/// C (m × n) = alpha · op(A) · op(B) + beta · C; op(X) = Xᵀ where the flag is set. Row-major with
/// leading dimensions lda, ldb, ldc.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

/// C (m × n) = alpha · A Bᵀ + beta · C for A (m × k) and B (n × k): the products of A's rows with B's
/// (a Gram matrix between two sets of rows). Small outputs of long rows are computed as two halves of k.
void gram_product(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float beta, float* c, int64_t ldc);
void gram_product(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                  int64_t ldb, double beta, double* c, int64_t ldc);

/// Lower triangle of C (n × n) = alpha · A Aᵀ + beta · C for A (n × k); the strict upper triangle is
/// not touched.
void syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc);
void syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc);

/// "openblas (openmp)", "openblas (pthreads)" or "eigen".
const char* blas_name();

}  // namespace xntk::detail
