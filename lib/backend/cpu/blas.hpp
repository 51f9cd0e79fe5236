#pragma once
// Dense products on row-major buffers for the CPU backend: OpenBLAS (its OpenMP build, so that one
// threading runtime is active; it picks its own kernels for the CPU at run time) when the build found it,
// Eigen's own kernels otherwise. Compiled once, for the baseline instruction set.

#include <cstdint>

namespace xntk::backend::cpu {

/// C (m × n) = alpha · op(A) · op(B) + beta · C; op(X) = Xᵀ where the flag is set.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

/// How gram_product and syrk_lower may split their work: as measured (automatic), always where the shape
/// allows (on), or never (off: one BLAS call).
enum class Split { automatic, on, off };

/// C (m × n) = alpha · A Bᵀ + beta · C for A (m × k) and B (n × k). Small outputs of long rows are computed as
/// two halves of k side by side. Returns whether the work was split.
bool gram_product(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                  int64_t ldb, float beta, float* c, int64_t ldc, Split split = Split::automatic);
bool gram_product(int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda, const double* b,
                  int64_t ldb, double beta, double* c, int64_t ldc, Split split = Split::automatic);

/// Lower triangle of C (n × n) = alpha · A Aᵀ + beta · C for A (n × k); the strict upper triangle is not
/// touched. Returns whether the work was split.
bool syrk_lower(int64_t n, int64_t k, float alpha, const float* a, int64_t lda, float beta, float* c, int64_t ldc,
                Split split = Split::automatic);
bool syrk_lower(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta, double* c, int64_t ldc,
                Split split = Split::automatic);

/// "openblas (openmp)", "openblas (pthreads)" or "eigen".
const char* blas_name();

}  // namespace xntk::backend::cpu
