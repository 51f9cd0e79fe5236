// `xntk analyze --extremes` / `--top k`: λmax, λmin and the top eigenpairs of a kernel too large for a dense
// eigensolver, by Lanczos iterations (Spectra's implicitly restarted SymEigsSolver for the top, a Lanczos
// with full reorthogonalisation for λmin) whose matrix-vector products read the .npy in place through a
// memory map: nothing of the size of the kernel is allocated, and the pages are the operating system's to
// keep or drop.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/commands.hpp"
#include "io/file.hpp"
#include "io/mapped.hpp"
#include "random.hpp"
#include "xntk/io.hpp"

#ifdef XNTK_HAVE_SPECTRA
#include <Spectra/SymEigsSolver.h>
#endif

namespace xntk::cli {

#ifdef XNTK_HAVE_SPECTRA
namespace {

/// Σ_j row[j]·x[j] in double, in vector lanes; compiled for AVX-512, AVX2 and the baseline, chosen at load
/// time (the program itself is built for the baseline): a row of 50,000 float32 values is then read at about
/// the memory's speed.
[[gnu::target_clones("avx512f", "avx2", "default")]] double row_dot(const float* __restrict row,
                                                                    const double* __restrict x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(row[j]) * x[j];
  return s;
}

[[gnu::target_clones("avx512f", "avx2", "default")]] double row_dot(const double* __restrict row,
                                                                    const double* __restrict x, int64_t n) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += row[j] * x[j];
  return s;
}

/// y = Θ x for the kernel's matrix (rows n·O + o in full mode; (N × N) in trace mode; the block-diagonal
/// o·N + n in diagonal mode), from values of type T in C order, in double, rows in parallel.
template <class T>
class KernelOp {
 public:
  using Scalar = double;
  KernelOp(const T* v, int64_t n, int64_t outputs, Mode mode) : v_(v), n_(n), o_(outputs), mode_(mode) {}
  Eigen::Index rows() const { return static_cast<Eigen::Index>(mode_ == Mode::trace ? n_ : n_ * o_); }
  Eigen::Index cols() const { return rows(); }
  void perform_op(const double* x, double* y) const {
    const int64_t N = n_, O = o_;
    ++products_;
    // each row's sum in vector lanes (row_dot; omp simd for full mode's O values)
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < N; ++i) {
      if (mode_ == Mode::trace) {
        y[i] = row_dot(v_ + i * N, x, N);
      } else if (mode_ == Mode::full) {
        double acc[64];
        std::vector<double> big(O > 64 ? static_cast<size_t>(O) : 0);
        double* a = O > 64 ? big.data() : acc;
        std::fill(a, a + O, 0.0);
        for (int64_t j = 0; j < N; ++j) {
          const T* b = v_ + (i * N + j) * O * O;
          const double* xj = x + j * O;
          for (int64_t p = 0; p < O; ++p) {
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t q = 0; q < O; ++q) s += static_cast<double>(b[p * O + q]) * xj[q];
            a[p] += s;
          }
        }
        for (int64_t p = 0; p < O; ++p) y[i * O + p] = a[p];
      } else {
        for (int64_t p = 0; p < O; ++p) y[p * N + i] = 0;
        for (int64_t j = 0; j < N; ++j) {
          const T* b = v_ + (i * N + j) * O;
          for (int64_t p = 0; p < O; ++p) y[p * N + i] += static_cast<double>(b[p]) * x[p * N + j];
        }
      }
    }
  }
  int64_t products() const { return products_; }
  /// The trace, exactly (the diagonal's sum).
  double trace() const {
    double t = 0;
    for (int64_t i = 0; i < n_; ++i) {
      if (mode_ == Mode::trace) t += static_cast<double>(v_[i * n_ + i]);
      for (int64_t p = 0; mode_ != Mode::trace && p < o_; ++p)
        t +=
            static_cast<double>(mode_ == Mode::full ? v_[((i * n_ + i) * o_ + p) * o_ + p] : v_[(i * n_ + i) * o_ + p]);
    }
    return t;
  }

 private:
  const T* v_;
  int64_t n_, o_;
  Mode mode_;
  mutable int64_t products_ = 0;
};

struct Found {
  std::vector<double> values;  // in the order Spectra sorts them (largest first for LargestAlge)
  Eigen::MatrixXd vectors;
  bool converged = false;
  int64_t iterations = 0;
};

