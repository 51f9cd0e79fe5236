// Properties every kernel must have, independent of how it is computed.
#include <Eigen/Eigenvalues>
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "ntk/plan.hpp"

using namespace xntk;

namespace {

ModelSpec mlp(Parameterization p, Activation act, bool out_act = false, int64_t outputs = 3) {
  ModelSpec s{.input = {6}, .parameterization = p, .layers = {}};
  s.layers = {Linear{.out_features = 16}, act, Linear{.out_features = 9, .bias = false}, act,
              Linear{.out_features = outputs}};
  if (out_act) s.layers.push_back(act);
  return s;
}

}  // namespace

TEST_CASE("Θ(X, X) is exactly symmetric and positive semi-definite", "[properties]") {
  const bool out_act = GENERATE(false, true);
  const int64_t tile = GENERATE(0, 2, 3);
  INFO("output activation " << out_act << ", tile " << tile);
  const Sequential<double> net(mlp(Parameterization::ntk, Tanh(), out_act), 1);
  const auto x = test::randn<double>({7, 6}, 2);
  const auto k = ntk(net, x, {.mode = Mode::full, .tile = tile}).total;
  const int64_t N = 7, O = 3;
  Eigen::MatrixXd F(N * O, N * O);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < N; ++m)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t p = 0; p < O; ++p) {
          REQUIRE(k(n, m, o, p) == k(m, n, p, o));  // bitwise
          F(n * O + o, m * O + p) = k(n, m, o, p);
        }
  const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(F).eigenvalues();
  CHECK(ev.minCoeff() >= -1e-12 * ev.maxCoeff());
  CHECK(ev.maxCoeff() > 0);
  for (Mode mode : {Mode::trace, Mode::diagonal}) {
    const auto t = ntk(net, x, {.mode = mode, .tile = tile}).total;
    const int64_t per = mode == Mode::trace ? 1 : O;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < N; ++m)
        for (int64_t o = 0; o < per; ++o) REQUIRE(t[(n * N + m) * per + o] == t[(m * N + n) * per + o]);
  }
}

TEST_CASE("components sum to the total, and trace and diagonal equal the full kernel's", "[properties]") {
  const auto param = GENERATE(Parameterization::standard, Parameterization::ntk);
  const bool out_act = GENERATE(false, true);
  const Sequential<double> net(mlp(param, GELU(), out_act), 3);
  const auto x1 = test::randn<double>({5, 6}, 4), x2 = test::randn<double>({4, 6}, 5);
  const auto full = ntk(net, x1, x2, {.mode = Mode::full, .components = true});
  REQUIRE(full.names == std::vector<std::string>{"4.weight", "4.bias", "2.weight", "0.weight", "0.bias"});
  Tensor<double> sum(full.total.shape());
  for (const auto& c : full.components)
    for (int64_t i = 0; i < sum.size(); ++i) sum[i] += c[i];
  CHECK(test::rel_error(sum, full.total) <= 1e-14);

  const auto trace = ntk(net, x1, x2, {.mode = Mode::trace}).total;
  const auto diag = ntk(net, x1, x2, {.mode = Mode::diagonal}).total;
  Tensor<double> t({5, 4}), d({5, 4, 3});
  for (int64_t n = 0; n < 5; ++n)
    for (int64_t m = 0; m < 4; ++m)
      for (int64_t o = 0; o < 3; ++o) {
        t(n, m) += full.total(n, m, o, o);
        d(n, m, o) = full.total(n, m, o, o);
      }
  CHECK(test::rel_error(trace, t) <= 1e-13);
  CHECK(test::rel_error(diag, d) <= 1e-13);
}

TEST_CASE("results do not depend on thread count or tile size", "[properties]") {
  // with 8 outputs the full-mode delta Grams of the ReLU layers go through masked_gram where a tile pair's
  // deltas are sparse enough, and through the SYRK / GEMM where not: tiles mix the two
  const int64_t outputs = GENERATE(3, 8);
  INFO(outputs << " outputs");
  const Sequential<double> net(mlp(Parameterization::standard, ReLU(), false, outputs), 8);
  const auto x1 = test::randn<double>({9, 6}, 6), x2 = test::randn<double>({5, 6}, 7);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    const auto ref = ntk(net, x1, x2, {.mode = mode, .threads = 1});
    const auto sym = ntk(net, x1, {.mode = mode, .threads = 1});
    for (int threads : {2, 3}) {
      CHECK(test::rel_error(ntk(net, x1, x2, {.mode = mode, .threads = threads}).total, ref.total) <= 1e-13);
      CHECK(test::rel_error(ntk(net, x1, {.mode = mode, .threads = threads}).total, sym.total) <= 1e-13);
    }
    for (int64_t tile : {1, 2, 4, 100}) {
      INFO("tile " << tile);
      CHECK(test::rel_error(ntk(net, x1, x2, {.mode = mode, .tile = tile}).total, ref.total) <= 1e-13);
      CHECK(test::rel_error(ntk(net, x1, {.mode = mode, .tile = tile}).total, sym.total) <= 1e-13);
    }
  }
}

