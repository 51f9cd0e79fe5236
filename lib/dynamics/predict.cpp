// Kernel predictions of gradient-descent training in function space (include/xntk/dynamics.hpp): mse in
// closed form by the eigendecomposition of Θ (per output when the kernel has no cross-output terms), and
// cross-entropy by iterating the update. Computed in double whatever T.

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "batch.hpp"
#include "quote.hpp"
#include "xntk/dynamics.hpp"

namespace xntk {

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;

/// A kernel's layout, read off its shape against N (rows) and O.
enum class Layout { full, trace, diagonal };

struct Shapes {
  int64_t n = 0, m = 0, outputs = 0;
  Layout layout = Layout::full;
  bool labels = false;  ///< the targets are class labels (N) (cross-entropy), not values
};

std::string shape_text(const Shape& s) { return to_string(s); }

/// Checks the inputs against each other; the outputs O come from the targets (or f₀ for labels).
template <class T>
Shapes check(const PredictInputs<T>& in, Loss loss) {
  Shapes s;
  const Shape& k = in.k_train.shape();
  if (k.size() < 2 || k.size() > 4 || k[0] != k[1])
    throw Error("the training kernel has shape " + shape_text(k) +
                "; expected Θ(X, X) as (N, N, O, O), (N, N) or (N, N, O)");
  s.n = k[0];
  if (s.n < 1) throw Error("the training kernel has shape " + shape_text(k) + "; expected at least one sample");
  const Shape& y = in.y.shape();
  if (y.empty() || y[0] != s.n)
    throw Error("the targets have shape " + shape_text(y) + "; expected " + std::to_string(s.n) +
                " samples, as the training kernel");
  const bool labels = loss == Loss::cross_entropy && y.size() == 1;
  s.labels = labels;
  s.outputs = labels ? (k.size() == 4 ? k[2] : k.size() == 3 ? k[2] : 0) : numel(y) / s.n;
  if (labels && k.size() == 2) {
    if (!in.f0_train)
      throw Error(
          "cross-entropy on labels with a trace-mode kernel needs the initial training outputs (f0_train; --f0-train "
          "on the command line) for the number of classes");
    s.outputs = numel(in.f0_train->shape()) / s.n;
  }
  if (k.size() == 4) {
    s.layout = Layout::full;
    if (k[2] != s.outputs || k[3] != s.outputs)
      throw Error("the training kernel has shape " + shape_text(k) + " but the targets have " +
                  std::to_string(s.outputs) + " outputs; expected (" + std::to_string(s.n) + ", " +
                  std::to_string(s.n) + ", " + std::to_string(s.outputs) + ", " + std::to_string(s.outputs) + ")");
  } else if (k.size() == 3) {
    s.layout = Layout::diagonal;
    if (k[2] != s.outputs)
      throw Error("the training kernel has shape " + shape_text(k) + " but the targets have " +
                  std::to_string(s.outputs) + " outputs");
  } else {
    s.layout = Layout::trace;
  }
  if (s.outputs < 1)
    throw Error("no outputs per sample (the training kernel " + shape_text(k) + ", the targets " + shape_text(y) +
                "); expected at least one");
  if (in.f0_train && numel(in.f0_train->shape()) != s.n * s.outputs)
    throw Error("the initial training outputs have shape " + shape_text(in.f0_train->shape()) + "; expected (" +
                std::to_string(s.n) + ", " + std::to_string(s.outputs) + ")");
  if (in.k_test) {
    const Shape& kt = in.k_test->shape();
    const bool ok =
        kt.size() == k.size() && kt.size() >= 2 && kt[1] == s.n && std::equal(k.begin() + 2, k.end(), kt.begin() + 2);
    if (!ok)
      throw Error("the test kernel has shape " + shape_text(kt) + "; expected Θ(X_test, X) as (M, " +
                  std::to_string(s.n) +
                  (k.size() == 4   ? ", O, O)"
                   : k.size() == 3 ? ", O)"
                                   : ")") +
                  " to match the training kernel " + shape_text(k));
    s.m = kt[0];
    if (in.f0_test && numel(in.f0_test->shape()) != s.m * s.outputs)
      throw Error("the initial test outputs have shape " + shape_text(in.f0_test->shape()) + "; expected (" +
                  std::to_string(s.m) + ", " + std::to_string(s.outputs) + ")");
  } else if (in.f0_test) {
    throw Error("initial test outputs were given without a test kernel");
  }
  detail::check_finite(in.y, "the targets");
  if (in.f0_train) detail::check_finite(*in.f0_train, "the initial training outputs");
  if (in.k_test) detail::check_finite(*in.k_test, "the test kernel");
  if (in.f0_test) detail::check_finite(*in.f0_test, "the initial test outputs");
  // symmetric (the driver's Θ(X, X) is exactly symmetric; a file from elsewhere may not be)
  const T* d = in.k_train.data();
  double asym = 0, scale = 0;
  const int64_t per = numel(k) / (s.n * s.n);
  for (int64_t i = 0; i < s.n; ++i)
    for (int64_t j = 0; j < s.n; ++j)
      for (int64_t e = 0; e < per; ++e) {
        const int64_t f = k.size() == 4 ? (e % s.outputs) * s.outputs + e / s.outputs : e;
        const double a = d[(i * s.n + j) * per + e], b = d[(j * s.n + i) * per + f];
        if (!std::isfinite(a)) throw Error("the training kernel holds a value that is not finite");
        asym = std::max(asym, std::abs(a - b));
        scale = std::max(scale, std::abs(a));
      }
  if (asym > 1e-6 * scale)
    throw Error("the training kernel is not symmetric (max |K − Kᵀ| / max |K| = " + std::to_string(asym / scale) +
                "); expected Θ(X, X)");
  return s;
}

/// The kernel block of output o (or the whole (N·O)² matrix for `full`) as a dense matrix: rows r of `rows`
/// samples against the N training samples.
template <class T>
Mat block(TensorRef<T> k, const Shapes& s, int64_t rows, int64_t o) {
  const T* d = k.data();
  const int64_t O = s.outputs, N = s.n;
  if (s.layout == Layout::full) {
    Mat m(rows * O, N * O);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t a = 0; a < O; ++a)
          for (int64_t b = 0; b < O; ++b) m(i * O + a, j * O + b) = d[((i * N + j) * O + a) * O + b];
    return m;
  }
  Mat m(rows, N);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < N; ++j)
      m(i, j) = s.layout == Layout::trace ? static_cast<double>(d[i * N + j]) / static_cast<double>(O)
                                          : static_cast<double>(d[(i * N + j) * O + o]);
  return m;
}