template <class Op>
Found lanczos(Op& op, int64_t nev, Spectra::SortRule rule, int64_t ncv, double tol, int64_t restarts = 1000) {
  const int64_t size = op.rows();
  nev = std::min<int64_t>(nev, size - 1);
  ncv = std::clamp<int64_t>(ncv, nev + 1, size);
  Spectra::SymEigsSolver<Op> eigs(op, static_cast<Eigen::Index>(nev), static_cast<Eigen::Index>(ncv));
  eigs.init();
  eigs.compute(rule, static_cast<Eigen::Index>(restarts), tol, rule);
  Found f;
  f.converged = eigs.info() == Spectra::CompInfo::Successful;
  f.iterations = eigs.num_iterations();
  const Eigen::VectorXd v = eigs.eigenvalues();
  f.values.assign(v.data(), v.data() + v.size());
  if (f.converged) f.vectors = eigs.eigenvectors();
  return f;
}

/// The smallest eigenvalue of the symmetric tridiagonal matrix (diagonal a, off-diagonal b, both of
/// length ≥ m − 1) of order m, by bisection on Sturm counts (the negative pivots of T − x I), to the last
/// bits of its Gershgorin bounds.
double tridiagonal_smallest(const std::vector<double>& a, const std::vector<double>& b, int64_t m) {
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < m; ++i) {
    const double r = (i > 0 ? std::abs(b[i - 1]) : 0.0) + (i + 1 < m ? std::abs(b[i]) : 0.0);
    lo = std::min(lo, a[i] - r);
    hi = std::max(hi, a[i] + r);
  }
  const double tiny = 1e-300;
  auto below = [&](double x) {  // how many eigenvalues are < x
    int64_t count = 0;
    double d = 1;
    for (int64_t i = 0; i < m; ++i) {
      d = a[i] - x - (i > 0 ? b[i - 1] * b[i - 1] / d : 0.0);
      if (d == 0) d = -tiny;
      count += d < 0;
    }
    return count;
  };
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    (below(mid) >= 1 ? hi : lo) = mid;
  }
  return hi;
}

/// The unit eigenvector of that tridiagonal matrix for its eigenvalue near theta, by two steps of inverse
/// iteration (Gaussian elimination with partial pivoting on T − θ I, as LAPACK's dgttrf does).
std::vector<double> tridiagonal_vector(const std::vector<double>& a, const std::vector<double>& b, int64_t m,
                                       double theta) {
  std::vector<double> z(static_cast<size_t>(m), 1.0);
  if (m == 1) return z;
  const double scale = std::max(std::abs(theta), 1e-300);
  // LU of the shifted matrix: u0 diagonal, u1, u2 the two super-diagonals, l multipliers, swap flags
  std::vector<double> u0(m), u1(m, 0.0), u2(m, 0.0), l(m, 0.0);
  std::vector<char> swapped(m, 0);
  for (int64_t i = 0; i < m; ++i) u0[i] = a[i] - theta;
  for (int64_t i = 0; i + 1 < m; ++i) u1[i] = b[i];
  for (int64_t i = 0; i + 1 < m; ++i) {
    const double sub = b[i];  // T(i+1, i)
    if (std::abs(u0[i]) >= std::abs(sub)) {
      const double f = u0[i] != 0 ? sub / u0[i] : 0.0;
      l[i] = f;
      u0[i + 1] -= f * u1[i];
    } else {  // swap rows i and i+1
      const double f = u0[i] / sub;
      l[i] = f;
      swapped[i] = 1;
      u0[i] = sub;
      const double t1 = u1[i];
      u1[i] = u0[i + 1];
      u0[i + 1] = t1 - f * u1[i];
      if (i + 2 < m) {
        u2[i] = u1[i + 1];
        u1[i + 1] = -f * u2[i];
      }
    }
  }
  for (int64_t i = 0; i < m; ++i)
    if (u0[i] == 0) u0[i] = 1e-16 * scale;
  for (int step = 0; step < 2; ++step) {
    for (int64_t i = 0; i + 1 < m; ++i) {  // forward: apply the row swaps and multipliers
      if (swapped[i]) std::swap(z[i], z[i + 1]);
      z[i + 1] -= l[i] * z[i];
    }
    for (int64_t i = m - 1; i >= 0; --i) {  // back substitution
      double t = z[i];
      if (i + 1 < m) t -= u1[i] * z[i + 1];
      if (i + 2 < m) t -= u2[i] * z[i + 2];
      z[i] = t / u0[i];
    }
    double norm = 0;
    for (double v : z) norm += v * v;
    norm = std::sqrt(norm);
    for (double& v : z) v /= norm;
  }
  return z;
}

