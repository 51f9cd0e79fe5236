#include "xntk/analysis.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "analysis_lapack.hpp"
#include "cpu/cache.hpp"
#include "quote.hpp"

namespace xntk {
namespace {

std::string format(double v) {
  std::ostringstream s;
  s.precision(3);
  s << v;
  return s.str();
}

/// The kernel's square matrices: (n·o × n·o) for full mode, (n × n) for trace mode, and `o` blocks of (n × n)
/// for diagonal mode.
struct Layout {
  Mode mode = Mode::full;
  int64_t n = 0, o = 1;
};

Layout layout(const Shape& s, const std::string& what) {
  const bool square = s.size() >= 2 && s[0] == s[1];
  if (s.size() < 2 || s.size() > 4 || (s.size() == 4 && s[2] != s[3]))
    throw Error(what + " has shape " + to_string(s) +
                "; expected Θ(X, X) as (N, N, O, O) (full), (N, N) (trace) or (N, N, O) (diagonal)");
  if (!square)
    throw Error(what + " has shape " + to_string(s) + ": " + std::to_string(s[0]) + " × " + std::to_string(s[1]) +
                " samples; analysis needs Θ(X, X), square in samples (compute it without --x2)");
  if (s[0] == 0) throw Error(what + " has no samples");
  // (N, N, 0, 0) and (N, N, 0) hold no matrix at all: nothing to analyse, and no eigenvalue to report
  if (s.size() > 2 && s[2] == 0)
    throw Error(what + " has shape " + to_string(s) + ": no outputs (O = 0); expected O ≥ 1");
  if (s.size() == 2) return {Mode::trace, s[0], 1};
  if (s.size() == 3) return {Mode::diagonal, s[0], s[2]};
  return {Mode::full, s[0], s[2]};
}

/// Row-major (size × size) matrix of one block: all of the kernel in full and trace mode, output `block`'s
/// (N × N) slice in diagonal mode.
template <class T>
void matrix(const T* k, const Layout& l, int64_t block, double* m) {
  const int64_t n = l.n, o = l.o;
  if (l.mode == Mode::diagonal) {
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) m[i * n + j] = static_cast<double>(k[(i * n + j) * o + block]);
    return;
  }
  if (l.mode == Mode::trace) {
    std::copy(k, k + n * n, m);
    return;
  }
  // (n, n, o, o) -> rows n·O + o, columns m·O + o'
  const int64_t size = n * o;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t a = 0; a < o; ++a)
        for (int64_t b = 0; b < o; ++b)
          m[(i * o + a) * size + j * o + b] = static_cast<double>(k[((i * n + j) * o + a) * o + b]);
}

/// A (size × size) matrix of doubles from the block cache (lib/cpu/cache.hpp) for the solver, which overwrites
/// its input: a fresh vector per call mapped new pages each time (a training run's probe analysed every epoch,
/// 500 × 500: 2 MB, ~490 page faults a call).
class Scratch {
 public:
  explicit Scratch(int64_t size) : bytes_(static_cast<size_t>(size * size) * sizeof(double)) {
    if (bytes_ > 0) p_ = static_cast<double*>(detail::acquire_block(bytes_));
  }
  ~Scratch() {
    if (p_) detail::return_block(p_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  double* data() { return p_; }

 private:
  size_t bytes_;
  double* p_ = nullptr;
};

/// max|M − Mᵀ| / max|M|.
double asymmetry(const double* m, int64_t size) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < size; ++i)
    for (int64_t j = 0; j < size; ++j) {
      diff = std::max(diff, std::abs(m[i * size + j] - m[j * size + i]));
      scale = std::max(scale, std::abs(m[i * size + j]));
    }
  return scale > 0 ? diff / scale : diff;
}