/// Rows × O values (initial outputs, or zero).
template <class T>
Mat outputs_of(const std::optional<TensorRef<T>>& f, int64_t rows, int64_t O) {
  Mat m = Mat::Zero(rows, O);
  if (f)
    for (int64_t i = 0; i < rows * O; ++i) m(i / O, i % O) = f->data()[i];
  return m;
}

/// Targets as rows × O values (labels become one-hot rows).
template <class T>
Mat targets_of(TensorRef<T> y, int64_t rows, int64_t O, bool labels) {
  Mat m = Mat::Zero(rows, O);
  if (labels) {
    for (int64_t i = 0; i < rows; ++i) {
      const double v = y.data()[i];
      if (!(v >= 0 && v < static_cast<double>(O) && v == std::floor(v)))
        throw Error("the targets: the label of sample " + std::to_string(i) + " is " + detail::number(v) +
                    ", expected an integer in [0, " + std::to_string(O) + ")");
      m(i, static_cast<int64_t>(v)) = 1;
    }
    return m;
  }
  for (int64_t i = 0; i < rows * O; ++i) m(i / O, i % O) = y.data()[i];
  return m;
}

/// A flattening of rows × O values for one problem: the whole (rows·O) vector for `full`, column o otherwise.
Vec part(const Mat& v, const Shapes& s, int64_t o) {
  if (s.layout == Layout::full) {
    Vec r(v.size());
    for (int64_t i = 0; i < v.rows(); ++i)
      for (int64_t a = 0; a < v.cols(); ++a) r(i * v.cols() + a) = v(i, a);
    return r;
  }
  return v.col(o);
}

void put(Mat& v, const Shapes& s, int64_t o, const Vec& x) {
  if (s.layout == Layout::full) {
    for (int64_t i = 0; i < v.rows(); ++i)
      for (int64_t a = 0; a < v.cols(); ++a) v(i, a) = x(i * v.cols() + a);
    return;
  }
  v.col(o) = x;
}

