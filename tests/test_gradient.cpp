// xntk::gradient, the parameters' vector-Jacobian product through the layers' own formulas: against the
// autograd path's Jacobians contracted with the cotangent, and against finite differences of the forward,
// for every layer kind and block, both parameterisations and both dtypes.

#include <catch2/catch.hpp>

#include "backend/parallel.hpp"
#include "batch.hpp"
#include "helpers.hpp"
#include "nn/model.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

std::vector<ModelSpec> models() {
  using P = Parameterization;
  const Linear l4{.out_features = 4}, l3{.out_features = 3};
  return {
      {.input = {5},
       .layers = {Linear{.out_features = 6}, Tanh(), Linear{.out_features = 6, .bias = false}, GELU(), ReLU(), l3}},
      {.input = {5},
       .parameterization = P::ntk,
       .layers = {Linear{.out_features = 6, .w_std = 1.4, .b_std = 0.2}, Sigmoid(), Linear{.out_features = 4}, SiLU(),
                  Softplus(2.0), l3}},
      {.input = {2, 8, 11},
       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, ReLU(), MaxPool2d{.kernel_size = 2},
                  Conv2d{.out_channels = 4, .kernel_size = {2, 3}, .stride = {1, 2}, .dilation = {2, 1}}, ELU(0.5),
                  AvgPool2d{.kernel_size = {1, 2}}, Flatten{}, l3}},
      {.input = {3, 6, 6},
       .parameterization = P::ntk,
       .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .bias = false}, LeakyReLU(0.1), Erf(),
                  Conv2d{.out_channels = 2, .kernel_size = 1, .b_std = 0.5}, GlobalAvgPool{}}},
      {.input = {4},
       .layers = {l4, ReLU(), Residual{.body = {l4, Tanh(), l4}, .shortcut = {}},
                  Residual{.body = {l3}, .shortcut = {l3}}, Identity()}},
      {.input = {2, 5, 5},
       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, ReLU(),
                  Residual{.body = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, ReLU(),
                                    Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}},
                           .shortcut = {}},
                  SequentialBlock{{Flatten{}, l3}}}},
      {.input = {2, 4, 4},
       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1, .bias = false}, BatchNorm2d{}, ReLU(),
                  Residual{.body = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, BatchNorm2d{}},
                           .shortcut = {BatchNorm2d{.affine = false}}},
                  Flatten{}, Linear{.out_features = 5}, BatchNorm1d{}, Tanh(), l3}},
  };
}

template <class T>
Tensor<T> batch_of(const ModelSpec& spec, int64_t n, uint64_t seed) {
  Shape s{n};
  s.insert(s.end(), spec.input.begin(), spec.input.end());
  return test::randn<T>(s, seed);
}

}  // namespace

TEST_CASE("gradient equals the autograd path's Jacobians contracted with the cotangent", "[gradient]") {
  for (const auto& spec : models()) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 7);
    const Sequential<float> netf(spec, 7);
    test::randomize_norms(net, 1);  // normalisation layers away from γ = 1, β = 0 (the same values in both)
    test::randomize_norms(netf, 1);
    const auto x = batch_of<double>(spec, 3, 1);
    Shape cs{3};
    cs.insert(cs.end(), net.output_shape().begin(), net.output_shape().end());
    const auto c = test::randn<double>(cs, 2);
    const auto g = gradient(net, x, c);
    const auto gf = gradient(netf, x.cast<float>(), c.cast<float>());
    const auto J = jacobians(net, x);  // per parameter (N, O, P), state_dict order
    const auto params = net.named_parameters();
    REQUIRE(g.size() == params.size());
    REQUIRE(gf.size() == params.size());
    const int64_t O = net.outputs();
    for (size_t q = 0; q < params.size(); ++q) {
      INFO(params[q].name);
      CHECK(g[q].name == params[q].name);
      CHECK(g[q].tensor.shape() == params[q].tensor->shape());
      Tensor<double> want(params[q].tensor->shape());
      for (int64_t n = 0; n < 3; ++n)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t p = 0; p < want.size(); ++p) want[p] += c[n * O + o] * J[q][(n * O + o) * want.size() + p];
      // float64: the same sums in another order; float32: sums of at most ~300 terms rounded to float
      CHECK(test::rel_error(g[q].tensor, want) <= 1e-12);
      CHECK(test::rel_error(gf[q].tensor, want) <= 1e-5);
    }
  }
}

