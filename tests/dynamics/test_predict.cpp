// Kernel predictions and per-sample Jacobians: k steps of the linearised network's full-batch gradient
// descent give the kernel's k-step predictions (float64 ≤ 1e-10, mse and cross-entropy), many small steps
// approach gradient flow's closed form, t = ∞ is kernel ridge regression, and J Jᵀ is the NTK.

#include <Eigen/Dense>
#include <catch2/catch.hpp>

#include "../helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

ModelSpec mlp() {
  return {.input = {4},
          .layers = {Linear{.out_features = 7}, Tanh(), Linear{.out_features = 6}, ReLU(), Linear{.out_features = 3}}};
}

/// The rows of a (T, N, O) prediction at time index k.
Tensor<double> at(const Tensor<double>& p, int64_t k) {
  const int64_t per = p.size() / p.dim(0);
  return Tensor<double>({p.dim(1), p.dim(2)}, std::vector<double>(p.data() + k * per, p.data() + (k + 1) * per));
}

}  // namespace

TEST_CASE("jacobian gives the per-sample Jacobians in component order, and J Jᵀ is the kernel",
          "[dynamics][jacobian]") {
  for (const ModelSpec& spec : {mlp(), ModelSpec{.input = {2, 6, 6},
                                       .parameterization = Parameterization::ntk,
                                       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3}, ReLU(), MaxPool2d{},
                                                  Flatten{}, Linear{.out_features = 2}}}}) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 3);
    Shape s{4};
    s.insert(s.end(), spec.input.begin(), spec.input.end());
    const auto x = test::randn<double>(s, 4);
    const auto J = jacobian(net, x);
    const int64_t n = 4, O = net.outputs(), P = net.num_parameters();
    // the autograd path's Jacobians, per parameter in state_dict order, placed in component order
    const auto [worst, scale] = test::jacobian_gap(net, x);
    CHECK(worst <= 1e-13 * scale);
    // Θ(x_i, x_j)[o, o'] = ⟨J_io, J_jo'⟩
    const auto k = ntk(net, x).total;
    Tensor<double> jj(k.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t q = 0; q < O; ++q) {
            double d = 0;
            for (int64_t e = 0; e < P; ++e) d += J[(i * O + o) * P + e] * J[(j * O + q) * P + e];
            jj[((i * n + j) * O + o) * O + q] = d;
          }
    CHECK(test::rel_error(jj, k) <= 1e-12);
  }
}

