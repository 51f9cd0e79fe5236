// Training: the losses against PyTorch's definitions and finite differences, their parameter gradients
// through the layers against the autograd path, and whole training runs against PyTorch's trajectories
// (tests/dynamics/make_training_fixtures.py: SGD with momentum, dampening, Nesterov and weight decay, Adam with
// AMSGrad, full batch and mini-batches, mse and cross-entropy on labels and probabilities, the lazy-training
// transforms and the linearised network) to 1e-10 after 100 steps.

#include <Eigen/Eigenvalues>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;
namespace fs = std::filesystem;

TEST_CASE("mse and cross-entropy as PyTorch defines them, with their derivatives", "[dynamics][loss]") {
  const Tensor<double> f({2, 3}, std::vector<double>{0.5, -1.0, 2.0, 0.0, 3.0, -0.5});
  const Tensor<double> y({2, 3}, std::vector<double>{1.0, 0.0, 1.5, -1.0, 2.0, 0.5});
  // mse: the mean over all 6 elements; d/df = 2 (f − y) / 6
  const auto m = loss(Loss::mse, f, y);
  double want = 0;
  for (int64_t i = 0; i < 6; ++i) want += (f[i] - y[i]) * (f[i] - y[i]) / 6;
  CHECK(m.value == Approx(want).epsilon(1e-15));
  for (int64_t i = 0; i < 6; ++i) CHECK(m.grad[i] == Approx(2 * (f[i] - y[i]) / 6).epsilon(1e-15));
  // cross-entropy on labels 2 and 1: mean of log Σ exp(f) − f[label]
  const Tensor<double> labels({2}, std::vector<double>{2, 1});
  const auto c = loss(Loss::cross_entropy, f, labels);
  auto lse = [&](int64_t s) { return std::log(std::exp(f[s * 3]) + std::exp(f[s * 3 + 1]) + std::exp(f[s * 3 + 2])); };
  CHECK(c.value == Approx((lse(0) - f[2] + lse(1) - f[4]) / 2).epsilon(1e-14));
  // the same as one-hot probabilities; and every derivative against central differences
  const Tensor<double> onehot({2, 3}, std::vector<double>{0, 0, 1, 0, 1, 0});
  CHECK(loss(Loss::cross_entropy, f, onehot).value == Approx(c.value).epsilon(1e-15));
  const Tensor<double> probs({2, 3}, std::vector<double>{0.2, 0.3, 0.5, 0.6, 0.1, 0.3});
  for (const auto* target : {&labels, &probs}) {
    const auto l = loss(Loss::cross_entropy, f, *target);
    for (int64_t i = 0; i < 6; ++i) {
      Tensor<double> up = f, down = f;
      up[i] += 1e-6;
      down[i] -= 1e-6;
      const double fd =
          (loss(Loss::cross_entropy, up, *target).value - loss(Loss::cross_entropy, down, *target).value) / 2e-6;
      CHECK(l.grad[i] == Approx(fd).margin(1e-8));
    }
  }
  // bad targets name themselves and what was expected
  CHECK_THROWS_WITH(loss(Loss::mse, f, labels, "y.npy"), Contains("y.npy has shape (2,), expected (2, 3)"));
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, f, Tensor<double>({2}, std::vector<double>{0, 3}), "y.npy"),
                    Contains("y.npy: the label of sample 1 is 3") && Contains("[0, 3)"));
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, f, Tensor<double>({2}, std::vector<double>{0.5, 1}), "y.npy"),
                    Contains("label of sample 0 is 0.5, expected"));
  // a huge label is quoted short, not as std::to_string's 300 digits
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, f, Tensor<double>({2}, std::vector<double>{0, 1e300}), "y.npy"),
                    Equals("y.npy: the label of sample 1 is 1e+300, expected an integer in [0, 3)"));
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, f, Tensor<double>({3}), "y.npy"), Contains("expected (2,) class labels"));
  Tensor<double> nan_y = y;
  nan_y[4] = std::nan("");
  CHECK_THROWS_WITH(loss(Loss::mse, f, nan_y, "y.npy"), Contains("y.npy holds NaN at flat index 4"));
  Tensor<double> inf_probs = probs;
  inf_probs[1] = INFINITY;
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, f, inf_probs, "y.npy"), Contains("y.npy holds Inf at flat index 1"));
  // outputs with no classes: refused before anything reads a class
  const Tensor<double> none({2, 0});
  CHECK_THROWS_WITH(loss(Loss::cross_entropy, none, Tensor<double>({2})), Contains("(2, 0) have no values"));
  CHECK_THROWS_WITH(loss(Loss::mse, none, none), Contains("(2, 0) have no values"));
}