/// Completes a summary from its ascending eigenvalues and trace.
void summarize(Spectrum& s, int64_t size, double epsilon) {
  const auto& ev = s.eigenvalues;
  if (ev.empty()) throw Error("spectrum: no eigenvalues (an empty matrix)");
  s.lambda_min = ev.front();
  s.lambda_max = ev.back();
  const double scale = std::max(std::abs(s.lambda_min), std::abs(s.lambda_max));
  s.tolerance = static_cast<double>(size) * epsilon * scale;
  s.numerical_rank = std::count_if(ev.begin(), ev.end(), [&](double v) { return v > s.tolerance; });
  s.positive_definite = s.lambda_min > s.tolerance;
  s.condition = s.positive_definite ? s.lambda_max / s.lambda_min : std::numeric_limits<double>::infinity();
  double sum = 0;
  for (double v : ev) sum += std::max(v, 0.0);
  if (sum > 0) {
    double entropy = 0;
    for (double v : ev)
      if (v > 0) entropy -= (v / sum) * std::log(v / sum);
    s.effective_rank = std::exp(entropy);
  }
  if (scale == 0) {
    s.note = "the kernel is zero";
  } else if (s.lambda_min < -s.tolerance) {
    s.note = "λmin = " + format(s.lambda_min) + " is negative beyond rounding (tolerance " + format(s.tolerance) +
             "): the matrix is not positive semi-definite, so it is not the NTK Θ(X, X) of one network";
  } else if (!s.positive_definite) {
    s.note = "λmin = " + format(s.lambda_min) + " ≤ tolerance " + format(s.tolerance) +
             ": singular to working precision (rank " + std::to_string(s.numerical_rank) + " of " +
             std::to_string(size) + "), so the condition number is infinite";
  }
}

/// Merges the per-output spectra of a diagonal kernel into the block-diagonal matrix's.
Spectrum merge(const std::vector<Spectrum>& parts, int64_t size, double epsilon) {
  Spectrum s;
  for (const auto& p : parts) {
    s.eigenvalues.insert(s.eigenvalues.end(), p.eigenvalues.begin(), p.eigenvalues.end());
    s.trace += p.trace;
  }
  std::sort(s.eigenvalues.begin(), s.eigenvalues.end());
  s.eigensolver = parts.front().eigensolver;
  summarize(s, size, epsilon);
  return s;
}

struct Analysed {
  Spectrum whole;
  std::vector<Spectrum> blocks;
  double asymmetry = 0;
};

template <class T>
Analysed analyse_one(const T* k, const Layout& l, const std::string& what, const AnalysisOptions& opt) {
  const int64_t count = l.mode == Mode::trace      ? l.n * l.n
                        : l.mode == Mode::diagonal ? l.n * l.n * l.o
                                                   : l.n * l.n * l.o * l.o;
  for (int64_t e = 0; e < count; ++e)
    if (!std::isfinite(k[e]))
      throw Error(what + " holds " + (std::isnan(k[e]) ? "NaN" : "Inf") + " at flat index " + std::to_string(e) +
                  "; expected finite values");
  Analysed r;
  const int64_t blocks = l.mode == Mode::diagonal ? l.o : 1;
  const int64_t size = l.mode == Mode::full ? l.n * l.o : l.n;
  Scratch scratch(size);
  double* m = scratch.data();
  for (int64_t b = 0; b < blocks; ++b) {
    matrix(k, l, b, m);
    r.asymmetry = std::max(r.asymmetry, asymmetry(m, size));
    if (r.asymmetry > opt.symmetry_tolerance)
      throw Error(what + " is not symmetric (max|K − Kᵀ| / max|K| = " + format(r.asymmetry) + " > " +
                  format(opt.symmetry_tolerance) + "); analysis needs Θ(X, X) (compute it without --x2)");
    // the symmetric part (M + Mᵀ) / 2, in place: the solver overwrites it, and a second copy of a large kernel
    // would double the memory
    Spectrum s;
    for (int64_t i = 0; i < size; ++i) {
      for (int64_t j = i + 1; j < size; ++j) {
        double& upper = m[i * size + j];
        double& lower = m[j * size + i];
        upper = lower = 0.5 * (upper + lower);
      }
      s.trace += m[i * size + i];
    }
    s.eigenvalues = detail::symmetric_eigenvalues(m, size, what);
    s.eigensolver = detail::eigensolver();
    summarize(s, size, opt.epsilon);
    r.blocks.push_back(std::move(s));
  }
  if (l.mode == Mode::diagonal)
    r.whole = merge(r.blocks, l.n * l.o, opt.epsilon);
  else
    r.whole = std::move(r.blocks.front());
  if (l.mode != Mode::diagonal) r.blocks.clear();
  return r;
}

}  // namespace

