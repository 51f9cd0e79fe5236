#pragma once
// The symmetric eigensolver behind `analyze`: LAPACK's dsyevd (OpenBLAS's, multi-threaded) where the build
// has it (XNTK_HAVE_LAPACK), Eigen's SelfAdjointEigenSolver otherwise.

#include <cstdint>
#include <string>
#include <vector>

namespace xntk::detail {

/// "lapack dsyevd" or "eigen": what `symmetric_eigenvalues` uses in this build.
const char* eigensolver();

/// The ascending eigenvalues of the symmetric (n × n) matrix `a` (either order: only one triangle is read), which
/// is overwritten. xntk::Error starting with `what` if the solver fails or n does not fit its integer sizes.
std::vector<double> symmetric_eigenvalues(double* a, int64_t n, const std::string& what);

/// n as LAPACK's 32-bit integer for dsyevd, whose workspace holds 2n + 1 doubles; xntk::Error starting with `what`
/// if it does not fit.
int lapack_size(int64_t n, const std::string& what);

}  // namespace xntk::detail