/// λmin found by smallest().
struct Smallest {
  double value = NAN;      ///< the Rayleigh quotient ρ = yᵀΘy of the last unit Ritz vector y: λmin ≤ ρ always
  double residual = NAN;   ///< ‖Θy − ρy‖: some eigenvalue lies within it of ρ
  bool converged = false;  ///< residual ≤ max(1e-10·|ρ|, floor·λmax)
  bool below = false;      ///< stopped because ρ ≤ the threshold (then λmin ≤ ρ ≤ threshold, whatever else)
  int64_t products = 0;    ///< Lanczos steps and Ritz-vector confirmations
};

/// λmin of the operator by Lanczos iterations with full reorthogonalisation (two classical Gram–Schmidt
/// passes against the whole basis), up to `basis` vectors, then restarted from the Ritz vector, at most
/// `max_products` products in all. The smallest Ritz value is found after every step by bisection on the
/// tridiagonal matrix, its residual estimated by β·|last component|, and confirmed by one more product
/// with the Ritz vector. It stops when that residual is small, or as soon as ρ ≤ threshold: an NTK's small
/// end is a cluster that takes thousands of products to resolve, but a Rayleigh quotient below the
/// singularity tolerance already proves that the matrix is singular to working precision.
template <class Op>
Smallest smallest(Op& op, double lambda_max, double threshold, double floor, int64_t basis, int64_t max_products) {
  const int64_t n = op.rows();
  basis = std::clamp<int64_t>(basis, 2, n);
  Eigen::MatrixXd V(n, basis);
  Eigen::VectorXd w(n), y(n), ky(n);
  std::vector<double> a(basis), b(basis);
  detail::Rng rng(20261203);
  for (int64_t i = 0; i < n; ++i) y[i] = rng.uniform(-0.5, 0.5);
  y.normalize();
  const auto good = [&](double rho, double residual) {
    return residual <= std::max(1e-10 * std::abs(rho), floor * std::abs(lambda_max));
  };
  Smallest best;
  int64_t& products = best.products;
  while (true) {
    V.col(0) = y;
    for (int64_t j = 0; j < basis; ++j) {
      op.perform_op(V.col(j).data(), w.data());
      ++products;
      a[j] = V.col(j).dot(w);
      for (int pass = 0; pass < 2; ++pass) {
        const Eigen::VectorXd h = V.leftCols(j + 1).transpose() * w;
        w.noalias() -= V.leftCols(j + 1) * h;
      }
      b[j] = w.norm();
      if (!std::isfinite(a[j]) || !std::isfinite(b[j])) return best;  // not converged (the caller checks values)
      const double theta = tridiagonal_smallest(a, b, j + 1);
      const std::vector<double> s = tridiagonal_vector(a, b, j + 1, theta);
      const double estimate = b[j] * std::abs(s[static_cast<size_t>(j)]);
      const bool exhausted = b[j] <= 1e-14 * std::abs(lambda_max) || j + 1 == n;
      const bool last = j + 1 == basis || products + 1 >= max_products;
      if (theta <= threshold || good(theta, estimate) || exhausted || last) {
        y = V.leftCols(j + 1) * Eigen::Map<const Eigen::VectorXd>(s.data(), j + 1);
        y.normalize();
        op.perform_op(y.data(), ky.data());
        ++products;
        const double rho = y.dot(ky);
        const double residual = (ky - rho * y).norm();
        best.value = rho;
        best.residual = residual;
        best.below = rho <= threshold;
        best.converged = good(rho, residual);
        if (best.below || best.converged || products >= max_products) return best;
        if (exhausted || last) break;  // restart from y
      }
      V.col(j + 1) = w / b[j];
    }
  }
}