TEST_CASE("k steps of the linearised network's gradient descent are the kernel's k-step predictions",
          "[dynamics][predict]") {
  const Sequential<double> net0(mlp(), 5);
  const int64_t n = 6, m = 4, O = 3;
  const auto x = test::randn<double>({n, 4}, 6), xt = test::randn<double>({m, 4}, 7);
  const auto y = test::randn<double>({n, O}, 8);
  const Tensor<double> labels({n}, std::vector<double>{0, 2, 1, 1, 0, 2});
  const auto k_train = ntk(net0, x).total, k_test = ntk(net0, xt, x).total;
  const auto f0 = net0.forward(x), f0t = net0.forward(xt);
  const double lr = 0.3;
  const std::vector<int64_t> steps = {0, 1, 7, 40};
  for (const Loss kind : {Loss::mse, Loss::cross_entropy}) {
    INFO(name(kind));
    const Tensor<double>& target = kind == Loss::mse ? y : labels;
    const auto p = predict_steps<double>(
        {.k_train = k_train, .y = target, .k_test = k_test, .f0_train = f0, .f0_test = f0t}, kind, lr, steps);
    REQUIRE(p.train.shape() == Shape{4, n, O});
    REQUIRE(p.test.shape() == Shape{4, m, O});
    // the linearised network trained by full-batch SGD (no momentum): f_{k+1} = f_k − η Θ ∇_f L exactly
    Sequential<double> net(mlp(), 5);
    Trainer<double> trainer(net, {.loss = kind, .optimizer = {.lr = lr}, .linearized = true});
    int64_t done = 0;
    for (size_t k = 0; k < steps.size(); ++k) {
      for (; done < steps[k]; ++done) trainer.step(x, target);
      INFO("step " << steps[k]);
      CHECK(test::rel_error(at(p.train, static_cast<int64_t>(k)), trainer.outputs(x)) <= 1e-10);
      CHECK(test::rel_error(at(p.test, static_cast<int64_t>(k)), trainer.outputs(xt)) <= 1e-10);
    }
  }
  // the diagonal-mode kernel drops the cross-output terms: the same as a full kernel with them zeroed
  const auto k_diag = ntk(net0, x, KernelOptions{.mode = Mode::diagonal}).total;
  Tensor<double> k_block(k_train.shape());
  for (int64_t i = 0; i < n * n; ++i)
    for (int64_t o = 0; o < O; ++o) k_block[(i * O + o) * O + o] = k_diag[i * O + o];
  const auto pd = predict_steps<double>({.k_train = k_diag, .y = y}, Loss::mse, lr, {25});
  const auto pb = predict_steps<double>({.k_train = k_block, .y = y}, Loss::mse, lr, {25});
  CHECK(test::rel_error(pd.train, pb.train) <= 1e-12);
  // a trace-mode kernel stands for O times the per-output kernel: the same as (Θ_trace / O) ⊗ I
  const auto k_trace = ntk(net0, x, KernelOptions{.mode = Mode::trace}).total;
  Tensor<double> k_eye(k_train.shape());
  for (int64_t i = 0; i < n * n; ++i)
    for (int64_t o = 0; o < O; ++o) k_eye[(i * O + o) * O + o] = k_trace[i] / O;
  const auto pt = predict_steps<double>({.k_train = k_trace, .y = y}, Loss::mse, lr, {25});
  const auto pe = predict_steps<double>({.k_train = k_eye, .y = y}, Loss::mse, lr, {25});
  CHECK(test::rel_error(pt.train, pe.train) <= 1e-12);
}

TEST_CASE("training α·f (centred or not) is predicted by the unscaled Θ at the same learning rate, or α²Θ at η/α²",
          "[dynamics][predict]") {
  // docs/dynamics.md: g = α f (or α (f − f₀)) trained on L(g)/α² moves as g_{k+1} = g_k − η Θ ∇_g L
  const Sequential<double> net0(mlp(), 5);
  const int64_t n = 6, m = 4, O = 3;
  const auto x = test::randn<double>({n, 4}, 6), xt = test::randn<double>({m, 4}, 7);
  const auto y = test::randn<double>({n, O}, 8);
  const auto k_train = ntk(net0, x).total, k_test = ntk(net0, xt, x).total;
  const double lr = 0.2, alpha = 3;
  Tensor<double> k_scaled = k_train, kt_scaled = k_test;
  for (int64_t i = 0; i < k_scaled.size(); ++i) k_scaled[i] *= alpha * alpha;
  for (int64_t i = 0; i < kt_scaled.size(); ++i) kt_scaled[i] *= alpha * alpha;
  for (const bool center : {false, true}) {
    INFO("center " << center);
    // g₀ = α f₀, or 0 when centred
    Tensor<double> g0 = net0.forward(x), g0t = net0.forward(xt);
    for (int64_t i = 0; i < g0.size(); ++i) g0[i] = center ? 0 : alpha * g0[i];
    for (int64_t i = 0; i < g0t.size(); ++i) g0t[i] = center ? 0 : alpha * g0t[i];
    const std::vector<int64_t> steps = {9};
    const auto p = predict_steps<double>({.k_train = k_train, .y = y, .k_test = k_test, .f0_train = g0, .f0_test = g0t},
                                         Loss::mse, lr, steps);
    const auto q =
        predict_steps<double>({.k_train = k_scaled, .y = y, .k_test = kt_scaled, .f0_train = g0, .f0_test = g0t},
                              Loss::mse, lr / (alpha * alpha), steps);
    Sequential<double> net(mlp(), 5);
    Trainer<double> trainer(net, {.loss = Loss::mse,
                                  .optimizer = {.lr = lr},
                                  .transform = {.alpha = alpha, .center = center},
                                  .linearized = true});
    for (int64_t k = 0; k < steps[0]; ++k) trainer.step(x, y);
    CHECK(test::rel_error(at(p.train, 0), trainer.outputs(x)) <= 1e-10);
    CHECK(test::rel_error(at(p.test, 0), trainer.outputs(xt)) <= 1e-10);
    CHECK(test::rel_error(at(q.train, 0), trainer.outputs(x)) <= 1e-10);
    // and not by α²Θ at η: that would be α² times too fast
    const auto wrong = predict_steps<double>({.k_train = k_scaled, .y = y, .f0_train = g0}, Loss::mse, lr, steps);
    CHECK(test::rel_error(at(wrong.train, 0), trainer.outputs(x)) > 1e-3);
  }
}

