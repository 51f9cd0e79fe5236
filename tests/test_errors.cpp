// Bad arguments raise xntk::Error naming the layer (or argument), what was expected and what was given.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

TEST_CASE("invalid layers and shapes name the layer", "[errors]") {
  CHECK_THROWS_WITH(
      Sequential<double>(
          {.input = {4}, .layers = {Linear{.out_features = 3}, ReLU(), Linear{.out_features = 2, .in_features = 5}}}),
      Contains("layer 2 (linear)") && Contains("in_features is 5") && Contains("gives 3"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {4}, .layers = {Linear{.out_features = 0}}}),
                    Contains("layer 0 (linear)") && Contains("out_features must be positive"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {3, 4, 4}, .layers = {Linear{.out_features = 2}}}),
                    Contains("layer 0 (linear)") && Contains("1-D input") && Contains("(3, 4, 4)"));
  CHECK_THROWS_WITH(Sequential<float>({.input = {4}, .layers = {Linear{.out_features = 2}, GELU("fast")}}),
                    Contains("layer 1 (gelu)") && Contains("\"fast\""));
  CHECK_THROWS_WITH(Sequential<double>({.input = {}, .layers = {ReLU()}}), Contains("input shape"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {4}, .layers = {Linear{.out_features = 2, .w_std = -1}}}),
                    Contains("layer 0 (linear)") && Contains("w_std"));
}

TEST_CASE("the autograd path is planned before it allocates: its Jacobians must fit the memory budget",
          "[errors][autograd]") {
  // P = 5·64 + 64 + 64·3 + 3 = 579 parameters, O = 3, 10 samples: J is 10·3·579 doubles (138,960 bytes); the
  // contraction 30 × 30 (7,200), the result and one component 10·10·9 doubles each (14,400): 160,560 bytes
  const Sequential<double> net(
      {.input = {5}, .layers = {Linear{.out_features = 64}, Tanh(), Linear{.out_features = 3}}});
  const auto x = test::randn<double>({10, 5}, 1);
  CHECK_THROWS_WITH(autograd_ntk(net, x, {.memory_budget = 160000}),
                    Contains("kernel (autograd): the per-sample Jacobians and the result need 0.000161 GB") &&
                        Contains("more than the 0.00016 GB memory budget") && Contains("explicit method"));
  // with X2 (5 samples): its Jacobians count too, 5·3·579 doubles, and the 30 × 15 contraction and 10·5·9
  // results are smaller: 138,960 + 69,480 + 3,600 + 7,200 = 219,240 bytes
  CHECK_THROWS_WITH(autograd_ntk(net, x, test::randn<double>({5, 5}, 2), {.memory_budget = 200000}),
                    Contains("need 0.000219 GB"));
  const auto k = autograd_ntk(net, x, {.memory_budget = 161000});
  CHECK(test::rel_error(k.total, ntk(net, x).total) <= 1e-12);
}

TEST_CASE("batches that do not fit the model are refused", "[errors]") {
  const Sequential<double> net({.input = {4}, .layers = {Linear{.out_features = 2}}});
  const Tensor<double> good({3, 4}), bad({3, 5}), flat({4});
  CHECK_THROWS_WITH(ntk(net, good, bad), Contains("x2") && Contains("(3, 5)") && Contains("(N, 4)"));
  CHECK_THROWS_WITH(ntk(net, bad), Contains("x1") && Contains("(3, 5)"));
  CHECK_THROWS_WITH(autograd_ntk(net, flat), Contains("(4,)"));
  CHECK_THROWS_WITH(autograd_ntk(net, good, bad), Contains("x2") && Contains("(3, 5)"));
  CHECK_THROWS_WITH(net.forward(bad), Contains("(3, 5)"));
  CHECK_THROWS_WITH(ntk(net, good, {.tile = -1}), Contains("tile"));
  CHECK_THROWS_AS(net.parameter("1.weight"), Error);
}