TEST_CASE("one linear layer has the analytic kernel of its parameterisation", "[properties]") {
  // standard: Θ = (⟨x, x'⟩ + 1) I;  ntk: Θ = (σ_w² ⟨x, x'⟩ / fan_in + σ_b²) I, whatever the weights
  const auto param = GENERATE(Parameterization::standard, Parameterization::ntk);
  const double ws = 1.7, bs = 0.3;
  const Sequential<double> net(
      {.input = {5}, .parameterization = param, .layers = {Linear{.out_features = 2, .w_std = ws, .b_std = bs}}}, 9);
  const auto x1 = test::randn<double>({3, 5}, 1), x2 = test::randn<double>({2, 5}, 2);
  const auto k = ntk(net, x1, x2).total;
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t m = 0; m < 2; ++m) {
      double dot = 0;
      for (int64_t i = 0; i < 5; ++i) dot += x1(n, i) * x2(m, i);
      const double expect = param == Parameterization::standard ? dot + 1 : ws * ws * dot / 5 + bs * bs;
      for (int64_t o = 0; o < 2; ++o)
        for (int64_t p = 0; p < 2; ++p)
          CHECK(k(n, m, o, p) == Approx(o == p ? expect : 0.0).epsilon(1e-13).margin(1e-15));
    }
}

TEST_CASE("initialisation is seeded and follows the parameterisation", "[properties]") {
  const ModelSpec spec{.input = {400}, .layers = {Linear{.out_features = 300}}};
  const Sequential<double> a(spec, 5), b(spec, 5), c(spec, 6);
  CHECK(test::rel_error(a.parameter("0.weight"), b.parameter("0.weight")) == 0);
  CHECK(test::rel_error(a.parameter("0.weight"), c.parameter("0.weight")) > 0);
  // standard: U(−1/√400, 1/√400): bound 0.05, variance 0.05²/3
  const auto& w = a.parameter("0.weight");
  double mx = 0, var = 0;
  for (int64_t i = 0; i < w.size(); ++i) {
    mx = std::max(mx, std::abs(w[i]));
    var += w[i] * w[i] / static_cast<double>(w.size());
  }
  CHECK(mx <= 0.05);
  CHECK(var == Approx(0.05 * 0.05 / 3).epsilon(0.02));
  // ntk: N(0, 1)
  const Sequential<double> n({.input = {400}, .parameterization = Parameterization::ntk, .layers = spec.layers}, 5);
  const auto& v = n.parameter("0.weight");
  double mean = 0, var2 = 0;
  for (int64_t i = 0; i < v.size(); ++i) {
    mean += v[i] / static_cast<double>(v.size());
    var2 += v[i] * v[i] / static_cast<double>(v.size());
  }
  CHECK(std::abs(mean) < 0.01);
  CHECK(var2 == Approx(1.0).epsilon(0.02));
  CHECK(n.multipliers(0).first == Approx(1.0 / 20.0));
}

TEST_CASE("a memory budget makes the driver tile, with the same result", "[properties][memory]") {
  const Sequential<double> net(mlp(Parameterization::standard, SiLU()), 10);
  const auto x = test::randn<double>({40, 6}, 11), x2 = test::randn<double>({30, 6}, 12);
  for (Mode mode : {Mode::full, Mode::trace}) {
    const auto ref = ntk(net, x, {.mode = mode});
    const auto ref2 = ntk(net, x, x2, {.mode = mode});
    CHECK(ref.tile == 40);
    // a budget far below one tile of 40 samples: the driver must cut the batch
    const auto small = ntk(net, x, {.mode = mode, .memory_budget = 60000});
    const auto small2 = ntk(net, x, x2, {.mode = mode, .memory_budget = 60000});
    CHECK(small.tile < 40);
    CHECK(small.tile >= 1);
    CHECK(test::rel_error(small.total, ref.total) <= 1e-13);
    CHECK(test::rel_error(small2.total, ref2.total) <= 1e-13);
  }
  // a budget too small for even one sample is refused with a message, not ignored
  CHECK_THROWS_WITH(ntk(net, x, {.memory_budget = 16}), Catch::Matchers::Contains("memory budget"));
}

TEST_CASE("the tile plan takes the fewest tiles that fit the budget, as even as possible", "[properties][memory]") {
  const Sequential<float> net(
      ModelSpec{.input = {300}, .layers = {Linear{.out_features = 200}, ReLU(), Linear{.out_features = 10}}}, 0);
  const int64_t n = 5000, m = 3001;
  for (Mode mode : {Mode::trace, Mode::full})
    for (const bool components : {false, true})
      for (const double budget : {3e6, 2e7, 1.1e8}) {
        CAPTURE(name(mode), components, budget);
        const KernelOptions opt{.mode = mode, .components = components, .memory_budget = int64_t(budget)};
        const auto layout = engine::layout_of(net, n, m, false, opt);
        const engine::Plan p = engine::make_plan(net, layout, opt, 0.0);
        auto fits = [&](int64_t t) {
          return engine::tile_bytes(net, std::min(t, n), std::min(t, m), mode, components) <= budget;
        };
        const int64_t t = p.tile, tiles = (n + t - 1) / t;
        CHECK(fits(t));
        CHECK(t < n);                                                // these budgets are below the whole batch
        if (tiles > 1) CHECK(!fits((n + tiles - 2) / (tiles - 1)));  // one tile fewer does not fit
        CHECK(t == (n + tiles - 1) / tiles);                         // even: the tiles differ by at most one sample
        CHECK(static_cast<int64_t>(p.pairs.size()) == tiles * ((m + t - 1) / t));
      }
}