template <class T>
void analyze_large_typed(const AnalyzeArgs& args, const NpyInfo& info, const detail::MappedFile& file) {
  const Shape& s = info.shape;
  const int64_t N = s[0], O = s.size() == 2 ? 1 : s[2];
  const Mode mode = s.size() == 2 ? Mode::trace : s.size() == 3 ? Mode::diagonal : Mode::full;
  KernelOp<T> op(reinterpret_cast<const T*>(file.data() + info.data_offset), N, O, mode);
  const int64_t size = op.rows();
  if (size < 3)
    throw Error(args.kernel + ": a " + std::to_string(size) + " x " + std::to_string(size) +
                " matrix; --extremes and --top need at least 3 x 3 (analyze it without them)");
  const double epsilon = info.itemsize == 4 ? 1.1920928955078125e-07 : 2.220446049250313e-16;
  const int64_t k = std::max<int64_t>(args.top, args.extremes ? 1 : 0);
  if (k >= size)
    throw Error("--top " + std::to_string(args.top) + ": expected fewer than the matrix's " + std::to_string(size) +
                " eigenvalues (analyze it without --top for all of them)");
  {
    // one product with zeros is NaN in every row holding a NaN or an infinity (0 · ∞ = NaN): the check the
    // dense solver makes, before iterations that a NaN would keep from converging for 20,000 products
    const std::vector<double> zeros(static_cast<size_t>(size), 0.0);
    std::vector<double> y(static_cast<size_t>(size));
    op.perform_op(zeros.data(), y.data());
    for (int64_t r = 0; r < size; ++r)
      if (!(y[static_cast<size_t>(r)] == 0))
        throw Error(args.kernel + ": row " + std::to_string(r) + " of the " + std::to_string(size) + " x " +
                    std::to_string(size) + " matrix holds NaN or Inf; expected finite values");
  }
  const Found top = lanczos(op, k, Spectra::SortRule::LargestAlge, std::max<int64_t>(2 * k + 1, 20), 1e-10);
  const double lambda_max = top.values.empty() ? 0 : top.values.front();
  const double tolerance = static_cast<double>(size) * epsilon * std::abs(lambda_max);
  Smallest bottom;
  if (args.extremes) {
    // a basis of at most 512 MB (and 2000 vectors), then restarts; at most 20,000 products
    const int64_t basis = std::clamp<int64_t>((int64_t{512} << 20) / (8 * size), 64, 2000);
    // --resolve-min: no stop at the singularity proof, and converged at a residual of ε·λmax, the size of
    // the stored values' own rounding (‖E‖₂ ≤ ‖E‖_F ≤ ε/2·‖Θ‖_F for a rounding E of each value)
    bottom = args.resolve_min ? smallest(op, lambda_max, -INFINITY, std::max(epsilon, 1e-13), basis, 20000)
                              : smallest(op, lambda_max, tolerance, 1e-13, basis, 20000);
  }
  nlohmann::ordered_json j;
  j["file"] = args.kernel;
  j["mode"] = name(mode);
  j["samples"] = N;
  j["outputs"] = O;
  j["size"] = size;
  j["dtype"] = info.itemsize == 4 ? "float32" : "float64";
  j["eigensolver"] = args.extremes ? "lanczos (λmax: Spectra SymEigsSolver; λmin: Lanczos with full "
                                     "reorthogonalisation; memory-mapped input)"
                                   : "lanczos (Spectra SymEigsSolver, memory-mapped input)";
  j["trace"] = op.trace();
  j["lambda_max"] = lambda_max;
  j["lambda_max_converged"] = top.converged;
  if (args.extremes) {
    using nlohmann::ordered_json;
    const double rho = bottom.value;
    // λmin ≤ ρ always: ρ ≤ tolerance proves the kernel singular to working precision, converged or not
    const bool singular = rho <= tolerance, pd = bottom.converged && !singular;
    j["lambda_min"] = bottom.converged ? ordered_json(rho) : ordered_json(nullptr);
    j["lambda_min_converged"] = bottom.converged;
    j["lambda_min_upper_bound"] = rho;
    j["lambda_min_residual"] = bottom.residual;
    j["lambda_min_products"] = bottom.products;
    j["condition"] = pd ? ordered_json(lambda_max / rho) : ordered_json(nullptr);
    // and the reported λmax ≤ the true one, so the condition number is at least their ratio
    j["condition_lower_bound"] = rho > 0 ? ordered_json(lambda_max / rho) : ordered_json(nullptr);
    j["condition_method"] = "lanczos";
    j["positive_definite"] = singular ? ordered_json(false) : pd ? ordered_json(true) : ordered_json(nullptr);
    j["tolerance"] = tolerance;
    const auto g = [](double v) {
      char b[32];
      std::snprintf(b, sizeof b, "%.6g", v);
      return std::string(b);
    };
    if (singular && bottom.converged)
      j["note"] = "λmin = " + g(rho) + " ≤ tolerance " + g(tolerance) +
                  " (size · ε · λmax): singular to working precision, so the condition number is infinite (null)";
    else if (singular)
      j["note"] = "a Ritz vector's Rayleigh quotient " + g(rho) + " ≤ tolerance " + g(tolerance) +
                  " (size · ε · λmax) proves λmin ≤ it: singular to working precision, so the condition number "
                  "is infinite (null); λmin itself was not resolved further (--resolve-min does)";
    else if (!bottom.converged)
      j["note"] = "λmin did not converge within " + std::to_string(bottom.products) +
                  " products (the small end of an NTK's spectrum is clustered): λmin ≤ lambda_min_upper_bound; "
                  "the condition number needs the dense solver (xntk analyze without --extremes)";
  }
  j["effective_rank"] = nullptr;
  j["effective_rank_method"] = "needs the whole spectrum: run xntk analyze without --extremes and --top";
  if (args.top > 0)
    j["top"] = std::vector<double>(
        top.values.begin(), top.values.begin() + std::min<size_t>(top.values.size(), static_cast<size_t>(args.top)));
  j["matrix_products"] = op.products();
  if (!args.vectors.empty()) {
    if (!top.converged) throw Error(args.vectors + ": the top eigenpairs did not converge; nothing written");
    Tensor<double> v({static_cast<int64_t>(top.vectors.cols()), size});
    for (int64_t c = 0; c < top.vectors.cols(); ++c)
      for (int64_t r = 0; r < size; ++r) v[c * size + r] = top.vectors(r, c);
    detail::AtomicFile out(args.vectors);
    write_npy(out.stream(), v);
    out.commit();
  }
  if (args.json) {
    std::cout << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << std::endl;
    return;
  }
  std::cout << args.kernel << ": " << name(mode) << " kernel, N = " << N << " samples, O = " << O << " outputs, "
            << size << " x " << size << " matrix\n";
  for (const auto& [key, value] : j.items()) {
    if (key == "file" || key == "mode" || key == "samples" || key == "outputs" || key == "size") continue;
    std::cout << "  " << key << std::string(key.size() < 22 ? 22 - key.size() : 1, ' ') << value.dump() << "\n";
  }
}

}  // namespace
#endif

