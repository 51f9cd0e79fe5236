#include "analysis_lapack.hpp"

#include <algorithm>
#include <limits>

#include "xntk/error.hpp"

#ifdef XNTK_HAVE_LAPACK
#include <cmath>
#include <cstddef>

// LAPACK's Fortran symbol (OpenBLAS exports it), declared here rather than through lapacke.h, which would be a
// second package. The trailing lengths of the character arguments are gfortran's hidden ones; passing them
// is what LAPACKE does and is harmless for a LAPACK compiled without them.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t jobz_len,
                        size_t uplo_len);
#else
#include <Eigen/Eigenvalues>
#endif

namespace xntk::detail {

int lapack_size(int64_t n, const std::string& what) {
  constexpr int64_t largest = (std::numeric_limits<int>::max() - 1) / 2;
  if (n < 0 || n > largest)
    throw Error(what + ": a " + std::to_string(n) + " × " + std::to_string(n) +
                " matrix is too large for LAPACK's 32-bit sizes (dsyevd's workspace of 2·N + 1 doubles must fit "
                "in an int: N ≤ " +
                std::to_string(largest) + ")");
  return static_cast<int>(n);
}

#ifdef XNTK_HAVE_LAPACK

const char* eigensolver() { return "lapack dsyevd"; }

std::vector<double> symmetric_eigenvalues(double* a, int64_t size, const std::string& what) {
  const int n = lapack_size(size, what);
  if (n == 0) return {};
  // a row-major triangle is the other triangle column-major: 'L' reads what a row-major caller calls upper
  const char jobz = 'N', uplo = 'L';
  std::vector<double> w(static_cast<size_t>(n));
  int info = 0, liwork = -1, lwork = -1, iwork_query = 0;
  double work_query = 0;
  dsyevd_(&jobz, &uplo, &n, a, &n, w.data(), &work_query, &lwork, &iwork_query, &liwork, &info, 1, 1);
  if (info != 0) throw Error(what + ": LAPACK dsyevd's workspace query failed (info = " + std::to_string(info) + ")");
  // the query's blocked size is computed in LAPACK's own int, which may have wrapped: then the minimum, 2n + 1
  const int64_t minimum = 2 * static_cast<int64_t>(n) + 1;
  lwork = std::isfinite(work_query) && work_query >= static_cast<double>(minimum) &&
                  work_query <= static_cast<double>(std::numeric_limits<int>::max())
              ? static_cast<int>(work_query)
              : static_cast<int>(minimum);
  liwork = std::max(iwork_query, 1);
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, a, &n, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
  if (info < 0) throw Error(what + ": LAPACK dsyevd rejected its argument " + std::to_string(-info));
  if (info > 0)
    throw Error(what + ": LAPACK dsyevd did not converge (" + std::to_string(info) +
                " off-diagonal elements of the tridiagonal form did not reach zero)");
  return w;  // ascending, as LAPACK returns it
}

#else

const char* eigensolver() { return "eigen"; }

std::vector<double> symmetric_eigenvalues(double* a, int64_t size, const std::string& what) {
  if (size == 0) return {};
  // symmetric, so its row-major storage is its column-major one; the solver reads the lower triangle
  const Eigen::Map<const Eigen::MatrixXd> m(a, size, size);
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(m, Eigen::EigenvaluesOnly);
  if (solver.info() != Eigen::Success) throw Error(what + ": Eigen's eigenvalue solver did not converge");
  return {solver.eigenvalues().data(), solver.eigenvalues().data() + size};  // ascending
}

#endif

}  // namespace xntk::detail
