#pragma once
// The CPU compute primitives the layers are written on: Gram products (GEMM / SYRK) on row-major
// buffers through Eigen, and the one parallel loop of the library (OpenMP).

#include <Eigen/Core>
#include <cstdint>
#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xntk::detail {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CMatMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

/// Row-major view of `rows` × `cols` at p with leading dimension ld (default cols).
template <class T>
CMatMap<T> view(const T* p, int64_t rows, int64_t cols, int64_t ld = -1) {
  return CMatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld < 0 ? cols : ld));
}
template <class T>
MatMap<T> view(T* p, int64_t rows, int64_t cols, int64_t ld = -1) {
  return MatMap<T>(p, rows, cols, Eigen::OuterStride<>(ld < 0 ? cols : ld));
}

/// C (r × c) = A (r × k) · B (c × k)ᵀ. Rows of A and B are ld apart.
template <class T>
void gram(const T* a, int64_t r, const T* b, int64_t c, int64_t k, T* out, int64_t lda = -1,
          int64_t ldb = -1) {
  view(out, r, c).noalias() = view(a, r, k, lda) * view(b, c, k, ldb).transpose();
}

/// Lower triangle of C (r × r) = A Aᵀ; the strict upper triangle is left unspecified.
template <class T>
void gram_lower(const T* a, int64_t r, int64_t k, T* out, int64_t lda = -1) {
  auto c = view(out, r, r);
  c.setZero();
  c.template selfadjointView<Eigen::Lower>().rankUpdate(view(a, r, k, lda));
}

/// C(i, j) of a Gram matrix of which only the lower triangle is valid.
template <class T>
inline T lower(const T* c, int64_t ld, int64_t i, int64_t j) {
  return i >= j ? c[i * ld + j] : c[j * ld + i];
}

/// Runs f(i) for i in [0, n) on the OpenMP threads, unless already inside a parallel region. The first
/// exception thrown by f is rethrown here (none may escape an OpenMP region).
template <class F>
void parallel_for(int64_t n, F&& f) {
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (n > 1 && !omp_in_parallel())
#endif
  for (int64_t i = 0; i < n; ++i) {
    try {
      f(i);
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(xntk_parallel_for_error)
#endif
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace xntk::detail