TEST_CASE("bad learning rates and alphas are quoted as the numbers they are", "[dynamics][train][predict][errors]") {
  // std::to_string wrote -1e-12 as "-0.000000" and -1e300 as 301 digits
  Sequential<double> net(ModelSpec{.input = {3}, .layers = {Linear{.out_features = 2}}}, 1);
  CHECK_THROWS_WITH(Trainer<double>(net, {.optimizer = {.lr = -1e-12}}),
                    Equals("training: the learning rate must be positive and finite, got -1e-12"));
  CHECK_THROWS_WITH(Trainer<double>(net, {.optimizer = {.lr = -1e300}}),
                    Equals("training: the learning rate must be positive and finite, got -1e+300"));
  CHECK_THROWS_WITH(Trainer<double>(net, {.optimizer = {.lr = 0.1}, .transform = {.alpha = 0.0}}),
                    Equals("training: alpha must be finite and non-zero, got 0"));
  const Tensor<double> k({2, 2}, std::vector<double>{2, 1, 1, 2}), y({2, 1}, std::vector<double>{1, -1});
  CHECK_THROWS_WITH(predict_steps<double>({.k_train = k, .y = y}, Loss::mse, -2.5, {1}),
                    Contains("learning rate must be positive and finite, got -2.5"));
  CHECK_THROWS_WITH(predict_time<double>({.k_train = k, .y = y}, 0.1, {1.0}, -1e-12),
                    Equals("predictions: the ridge must be non-negative and finite, got -1e-12"));
  CHECK_THROWS_WITH(predict_time<double>({.k_train = k, .y = y}, 0.1, {-1e300}, 0.0),
                    Equals("predictions: a time must be non-negative, got -1e+300"));
}

TEST_CASE("training refuses inputs and targets without samples or with NaN, naming them", "[dynamics][train][errors]") {
  Sequential<double> net(ModelSpec{.input = {3}, .layers = {Linear{.out_features = 2}}}, 1);
  TrainOptions opt;
  opt.steps = 2;
  const auto x = test::randn<double>({4, 3}, 2), y = test::randn<double>({4, 2}, 3);
  const std::vector<double> before(net.named_parameters()[0].tensor->data(),
                                   net.named_parameters()[0].tensor->data() + 6);
  // no samples: a batch size of 0 samples would divide by zero
  CHECK_THROWS_WITH(train(net, TrainData<double>{Tensor<double>({0, 3}), Tensor<double>({0, 2})}, opt),
                    Contains("training: x has no samples"));
  CHECK_THROWS_WITH(train(net, TrainData<double>{Tensor<double>({4, 5}), y}, opt),
                    Contains("training: x has shape (4, 5), expected (N, 3)"));
  Tensor<double> bad = x;
  bad[7] = std::nan("");
  CHECK_THROWS_WITH(train(net, TrainData<double>{bad, y}, opt), Contains("training: x holds NaN at flat index 7"));
  Tensor<double> bad_last = x;  // the last value too: the finiteness pass runs to the end
  bad_last[11] = INFINITY;
  CHECK_THROWS_WITH(train(net, TrainData<double>{bad_last, y}, opt),
                    Contains("training: x holds Inf at flat index 11"));
  Tensor<double> bad_y = y;
  bad_y[5] = -INFINITY;
  CHECK_THROWS_WITH(train(net, TrainData<double>{x, bad_y}, opt),
                    Contains("training: the targets holds Inf at flat index 5"));
  CHECK_THROWS_WITH(train(net, TrainData<double>{.x = x, .y = y, .x_test = bad, .y_test = y}, opt),
                    Contains("training: x_test holds NaN"));
  CHECK_THROWS_WITH(train(net, TrainData<double>{.x = x, .y = y, .y_test = y}, opt),
                    Contains("test targets were given without test inputs"));
  Trainer<double> trainer(net, opt);
  CHECK_THROWS_WITH(trainer.step(bad, y), Contains("training: x holds NaN at flat index 7"));
  CHECK_THROWS_WITH(trainer.step(x, bad_y), Contains("targets holds Inf at flat index 5"));
  // none of it moved the parameters
  CHECK(std::equal(before.begin(), before.end(), net.named_parameters()[0].tensor->data()));
}

