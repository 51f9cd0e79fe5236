#pragma once
// Dense products on row-major buffers for the CPU backend: OpenBLAS (its OpenMP build, so that one
// threading runtime is active; it picks its own kernels for the CPU at run time) when the build found it,
// Eigen's own kernels otherwise. Compiled once, for the baseline instruction set.

#include <cstdint>
#include <string_view>

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

/// The kernel set OpenBLAS chose for this CPU ("SkylakeX", "Haswell", "Zen", "Prescott", …); "" with Eigen.
const char* blas_core();

/// The OPENBLAS_CORETYPE to ask for when OpenBLAS's choice `core` has no AVX2 kernels on a CPU with AVX2 +
/// FMA (`avx512`: and AVX-512 F, CD, BW, DQ, VL): "SKYLAKEX" or "HASWELL"; nullptr when the choice stands.
/// OpenBLAS falls back to Prescott's SSE3 kernels on CPU models it does not know: Debian's 0.3.21 on an
/// Intel Xeon of model 207 (Emerald Rapids) measured 37 GFLOP/s of float32 GEMM, against 214 with SkylakeX's.
const char* blas_core_upgrade(std::string_view core, bool avx2_fma, bool avx512);

/// For a program's main, before anything else: when OpenBLAS chose a core below this CPU (blas_core_upgrade)
/// and neither OPENBLAS_CORETYPE nor XNTK_NO_BLAS_REEXEC is set, sets OPENBLAS_CORETYPE and re-executes the
/// program (/proc/self/exe, same arguments), since OpenBLAS reads it only when it is loaded. Returns
/// otherwise, also when the exec fails.
void reexec_for_blas(char** argv);

}  // namespace xntk::backend::cpu