Spectrum spectrum(const std::vector<double>& m, int64_t n, double epsilon) {
  if (n <= 0 || static_cast<int64_t>(m.size()) != n * n)
    throw Error("spectrum: expected a non-empty " + std::to_string(n) + " × " + std::to_string(n) + " matrix, got " +
                std::to_string(m.size()) + " values");
  return analyse_one(m.data(), {Mode::trace, n, 1}, "matrix", {.epsilon = epsilon, .symmetry_tolerance = INFINITY})
      .whole;
}

namespace {

template <class T>
Analysis analyze_view(TensorRef<T> kernel, const std::vector<NamedTensor<double>>& components,
                      const AnalysisOptions& given) {
  AnalysisOptions options = given;
  if (options.epsilon == 0) options.epsilon = std::numeric_limits<T>::epsilon();
  if (!(options.epsilon > 0) || !std::isfinite(options.epsilon))
    throw Error("analyze: epsilon " + std::to_string(given.epsilon) + ", expected a positive machine epsilon");
  const Layout l = layout(kernel.shape(), "kernel");
  Analysis a;
  a.mode = l.mode;
  a.samples = l.n;
  a.outputs = l.o;
  Analysed whole = analyse_one(kernel.data(), l, "kernel", options);
  a.spectrum = std::move(whole.whole);
  a.per_output = std::move(whole.blocks);
  a.asymmetry = whole.asymmetry;
  for (const auto& c : components) {
    if (c.name == "total") continue;
    const std::string what = "component " + detail::quote(c.name);
    if (c.tensor.shape() != kernel.shape())
      throw Error(what + " has shape " + to_string(c.tensor.shape()) + ", expected the kernel's " +
                  to_string(kernel.shape()));
    ComponentSummary s;
    s.name = c.name;
    s.spectrum = analyse_one(c.tensor.data(), l, what, options).whole;
    s.trace = s.spectrum.trace;
    s.share = a.spectrum.trace != 0 ? s.trace / a.spectrum.trace : std::numeric_limits<double>::quiet_NaN();
    a.components.push_back(std::move(s));
  }
  return a;
}

}  // namespace

Analysis analyze(TensorRef<double> kernel, const std::vector<NamedTensor<double>>& components,
                 const AnalysisOptions& options) {
  return analyze_view(kernel, components, options);
}

Analysis analyze(TensorRef<float> kernel, const std::vector<NamedTensor<double>>& components,
                 const AnalysisOptions& options) {
  return analyze_view(kernel, components, options);
}

Analysis analyze(const Tensor<double>& kernel, const std::vector<NamedTensor<double>>& components,
                 const AnalysisOptions& options) {
  return analyze_view(TensorRef<double>(kernel), components, options);
}

Analysis analyze(const Tensor<float>& kernel, const std::vector<NamedTensor<float>>& components,
                 const AnalysisOptions& options) {
  std::vector<NamedTensor<double>> wide;
  wide.reserve(components.size());
  for (const auto& c : components) wide.push_back({c.name, c.tensor.cast<double>()});
  return analyze_view(TensorRef<float>(kernel), wide, options);
}

}  // namespace xntk