TEST_CASE("the logged losses over more samples than one chunk equal the loss of one forward pass",
          "[dynamics][train]") {
  // train() evaluates a log's losses 1024 samples at a time: 2500 training and 1100 test samples cross chunk
  // boundaries, with a last chunk that is not full. The reference is the whole batch's forward pass, taken
  // before training (step 0's log) and after it (the last log) from the network itself. On 2 threads the
  // chunks after the first run one a thread.
  const ModelSpec spec{.input = {3}, .layers = {Linear{.out_features = 7}, Tanh(), Linear{.out_features = 2}}};
  Sequential<double> net(spec, 4);
  const auto x = test::randn<double>({2500, 3}, 5), y = test::randn<double>({2500, 2}, 6);
  const auto xt = test::randn<double>({1100, 3}, 7), yt = test::randn<double>({1100, 2}, 8);
  const double before = loss(Loss::mse, net.forward(x), y).value;
  const double before_test = loss(Loss::mse, net.forward(xt), yt).value;
  TrainOptions opt{.optimizer = {.lr = 0.1}, .steps = 3, .log_every = 0, .threads = 2};
  std::vector<StepLog> logs;
  train(net, {.x = x, .y = y, .x_test = xt, .y_test = yt}, opt, [&](const StepLog& l) { logs.push_back(l); });
  REQUIRE(logs.size() == 2);
  // the same rows through the same kernels, only in smaller batches: equal up to the GEMM's blocking
  CHECK_THAT(logs[0].train_loss, Catch::Matchers::WithinRel(before, 1e-12));
  CHECK_THAT(*logs[0].test_loss, Catch::Matchers::WithinRel(before_test, 1e-12));
  CHECK_THAT(logs[1].train_loss, Catch::Matchers::WithinRel(loss(Loss::mse, net.forward(x), y).value, 1e-12));
  CHECK_THAT(*logs[1].test_loss, Catch::Matchers::WithinRel(loss(Loss::mse, net.forward(xt), yt).value, 1e-12));
  CHECK(logs[1].train_loss < logs[0].train_loss);  // it trained
}