TEST_CASE("many small steps approach gradient flow, and t = ∞ solves the kernel system", "[dynamics][predict]") {
  const Sequential<double> net(mlp(), 9);
  const int64_t n = 5, m = 3, O = 3;
  const auto x = test::randn<double>({n, 4}, 10), xt = test::randn<double>({m, 4}, 11);
  const auto y = test::randn<double>({n, O}, 12);
  const auto K = ntk(net, x).total, Kx = ntk(net, xt, x).total;
  const auto f0 = net.forward(x), f0t = net.forward(xt);
  const PredictInputs<double> in{.k_train = K, .y = y, .k_test = Kx, .f0_train = f0, .f0_test = f0t};
  const double lr = 0.5, t = 20;
  const auto flow = predict_time(in, lr, {t});
  double previous = 1e300;
  for (const int64_t split : {10, 100, 1000}) {
    const auto discrete =
        predict_steps(in, Loss::mse, lr / static_cast<double>(split), {static_cast<int64_t>(t) * split});
    const double e = std::max(test::rel_error(discrete.train, flow.train), test::rel_error(discrete.test, flow.test));
    CAPTURE(split, e);
    CHECK(e < previous / 5);  // first order in the step: ten times smaller steps, about ten times closer
    previous = e;
  }
  CHECK(previous < 1e-3);
  // t = ∞ with a ridge: f₀(x) + Θ(x, X)(Θ + λI)⁻¹(y − f₀(X)), solved here directly
  for (const double ridge : {0.0, 0.1}) {
    INFO("ridge " << ridge);
    const auto inf = predict_time(in, lr, {std::numeric_limits<double>::infinity()}, ridge);
    Eigen::MatrixXd A(n * O, n * O), B(m * O, n * O);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t a = 0; a < O; ++a)
          for (int64_t b = 0; b < O; ++b) A(i * O + a, j * O + b) = K[((i * n + j) * O + a) * O + b];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t a = 0; a < O; ++a)
          for (int64_t b = 0; b < O; ++b) B(i * O + a, j * O + b) = Kx[((i * n + j) * O + a) * O + b];
    Eigen::VectorXd r(n * O), g0(n * O), t0(m * O);
    for (int64_t e = 0; e < n * O; ++e) {
      r(e) = y[e] - f0[e];
      g0(e) = f0[e];
    }
    for (int64_t e = 0; e < m * O; ++e) t0(e) = f0t[e];
    const Eigen::VectorXd alpha = (A + ridge * Eigen::MatrixXd::Identity(n * O, n * O)).lu().solve(r);
    const Eigen::VectorXd want = t0 + B * alpha, want_train = g0 + A * alpha;
    Tensor<double> w({1, m, O}), wt({1, n, O});
    for (int64_t e = 0; e < m * O; ++e) w[e] = want(e);
    for (int64_t e = 0; e < n * O; ++e) wt[e] = want_train(e);
    CHECK(test::rel_error(inf.test, w) <= 1e-8);
    CHECK(test::rel_error(inf.train, wt) <= 1e-8);
    if (ridge == 0)
      CHECK(test::rel_error(inf.train, Tensor<double>({1, n, O}, std::vector<double>(y.data(), y.data() + y.size()))) <=
            1e-8);
  }
}

