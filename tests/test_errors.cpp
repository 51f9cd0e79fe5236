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