TEST_CASE("a probe's log equals its metrics recomputed from the autograd path's Jacobians on 1 and 2 threads",
          "[dynamics][train]") {
  // On 2 threads a probe's spectrum runs on one thread while the losses (in chunks: 2500 training and 1100 test
  // samples) and the linearisation gap run on the other; on 1 they run one after the other. Every metric is
  // recomputed here from the trained network and θ₀: the kernel from xntk::jacobians (the autograd engine),
  // its eigenvalues by Eigen, f_lin = f(θ₀) + J(θ₀)(θ − θ₀) by plain sums.
  const ModelSpec spec{.input = {3}, .layers = {Linear{.out_features = 7}, Tanh(), Linear{.out_features = 2}}};
  const auto x = test::randn<double>({2500, 3}, 5), y = test::randn<double>({2500, 2}, 6);
  const auto xt = test::randn<double>({1100, 3}, 7), yt = test::randn<double>({1100, 2}, 8);
  const auto probe = test::randn<double>({9, 3}, 9);
  const Sequential<double> initial(spec, 4);
  const int64_t P = probe.dim(0), O = 2;
  // the trace-mode kernel Σ_o Σ_p J[i,o,p] J[j,o,p] of a network, as a matrix
  auto kernel = [&](const Sequential<double>& m) {
    Eigen::MatrixXd k = Eigen::MatrixXd::Zero(P, P);
    for (const auto& j : jacobians(m, probe)) {
      const int64_t p = j.dim(2);
      for (int64_t a = 0; a < P; ++a)
        for (int64_t b = 0; b < P; ++b)
          for (int64_t e = 0; e < O * p; ++e) k(a, b) += j[a * O * p + e] * j[b * O * p + e];
    }
    return k;
  };
  const Eigen::MatrixXd k0 = kernel(initial);
  for (const int threads : {1, 2}) {
    DYNAMIC_SECTION("threads " << threads) {
      Sequential<double> net(spec, 4);
      TrainOptions opt{.optimizer = {.lr = 0.1}, .steps = 4, .log_every = 0, .ntk_every = 4, .threads = threads};
      std::vector<StepLog> logs;
      train(net, {.x = x, .y = y, .x_test = xt, .y_test = yt, .probe = probe}, opt,
            [&](const StepLog& l) { logs.push_back(l); });
      REQUIRE(logs.size() == 2);
      REQUIRE(logs[1].probe);
      const ProbeMetrics& pm = *logs[1].probe;
      CHECK_THAT(logs[1].train_loss, Catch::Matchers::WithinRel(loss(Loss::mse, net.forward(x), y).value, 1e-12));
      CHECK_THAT(*logs[1].test_loss, Catch::Matchers::WithinRel(loss(Loss::mse, net.forward(xt), yt).value, 1e-12));
      const Eigen::MatrixXd k = kernel(net);
      const Eigen::VectorXd eig = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(k).eigenvalues();
      // the kernel's entries are sums of O·p = 2·37 products; its eigenvalues are well separated from 0
      // (condition ~1e2..1e4), so 1e-10 relative holds with room
      CHECK_THAT(pm.trace, Catch::Matchers::WithinRel(k.trace(), 1e-10));
      CHECK_THAT(pm.lambda_max, Catch::Matchers::WithinRel(eig(P - 1), 1e-10));
      CHECK_THAT(pm.lambda_min, Catch::Matchers::WithinRel(eig(0), 1e-10));
      CHECK_THAT(pm.kernel_change, Catch::Matchers::WithinRel((k - k0).norm() / k0.norm(), 1e-10));
      // the linearisation gap: f(θ_t) against f(θ₀) + J(θ₀)(θ_t − θ₀)
      const Tensor<double> f = net.forward(probe), f0 = initial.forward(probe);
      std::vector<double> lin(f0.data(), f0.data() + f0.size());
      const auto j0 = jacobians(initial, probe);
      const auto now = net.named_parameters(), then = initial.named_parameters();
      for (size_t t = 0; t < j0.size(); ++t) {
        const int64_t p = j0[t].dim(2);
        for (int64_t e = 0; e < P * O; ++e)
          for (int64_t q = 0; q < p; ++q) lin[e] += j0[t][e * p + q] * ((*now[t].tensor)[q] - (*then[t].tensor)[q]);
      }
      double gap = 0, change = 0;
      for (int64_t e = 0; e < P * O; ++e) {
        gap += (f[e] - lin[e]) * (f[e] - lin[e]);
        change += (lin[e] - f0[e]) * (lin[e] - f0[e]);
      }
      gap = std::sqrt(gap / static_cast<double>(P * O));
      change = std::sqrt(change / static_cast<double>(P * O));
      REQUIRE(gap > 0);
      // the gap (~5e-3 of outputs ~1 after 4 steps) is a difference of nearby values: rounding of the outputs
      // (~1e-16) is ~1e-13 of it, far inside 1e-10
      CHECK_THAT(pm.linearization_gap, Catch::Matchers::WithinRel(gap, 1e-10));
      CHECK_THAT(pm.linearization_gap_relative, Catch::Matchers::WithinRel(gap / change, 1e-10));
    }
  }
}