template <class T>
Tensor<T> stack(const std::vector<Mat>& per_time) {
  if (per_time.empty()) return {};
  const int64_t rows = per_time[0].rows(), O = per_time[0].cols();
  Tensor<T> t({static_cast<int64_t>(per_time.size()), rows, O});
  for (size_t k = 0; k < per_time.size(); ++k)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t a = 0; a < O; ++a)
        t[(static_cast<int64_t>(k) * rows + i) * O + a] = static_cast<T>(per_time[k](i, a));
  return t;
}

/// mse predictions for every time from one function of the eigenvalues: per problem (the whole kernel, or
/// each output), train f = y + V diag(decay(λ)) Vᵀ (f₀ − y) and test f(x) = f₀(x) − Θ(x, X) V diag(gain(λ)) Vᵀ
/// (f₀ − y).
template <class T, class Decay, class Gain>
Predictions<T> mse_closed_form(const PredictInputs<T>& in, const Shapes& s, size_t times, Decay decay, Gain gain) {
  const int64_t O = s.outputs;
  const Mat y = targets_of(in.y, s.n, O, s.labels), f0 = outputs_of(in.f0_train, s.n, O);
  const Mat f0x = in.k_test ? outputs_of(in.f0_test, s.m, O) : Mat();
  std::vector<Mat> train(times, Mat(s.n, O)), test(in.k_test ? times : 0, Mat(s.m, O));
  const int64_t problems = s.layout == Layout::full ? 1 : O;
  Eigen::SelfAdjointEigenSolver<Mat> eig;
  for (int64_t o = 0; o < problems; ++o) {
    // a trace-mode kernel is the same for every output: one decomposition serves them all
    if (o == 0 || s.layout != Layout::trace) eig.compute(block(in.k_train, s, s.n, o));
    const Vec& lambda = eig.eigenvalues();
    const Mat& V = eig.eigenvectors();
    const double tol = static_cast<double>(lambda.size()) * 2.220446049250313e-16 * lambda.cwiseAbs().maxCoeff();
    const Vec r0 = part(f0, s, o) - part(y, s, o), proj = V.transpose() * r0;
    const Mat kx = in.k_test ? block(*in.k_test, s, s.m, o) : Mat();
    for (size_t k = 0; k < times; ++k) {
      Vec d(lambda.size()), g(lambda.size());
      for (int64_t i = 0; i < lambda.size(); ++i) {
        d(i) = decay(k, lambda(i), tol);
        g(i) = gain(k, lambda(i), tol);
      }
      put(train[k], s, o, part(y, s, o) + V * d.cwiseProduct(proj));
      if (in.k_test) put(test[k], s, o, part(f0x, s, o) - kx * (V * g.cwiseProduct(proj)));
    }
  }
  return {stack<T>(train), stack<T>(test)};
}

}  // namespace