TEST_CASE("kernel predictions refuse kernels and targets that do not fit", "[dynamics][predict][errors]") {
  const auto K = test::randn<double>({4, 3}, 1), y = test::randn<double>({4, 2}, 2);
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = K, .y = y}, Loss::mse, 0.1, {1}),
                    Contains("training kernel has shape (4, 3)") && Contains("expected"));
  Tensor<double> sym({4, 4});
  for (int64_t i = 0; i < 4; ++i) sym[i * 5] = 1;
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = sym, .y = test::randn<double>({3, 2}, 3)}, Loss::mse, 0.1, {1}),
                    Contains("targets have shape (3, 2)"));
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = sym, .y = y}, Loss::mse, -1, {1}), Contains("learning rate"));
  CHECK_THROWS_WITH(predict_time<double>({.k_train = sym, .y = y}, 0.1, {-1}), Contains("time must be non-negative"));
  Tensor<double> asym = sym;
  asym[1] = 0.5;
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = asym, .y = y}, Loss::mse, 0.1, {1}), Contains("not symmetric"));
  CHECK_THROWS_WITH(
      predict_steps<double>({.k_train = sym, .y = y, .k_test = test::randn<double>({2, 3}, 4)}, Loss::mse, 0.1, {1}),
      Contains("test kernel has shape (2, 3)"));
  const Tensor<double> diag4({4, 4, 2}), labels({4}, std::vector<double>{0, 1, 2, 1});
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = diag4, .y = labels}, Loss::cross_entropy, 0.1, {1}),
                    Contains("label of sample 2 is 2"));
  // labels and a trace-mode kernel say nothing about the number of classes: the initial outputs must
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = sym, .y = labels}, Loss::cross_entropy, 0.1, {1}),
                    Contains("needs the initial training outputs (f0_train") && Contains("number of classes"));
  // no samples or no outputs: refused, not divided by
  CHECK_THROWS_WITH(
      predict_steps<double>({.k_train = Tensor<double>({0, 0}), .y = Tensor<double>({0, 2})}, Loss::mse, 0.1, {1}),
      Contains("training kernel has shape (0, 0); expected at least one sample"));
  CHECK_THROWS_WITH(predict_time<double>({.k_train = sym, .y = Tensor<double>({4, 0})}, 0.1, {1}),
                    Contains("no outputs per sample"));
  // NaN or Inf anywhere is named
  Tensor<double> nan_y = y;
  nan_y[3] = std::nan("");
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = sym, .y = nan_y}, Loss::mse, 0.1, {1}),
                    Contains("the targets holds NaN at flat index 3"));
  Tensor<double> kt({2, 4});
  kt[5] = INFINITY;
  CHECK_THROWS_WITH(predict_time<double>({.k_train = sym, .y = y, .k_test = kt}, 0.1, {1}),
                    Contains("the test kernel holds Inf at flat index 5"));
  CHECK_THROWS_WITH(predict_time<double>({.k_train = sym, .y = y, .f0_train = nan_y}, 0.1, {1}),
                    Contains("initial training outputs holds NaN"));
}

TEST_CASE("mse targets (N,) are values, as (N, 1), not class labels", "[dynamics][predict]") {
  Tensor<double> k({4, 4});
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) k[i * 4 + j] = i == j ? 2.0 : 0.5;
  const Tensor<double> flat({4}, std::vector<double>{0.5, 0, -1.25, 3}), column = flat.reshaped({4, 1});
  const auto a = predict_steps<double>({.k_train = k, .y = flat}, Loss::mse, 0.3, {0, 1, 5});
  const auto b = predict_steps<double>({.k_train = k, .y = column}, Loss::mse, 0.3, {0, 1, 5});
  REQUIRE(a.train.shape() == Shape{3, 4, 1});
  for (int64_t i = 0; i < a.train.size(); ++i) CHECK(a.train[i] == b.train[i]);
  CHECK(a.train[4 + 3] != 3);  // one step moved the outputs, not all the way
  // after many steps the outputs reach the targets (f₀ = 0)
  const auto t = predict_time<double>({.k_train = k, .y = flat}, 0.1, {INFINITY});
  for (int64_t i = 0; i < 4; ++i) CHECK(t.train[i] == Approx(flat[i]).margin(1e-12));
}