TEST_CASE("the optimisers' updates of tensors larger than one block follow PyTorch's formulas elementwise",
          "[dynamics][train]") {
  // The updates run in blocks of 16384 values on the threads: a 200 → 101 Linear's 20,200 weights span two
  // blocks, the second partial. Expected: PyTorch's formulas applied here in plain loops to the gradients of
  // xntk::gradient (the VJP) and the loss's derivative; the same operations per element, so equal to rounding.
  const ModelSpec spec{.input = {200}, .layers = {Linear{.out_features = 101}}};
  const auto x = test::randn<double>({8, 200}, 11), y = test::randn<double>({8, 101}, 12);
  for (const bool adam : {false, true}) {
    INFO((adam ? "adam (amsgrad)" : "sgd (momentum, nesterov, weight decay)"));
    Sequential<double> net(spec, 13), reference(spec, 13);
    Optimizer o{.kind = adam ? Optimizer::Kind::adam : Optimizer::Kind::sgd, .lr = 0.05, .weight_decay = 0.01};
    if (adam)
      o.amsgrad = true;
    else
      o.momentum = 0.9, o.nesterov = true;
    Trainer<double> trainer(net, {.optimizer = o});
    std::vector<std::vector<double>> buf(2), m(2), v(2), vmax(2);
    for (int step = 1; step <= 3; ++step) {
      trainer.step(x, y);
      const auto cot = loss(Loss::mse, reference.forward(x), y).grad;
      const auto grads = gradient(reference, x, cot);
      const auto params = reference.named_parameters();
      for (size_t i = 0; i < params.size(); ++i) {
        double* p = params[i].tensor->data();
        const int64_t n = params[i].tensor->size();
        std::vector<double> g(grads[i].tensor.data(), grads[i].tensor.data() + n);
        for (int64_t e = 0; e < n; ++e) g[e] += o.weight_decay * p[e];
        if (!adam) {
          if (step == 1)
            buf[i] = g;
          else
            for (int64_t e = 0; e < n; ++e) buf[i][e] = buf[i][e] * o.momentum + g[e];
          for (int64_t e = 0; e < n; ++e) p[e] -= o.lr * (g[e] + o.momentum * buf[i][e]);
          continue;
        }
        if (step == 1) m[i] = v[i] = vmax[i] = std::vector<double>(n, 0.0);
        const double bc1 = 1 - std::pow(o.beta1, step), bc2 = 1 - std::pow(o.beta2, step);
        for (int64_t e = 0; e < n; ++e) {
          m[i][e] = o.beta1 * m[i][e] + (1 - o.beta1) * g[e];
          v[i][e] = o.beta2 * v[i][e] + (1 - o.beta2) * g[e] * g[e];
          vmax[i][e] = std::max(vmax[i][e], v[i][e]);
          p[e] -= o.lr / bc1 * m[i][e] / (std::sqrt(vmax[i][e]) / std::sqrt(bc2) + o.eps);
        }
      }
    }
    const auto got = net.named_parameters(), want = reference.named_parameters();
    REQUIRE(got[0].tensor->size() == 20200);
    for (size_t i = 0; i < got.size(); ++i) {
      double err = 0, scale = 0;
      for (int64_t e = 0; e < got[i].tensor->size(); ++e) {
        err = std::max(err, std::abs((*got[i].tensor)[e] - (*want[i].tensor)[e]));
        scale = std::max(scale, std::abs((*want[i].tensor)[e]));
      }
      CHECK(err <= 1e-12 * scale);  // association of the same few operations only
    }
  }
}

TEST_CASE("a step that would make a parameter non-finite is undone, the optimiser's state included",
          "[dynamics][train][errors]") {
  const ModelSpec spec{.input = {3}, .layers = {Linear{.out_features = 2}}};
  Sequential<double> net(spec, 1), fresh(spec, 1);
  TrainOptions opt;
  opt.optimizer.lr = 1e300;  // finite, so a step of a normal gradient (~1) stays finite, one of ~1e20 does not
  opt.optimizer.momentum = 0.9;
  const auto x = test::randn<double>({4, 3}, 2), y = test::randn<double>({4, 2}, 3);
  Tensor<double> huge = x;
  for (int64_t i = 0; i < huge.size(); ++i) huge[i] *= 1e10;  // loss ~1e20, finite; its gradient too
  const auto weight = [](const Sequential<double>& m) {
    const auto& t = *m.named_parameters()[0].tensor;
    return std::vector<double>(t.data(), t.data() + t.size());
  };
  const std::vector<double> before = weight(net);
  Trainer<double> trainer(net, opt);
  CHECK_THROWS_WITH(trainer.step(huge, y),
                    Contains("training: 0.weight would not be finite after step 1") && Contains("the step undone"));
  CHECK(weight(net) == before);
  CHECK(trainer.steps() == 0);
  // the momentum buffer was restored too: the next step is a first step, as a fresh trainer's
  trainer.step(x, y);
  Trainer<double> other(fresh, opt);
  other.step(x, y);
  CHECK(weight(net) == weight(fresh));
  CHECK(weight(net) != before);
}