template <class T>
Predictions<T> predict_steps(const PredictInputs<T>& in, Loss loss, double lr, const std::vector<int64_t>& steps) {
  if (!(lr > 0) || !std::isfinite(lr))
    throw Error("predictions: the learning rate must be positive and finite, got " + detail::number(lr));
  for (int64_t k : steps)
    if (k < 0) throw Error("predictions: a step count must be non-negative, got " + std::to_string(k));
  const Shapes s = check(in, loss);
  const int64_t O = s.outputs;
  if (loss == Loss::mse) {
    const double c = lr * 2.0 / static_cast<double>(s.n * O);
    // train: the residual times (1 − ηcλ)^k; test: Σ_{j<k} (1 − ηcλ)^j ηc = (1 − (1 − ηcλ)^k)/λ, or ηck at λ = 0
    return mse_closed_form(
        in, s, steps.size(),
        [&](size_t k, double l, double) { return std::pow(1 - c * l, static_cast<double>(steps[k])); },
        [&](size_t k, double l, double tol) {
          const double kk = static_cast<double>(steps[k]);
          return std::abs(l) <= tol ? c * kk : (1 - std::pow(1 - c * l, kk)) / l;
        });
  }
  // cross-entropy: iterate f ← f − η Θ ∇_f L, ∇_f L = (softmax(f)·Σ_c y_c − y)/N per sample
  const Mat y = targets_of(in.y, s.n, O, s.labels);
  Mat f = outputs_of(in.f0_train, s.n, O), fx = in.k_test ? outputs_of(in.f0_test, s.m, O) : Mat();
  const Mat K = s.layout == Layout::full ? block(in.k_train, s, s.n, 0) : Mat();
  const Mat KX = in.k_test && s.layout == Layout::full ? block(*in.k_test, s, s.m, 0) : Mat();
  std::vector<Mat> per_o(s.layout == Layout::full ? 0 : O), per_ox(s.layout == Layout::full || !in.k_test ? 0 : O);
  for (size_t o = 0; o < per_o.size(); ++o) per_o[o] = block(in.k_train, s, s.n, static_cast<int64_t>(o));
  for (size_t o = 0; o < per_ox.size(); ++o) per_ox[o] = block(*in.k_test, s, s.m, static_cast<int64_t>(o));
  std::vector<int64_t> order(steps.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return steps[a] < steps[b]; });
  std::vector<Mat> train(steps.size()), test(in.k_test ? steps.size() : 0);
  int64_t done = 0;
  for (const int64_t which : order) {
    for (; done < steps[static_cast<size_t>(which)]; ++done) {
      Mat grad(s.n, O);
      for (int64_t i = 0; i < s.n; ++i) {
        const double mx = f.row(i).maxCoeff();
        const Eigen::RowVectorXd e = (f.row(i).array() - mx).exp();
        grad.row(i) = (e / e.sum() * y.row(i).sum() - y.row(i)) / static_cast<double>(s.n);
      }
      Mat step(s.n, O), stepx(s.m, O);
      if (s.layout == Layout::full) {
        put(step, s, 0, K * part(grad, s, 0));
        if (in.k_test) put(stepx, s, 0, KX * part(grad, s, 0));
      } else {
        for (int64_t o = 0; o < O; ++o) {
          step.col(o) = per_o[static_cast<size_t>(o)] * grad.col(o);
          if (in.k_test) stepx.col(o) = per_ox[static_cast<size_t>(o)] * grad.col(o);
        }
      }
      f -= lr * step;
      if (in.k_test) fx -= lr * stepx;
    }
    train[static_cast<size_t>(which)] = f;
    if (in.k_test) test[static_cast<size_t>(which)] = fx;
  }
  return {stack<T>(train), stack<T>(test)};
}

template <class T>
Predictions<T> predict_time(const PredictInputs<T>& in, double lr, const std::vector<double>& times, double ridge) {
  if (!(lr > 0) || !std::isfinite(lr))
    throw Error("predictions: the learning rate must be positive and finite, got " + detail::number(lr));
  if (!(ridge >= 0) || !std::isfinite(ridge))
    throw Error("predictions: the ridge must be non-negative and finite, got " + detail::number(ridge));
  for (double t : times)
    if (!(t >= 0) || std::isnan(t)) throw Error("predictions: a time must be non-negative, got " + detail::number(t));
  const Shapes s = check(in, Loss::mse);
  const double c = lr * 2.0 / static_cast<double>(s.n * s.outputs);
  auto infinite = [&](size_t k) { return std::isinf(times[k]); };
  return mse_closed_form(
      in, s, times.size(),
      [&](size_t k, double l, double tol) {
        if (infinite(k)) return std::abs(l + ridge) <= tol ? 1.0 : ridge / (l + ridge);  // 1 − λ/(λ + ridge)
        return std::exp(-c * l * times[k]);
      },
      [&](size_t k, double l, double tol) {
        if (infinite(k)) return std::abs(l + ridge) <= tol ? 0.0 : 1.0 / (l + ridge);
        return std::abs(l) <= tol ? c * times[k] : (1 - std::exp(-c * l * times[k])) / l;
      });
}

template Predictions<float> predict_steps(const PredictInputs<float>&, Loss, double, const std::vector<int64_t>&);
template Predictions<double> predict_steps(const PredictInputs<double>&, Loss, double, const std::vector<int64_t>&);
template Predictions<float> predict_time(const PredictInputs<float>&, double, const std::vector<double>&, double);
template Predictions<double> predict_time(const PredictInputs<double>&, double, const std::vector<double>&, double);

}  // namespace xntk