TEST_CASE("gradient matches finite differences of the forward", "[gradient]") {
  const double h = 1e-5;
  for (const auto& spec : models()) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 3);
    test::randomize_norms(net, 1);
    const auto x = batch_of<double>(spec, 2, 4);
    Shape cs{2};
    cs.insert(cs.end(), net.output_shape().begin(), net.output_shape().end());
    const auto c = test::randn<double>(cs, 5);
    const auto g = gradient(net, x, c);
    auto pairing = [&] {
      const auto y = net.forward(x);
      double s = 0;
      for (int64_t i = 0; i < y.size(); ++i) s += c[i] * y[i];
      return s;
    };
    for (size_t q = 0; q < g.size(); ++q) {
      INFO(g[q].name);
      Tensor<double>& theta = net.parameter(g[q].name);
      const Tensor<double> saved = theta;
      const auto u = test::randn<double>(theta.shape(), 6 + q);
      double analytic = 0;
      for (int64_t i = 0; i < theta.size(); ++i) analytic += g[q].tensor[i] * u[i];
      for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] + h * u[i];
      const double up = pairing();
      for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] - h * u[i];
      const double down = pairing();
      theta = saved;
      // central differences: truncation ~h², rounding ~ε/h, far below the tolerance at these smooth points
      CAPTURE(analytic, (up - down) / (2 * h));
      CHECK(std::abs(analytic - (up - down) / (2 * h)) <= 1e-6 * std::max(1.0, std::abs(analytic)));
    }
  }
}

TEST_CASE("gradient refuses inputs and cotangents of the wrong shape", "[gradient][errors]") {
  const Sequential<double> net({.input = {4}, .layers = {Linear{.out_features = 2}}}, 0);
  const auto x = test::randn<double>({3, 4}, 1);
  CHECK_THROWS_WITH(gradient(net, x, test::randn<double>({3, 3}, 2)),
                    Contains("cotangent has shape (3, 3)") && Contains("expected (3, 2)"));
  CHECK_THROWS_WITH(gradient(net, test::randn<double>({3, 5}, 2), test::randn<double>({3, 2}, 2)),
                    Contains("gradient: x has shape (3, 5)"));
  // a model without parameters has no gradient
  const Sequential<double> none({.input = {4}, .layers = {ReLU()}}, 0);
  CHECK(gradient(none, x, x).empty());
}