TEST_CASE("a step undone after earlier steps restores that step's parameters and momentum (the kept copies)",
          "[dynamics][train][errors]") {
  // The trainer keeps its gradient, its copy of θ and of the optimiser's state from step to step (no fresh pages
  // per step); a step undone after two good ones must restore the values of the second, not of an earlier step.
  // No bias, inputs ~1e-10 and lr 1e10: the good steps move the weights by O(1); then inputs ~1e150 give a loss
  // ~1e300 (finite) and a gradient ~1e300, which lr takes past the float64 range.
  const ModelSpec spec{.input = {3}, .layers = {Linear{.out_features = 2, .bias = false}}};
  Sequential<double> net(spec, 1), fresh(spec, 1);
  TrainOptions opt;
  opt.optimizer.lr = 1e10;
  opt.optimizer.momentum = 0.9;
  auto x = test::randn<double>({4, 3}, 2);
  for (int64_t i = 0; i < x.size(); ++i) x[i] *= 1e-10;
  const auto y = test::randn<double>({4, 2}, 3);
  Tensor<double> huge = test::randn<double>({4, 3}, 4);
  for (int64_t i = 0; i < huge.size(); ++i) huge[i] *= 1e150;
  const auto weight = [](const Sequential<double>& m) {
    const auto& t = *m.named_parameters()[0].tensor;
    return std::vector<double>(t.data(), t.data() + t.size());
  };
  Trainer<double> trainer(net, opt), other(fresh, opt);
  for (int s = 0; s < 2; ++s) {
    trainer.step(x, y);
    other.step(x, y);
  }
  const std::vector<double> second = weight(net);
  REQUIRE(second == weight(fresh));
  CHECK_THROWS_WITH(trainer.step(huge, y), Contains("would not be finite after step 3") && Contains("undone"));
  CHECK(weight(net) == second);
  CHECK(trainer.steps() == 2);
  // the momentum buffer is the second step's: the next step is the third step of a trainer that never failed
  trainer.step(x, y);
  other.step(x, y);
  CHECK(weight(net) == weight(fresh));
  CHECK(weight(net) != second);
}

TEST_CASE("a loss's parameter gradient through the layers equals the autograd path's and finite differences",
          "[dynamics][loss]") {
  const Sequential<double> net(
      {.input = {4},
       .layers = {Linear{.out_features = 6}, Tanh(), Linear{.out_features = 6}, ReLU(), Linear{.out_features = 3}}},
      2);
  const auto x = test::randn<double>({5, 4}, 3);
  const Tensor<double> labels({5}, std::vector<double>{0, 2, 1, 1, 0});
  const auto y = test::randn<double>({5, 3}, 4);
  for (const Loss kind : {Loss::mse, Loss::cross_entropy}) {
    INFO(name(kind));
    const Tensor<double>& target = kind == Loss::mse ? y : labels;
    const auto l = loss(kind, net.forward(x), target);
    const auto g = gradient(net, x, l.grad);
    const auto J = jacobians(net, x);  // autograd: (N, O, P) per parameter
    const auto params = net.named_parameters();
    for (size_t q = 0; q < params.size(); ++q) {
      INFO(params[q].name);
      Tensor<double> want(params[q].tensor->shape());
      for (int64_t n = 0; n < 5; ++n)
        for (int64_t o = 0; o < 3; ++o)
          for (int64_t p = 0; p < want.size(); ++p) want[p] += l.grad[n * 3 + o] * J[q][(n * 3 + o) * want.size() + p];
      CHECK(test::rel_error(g[q].tensor, want) <= 1e-12);
      // central differences of the loss along a random direction
      Tensor<double>& theta = net.parameter(params[q].name);
      const Tensor<double> saved = theta;
      const auto u = test::randn<double>(theta.shape(), 10 + q);
      double analytic = 0;
      for (int64_t i = 0; i < theta.size(); ++i) analytic += g[q].tensor[i] * u[i];
      for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] + 1e-5 * u[i];
      const double up = loss(kind, net.forward(x), target).value;
      for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] - 1e-5 * u[i];
      const double down = loss(kind, net.forward(x), target).value;
      theta = saved;
      CHECK(analytic == Approx((up - down) / 2e-5).epsilon(1e-6).margin(1e-9));
    }
  }
}

