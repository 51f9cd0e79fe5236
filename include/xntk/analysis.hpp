#pragma once
/// \file analysis.hpp
/// Spectral summary of a kernel Θ(X, X): eigenvalues (in double), extreme eigenvalues, condition number,
/// effective rank, trace, and each component's share of the trace. Definitions in docs/cli.md.

#include <cstdint>
#include <string>
#include <vector>

#include "xntk/io.hpp"
#include "xntk/kernel.hpp"
#include "xntk/tensor.hpp"

namespace xntk {

/// Summary of the spectrum of one symmetric matrix.
struct Spectrum {
  std::vector<double> eigenvalues;  ///< ascending
  /// What computed them: "lapack dsyevd" (LAPACK's symmetric eigensolver, through OpenBLAS, multi-threaded) in a
  /// build with OpenBLAS, "eigen" (Eigen's SelfAdjointEigenSolver, single-threaded) otherwise.
  std::string eigensolver;
  double trace = 0;  ///< Σ diagonal (= Σ eigenvalues)
  double lambda_max = 0, lambda_min = 0;
  /// Eigenvalues with |λ| ≤ tolerance are zero to working precision: tolerance = size · ε · max|λ|
  /// (ε of the kernel's dtype, NumPy's matrix_rank rule).
  double tolerance = 0;
  /// λmin > tolerance: positive definite to working precision, and `condition` is meaningful.
  bool positive_definite = false;
  /// λmax / λmin when positive definite; +infinity otherwise (see `note`).
  double condition = 0;
  int64_t numerical_rank = 0;  ///< number of eigenvalues > tolerance
  /// exp(H(p)) with p_i = max(λ_i, 0) / Σ max(λ, 0) and H the Shannon entropy (Roy & Vetterli, 2007): between
  /// 1 (one direction carries everything) and the size (flat spectrum).
  double effective_rank = 0;
  /// Empty, or why the condition number is infinite (λmin ≤ tolerance, or negative eigenvalues beyond it).
  std::string note;
};

/// One component's part of the kernel.
struct ComponentSummary {
  std::string name;
  double trace = 0;
  double share = 0;  ///< trace / the total's trace
  Spectrum spectrum;
};

/// Options of `analyze`.
struct AnalysisOptions {
  /// Machine epsilon of the data the kernel was computed in (the tolerance of Spectrum); 0: the kernel's
  /// type's (float64's 2.2e-16 for a double kernel, float32's 1.2e-7 for a float kernel).
  double epsilon = 0;
  /// Largest accepted max|K − Kᵀ| / max|K|: above it the kernel is not Θ(X, X) and `analyze` refuses it.
  double symmetry_tolerance = 1e-5;
};

/// The analysis of a kernel and, optionally, its components.
struct Analysis {
  Mode mode = Mode::full;  ///< from the rank of the kernel: 4 full, 2 trace, 3 diagonal
  int64_t samples = 0;     ///< N
  int64_t outputs = 0;     ///< O (1 in trace mode, where outputs are summed)
  /// Relative asymmetry max|K − Kᵀ| / max|K| of the input (the analysis uses the symmetric part).
  double asymmetry = 0;
  /// The whole kernel as one matrix: (N·O × N·O) in full mode with row n·O + o, (N × N) in trace mode, and in
  /// diagonal mode the block-diagonal (N·O × N·O) matrix with one (N × N) block per output (the full kernel
  /// without its cross-output terms), whose spectrum is the union of the blocks'.
  Spectrum spectrum;
  std::vector<Spectrum> per_output;          ///< diagonal mode: each output's (N × N) block
  std::vector<ComponentSummary> components;  ///< in the given order
};

/// Analyses Θ(X, X) given as (N, N, O, O), (N, N) or (N, N, O). xntk::Error if the kernel does not have one
/// of these shapes (in particular N ≠ M), is not symmetric, holds NaN or Inf, or a component's shape differs
/// from the kernel's. A component named "total" is skipped (xntk compute writes the total among them).
Analysis analyze(const Tensor<double>& kernel, const std::vector<NamedTensor<double>>& components = {},
                 const AnalysisOptions& options = {});

/// A float32 kernel and its components, analysed in double with float32's epsilon (unless `options` set one).
Analysis analyze(const Tensor<float>& kernel, const std::vector<NamedTensor<float>>& components = {},
                 const AnalysisOptions& options = {});

/// As above for a kernel held elsewhere (a memory-mapped file, a NumPy array): nothing of its size is copied
/// but the one (size × size) double matrix the eigensolver overwrites. A float32 kernel gets float32's epsilon
/// (unless `options` sets one); the components are given in double.
Analysis analyze(TensorRef<double> kernel, const std::vector<NamedTensor<double>>& components = {},
                 const AnalysisOptions& options = {});
Analysis analyze(TensorRef<float> kernel, const std::vector<NamedTensor<double>>& components = {},
                 const AnalysisOptions& options = {});

/// The kernel `ntk` returned and, when it holds them, its components (in component order).
template <class T>
Analysis analyze(const Kernel<T>& kernel, const AnalysisOptions& options = {}) {
  return analyze(kernel.total, kernel.named_components(), options);
}

/// The spectrum summary of one symmetric matrix (n × n, row-major); used by `analyze` for each matrix.
Spectrum spectrum(const std::vector<double>& matrix, int64_t n, double epsilon = 2.220446049250313e-16);

}  // namespace xntk
