#pragma once
// The CPU compute primitives the layers are written on: Gram products (GEMM / SYRK) on row-major
// buffers through Eigen, and the one parallel loop of the library (OpenMP).

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <exception>

#include "cpu/gemm.hpp"

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

/// C (r × c) = A (r × k) · B (c × k)ᵀ. Rows of A and B are lda / ldb apart (default k).
template <class T>
void gram(const T* a, int64_t r, const T* b, int64_t c, int64_t k, T* out, int64_t lda = -1, int64_t ldb = -1) {
  gram_product(r, c, k, T(1), a, lda < 0 ? k : lda, b, ldb < 0 ? k : ldb, T(0), out, c);
}

/// Lower triangle of C (r × r) = A Aᵀ (SYRK: half the work of gram); the strict upper triangle is left
/// unspecified.
template <class T>
void gram_lower(const T* a, int64_t r, int64_t k, T* out, int64_t lda = -1) {
  syrk_lower(r, k, T(1), a, lda < 0 ? k : lda, T(0), out, r);
}

/// Copies the lower triangle of the n × n matrix c onto its upper triangle (in cache-sized blocks), so
/// that c becomes exactly symmetric.
template <class T>
void mirror_lower(T* c, int64_t n) {
  constexpr int64_t b = 64;
  auto rows = [&](int64_t bi) {
    const int64_t i0 = bi * b, i1 = std::min(n, i0 + b);
    for (int64_t j0 = i0; j0 < n; j0 += b) {
      const int64_t j1 = std::min(n, j0 + b);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = std::max(j0, i + 1); j < j1; ++j) c[i * n + j] = c[j * n + i];
    }
  };
  const int64_t blocks = (n + b - 1) / b;
  if (n * n < (1 << 18)) {  // too small to be worth a parallel region
    for (int64_t bi = 0; bi < blocks; ++bi) rows(bi);
  } else {
    parallel_for(blocks, rows);
  }
}

/// C(i, j) of a Gram matrix of which only the lower triangle is valid.
template <class T>
inline T lower(const T* c, int64_t ld, int64_t i, int64_t j) {
  return i >= j ? c[i * ld + j] : c[j * ld + i];
}

/// Runs f(i) for i in [0, n) on the OpenMP threads (static schedule: the bodies are uniform), unless
/// already inside a parallel region. The first
/// exception thrown by f is rethrown here (none may escape an OpenMP region).
template <class F>
void parallel_for(int64_t n, F&& f) {
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n > 1 && !omp_in_parallel())
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