namespace {

/// The options of a fixture's meta.json.
TrainOptions options_of(const nlohmann::json& meta) {
  TrainOptions o;
  o.loss = meta.at("loss") == "mse" ? Loss::mse : Loss::cross_entropy;
  const auto& op = meta.at("optimizer");
  o.optimizer.kind = op.at("kind") == "sgd" ? Optimizer::Kind::sgd : Optimizer::Kind::adam;
  o.optimizer.lr = op.at("lr");
  o.optimizer.momentum = op.value("momentum", 0.0);
  o.optimizer.dampening = op.value("dampening", 0.0);
  o.optimizer.nesterov = op.value("nesterov", false);
  o.optimizer.weight_decay = op.value("weight_decay", 0.0);
  o.optimizer.beta1 = op.value("beta1", 0.9);
  o.optimizer.beta2 = op.value("beta2", 0.999);
  o.optimizer.eps = op.value("eps", 1e-8);
  o.optimizer.amsgrad = op.value("amsgrad", false);
  o.steps = meta.at("steps");
  o.batch_size = meta.at("batch_size");
  o.transform.alpha = meta.at("alpha");
  o.transform.center = meta.at("center");
  o.linearized = meta.at("linearized");
  o.log_every = 0;
  return o;
}

}  // namespace

TEST_CASE("training follows PyTorch's trajectory to 1e-10 over 100 steps", "[dynamics][train]") {
  const fs::path root = fs::path(XNTK_SOURCE_DIR) / "tests" / "dynamics" / "fixtures";
  int fixtures = 0;
  for (const auto& entry : fs::directory_iterator(root)) {
    const fs::path d = entry.path();
    INFO("fixture " << d.filename().string());
    std::ifstream mf(d / "meta.json");
    const auto meta = nlohmann::json::parse(mf);
    const TrainOptions opt = options_of(meta);
    Sequential<double> net(load_model_spec((d / "model.json").string()), 0);
    load_weights(net, (d / "weights.safetensors").string());
    const auto x = read_npy<double>((d / "x.npy").string()), y = read_npy<double>((d / "y.npy").string());
    const auto want_losses = read_npy<double>((d / "losses.npy").string());
    const auto want_final = read_safetensors<double>((d / "final.safetensors").string());
    // step by step, batches in order as the fixture's
    {
      Sequential<double> model(net.spec(), 0);
      for (const auto& p : net.named_parameters()) model.parameter(p.name) = *p.tensor;
      Trainer<double> trainer(model, opt);
      const int64_t n = x.dim(0), batch = opt.batch_size ? opt.batch_size : n, per_epoch = (n + batch - 1) / batch;
      Tensor<double> losses({opt.steps});
      for (int64_t s = 0; s < opt.steps; ++s) {
        const int64_t pos = s % per_epoch, b0 = pos * batch, b1 = std::min(n, b0 + batch);
        const int64_t row = x.size() / n, yrow = y.size() / n;
        Shape xs = x.shape(), ys = y.shape();
        xs[0] = ys[0] = b1 - b0;
        const Tensor<double> xb(xs, std::vector<double>(x.data() + b0 * row, x.data() + b1 * row));
        const Tensor<double> yb(ys, std::vector<double>(y.data() + b0 * yrow, y.data() + b1 * yrow));
        losses[s] = trainer.step(xb, yb);
      }
      CHECK(test::rel_error(losses, want_losses) <= 1e-10);
      for (const auto& w : want_final) {
        INFO(w.name);
        CHECK(test::rel_error(model.parameter(w.name), w.tensor) <= 1e-10);
      }
    }
    // train() over the same data takes the same steps
    train(net, TrainData<double>{x, y}, opt);
    for (const auto& w : want_final) CHECK(test::rel_error(net.parameter(w.name), w.tensor) <= 1e-10);
    ++fixtures;
  }
  CHECK(fixtures >= 10);
}