TEST_CASE("jvp matches finite differences and is the transpose of gradient", "[gradient][jvp]") {
  const double h = 1e-5;
  for (const auto& spec : models()) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 8);
    test::randomize_norms(net, 1);
    const auto x = batch_of<double>(spec, 2, 9);
    std::vector<NamedTensor<double>> v;
    uint64_t seed = 10;
    for (const auto& p : net.named_parameters()) v.push_back({p.name, test::randn<double>(p.tensor->shape(), ++seed)});
    const auto dy = jvp(net, x, v);
    // central differences of the forward along every tangent at once
    auto moved = [&](double s) {
      std::vector<Tensor<double>> saved;
      for (const auto& t : v) {
        saved.push_back(net.parameter(t.name));
        for (int64_t i = 0; i < t.tensor.size(); ++i) net.parameter(t.name)[i] += s * t.tensor[i];
      }
      const auto y = net.forward(x);
      for (size_t q = 0; q < v.size(); ++q) net.parameter(v[q].name) = saved[q];
      return y;
    };
    const auto up = moved(h), down = moved(-h);
    Tensor<double> fd(dy.shape());
    for (int64_t i = 0; i < fd.size(); ++i) fd[i] = (up[i] - down[i]) / (2 * h);
    CHECK(test::rel_error(dy, fd) <= 1e-7);
    // ⟨jvp(v), c⟩ = ⟨v, gradient(c)⟩: forward and reverse mode are each other's transpose (to rounding)
    const auto c = test::randn<double>(dy.shape(), 30);
    const auto g = gradient(net, x, c);
    double lhs = 0, rhs = 0, scale = 0;
    for (int64_t i = 0; i < dy.size(); ++i) lhs += dy[i] * c[i];
    for (size_t q = 0; q < g.size(); ++q)
      for (int64_t i = 0; i < g[q].tensor.size(); ++i) {
        rhs += g[q].tensor[i] * v[q].tensor[i];
        scale += std::abs(g[q].tensor[i] * v[q].tensor[i]);
      }
    CHECK(std::abs(lhs - rhs) <= 1e-12 * scale);
  }
  // a tangent for some parameters only: the others stay; bad names and shapes are refused
  const Sequential<double> net({.input = {3}, .layers = {Linear{.out_features = 2}, Tanh(), Linear{.out_features = 2}}},
                               1);
  const auto x = test::randn<double>({2, 3}, 2);
  CHECK(jvp(net, x, {}).shape() == Shape{2, 2});
  CHECK(jvp<double>(net, x, {{"2.bias", test::randn<double>({2}, 3)}}).size() == 4);
  CHECK_THROWS_WITH(jvp<double>(net, x, {{"1.weight", test::randn<double>({2}, 3)}}),
                    Contains("no parameter named \"1.weight\""));
  CHECK_THROWS_WITH(jvp<double>(net, x, {{"0.weight", test::randn<double>({3, 2}, 3)}}),
                    Contains("tangent of \"0.weight\" has shape (3, 2), expected (2, 3)"));
}

TEST_CASE("gradient cut into slices on several threads equals the autograd path's", "[gradient][threads]") {
  // 37 samples: on 2 and 3 threads slices of 18 + 19 and 12 + 12 + 13 samples, whose cotangents are summed
  const double small = 1e4, large = 8e6;  // parameter bytes
  REQUIRE(detail::gradient_shards(37, 1, small) == 1);
  REQUIRE(detail::gradient_shards(37, 2, small) == 2);
  REQUIRE(detail::gradient_shards(37, 3, small) == 3);
  REQUIRE(detail::gradient_shards(37, 8, small) == 4);  // at least kMinShardSamples a slice
  REQUIRE(detail::gradient_shards(7, 2, small) == 1);
  REQUIRE(detail::gradient_shards(37, 2, large) == 1);  // a large model's layers parallelise inside
  // every model of the table is small enough to be cut
  const int64_t n = 37;
  for (const auto& spec : models()) {
    INFO(test::describe(spec));
    const Sequential<double> net(spec, 11);
    test::randomize_norms(net, 2);
    const auto x = batch_of<double>(spec, n, 3);
    Shape cs{n};
    cs.insert(cs.end(), net.output_shape().begin(), net.output_shape().end());
    const auto c = test::randn<double>(cs, 4);
    const auto J = jacobians(net, x);
    const int64_t O = net.outputs();
    for (int threads : {1, 2, 3}) {
      INFO(threads << " threads");
      const detail::ThreadScope scope(threads);
      REQUIRE(backend::loop_threads() == threads);
      const auto g = gradient(net, x, c);
      for (size_t q = 0; q < g.size(); ++q) {
        INFO(g[q].name);
        Tensor<double> want(g[q].tensor.shape());
        for (int64_t i = 0; i < n; ++i)
          for (int64_t o = 0; o < O; ++o)
            for (int64_t p = 0; p < want.size(); ++p) want[p] += c[i * O + o] * J[q][(i * O + o) * want.size() + p];
        // float64: the same sums in another order
        CHECK(test::rel_error(g[q].tensor, want) <= 1e-12);
      }
    }
  }
}