void analyze_large(const AnalyzeArgs& args) {
#ifndef XNTK_HAVE_SPECTRA
  throw Error(std::string(args.extremes ? "--extremes" : "--top") +
              ": this xntk was built without Spectra (apt-get install libspectra-dev and rebuild)");
#else
  if (!args.components.empty())
    throw Error("--components: not with --extremes or --top (analyze the components without them)");
  const NpyInfo info = read_npy_info(args.kernel);
  const Shape& s = info.shape;
  const bool square = s.size() >= 2 && s.size() <= 4 && s[0] == s[1] && (s.size() != 4 || s[2] == s[3]);
  if (!square)
    throw Error(args.kernel + ": shape " + to_string(s) + "; expected Θ(X, X) as (N, N), (N, N, O) or (N, N, O, O)");
  if (info.fortran_order)
    throw Error(args.kernel + ": Fortran-ordered; --extremes and --top read C-ordered kernels in place");
  if (info.swapped)
    throw Error(args.kernel +
                ": data in the other byte order; --extremes and --top read it in place (rewrite it "
                "in the host's order, e.g. numpy's astype('=f8'))");
  if (!detail::readable_in_place(info))
    throw Error(args.kernel + ": its data starts at byte " + std::to_string(info.data_offset) +
                ", not a multiple of its value size; --extremes and --top read it in place");
  const auto file = detail::map_npy(args.kernel, info);
  if (info.itemsize == 4)
    analyze_large_typed<float>(args, info, *file);
  else
    analyze_large_typed<double>(args, info, *file);
#endif
}

}  // namespace xntk::cli
