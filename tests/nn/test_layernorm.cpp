// LayerNorm: backward, gradient and jvp against finite differences of the forward, the forward against PyTorch's
// formula written out, explicit = autograd on models that contain it, its parameters, and the specs refused.
#include <catch2/catch.hpp>

#include "layer_check.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

/// γ near 1 and β near 0 on the model's only layer (module "0.").
void randomized(Sequential<double>& net) { test::randomize_norms(net, 9, {"0."}); }

}  // namespace

TEST_CASE("LayerNorm: backward, gradient and jvp match finite differences", "[nn][layernorm]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  test::check_layer(LayerNorm{.normalized_shape = {6}}, {6}, p, 1, randomized);
  test::check_layer(LayerNorm{.normalized_shape = {5}, .eps = 0.1}, {3, 4, 5}, p, 2, randomized);
  test::check_layer(LayerNorm{.normalized_shape = {4, 5}}, {3, 4, 5}, p, 3, randomized);
  test::check_layer(LayerNorm{.normalized_shape = {3, 4, 5}, .eps = 1e-3}, {3, 4, 5}, p, 4, randomized);
  test::check_layer(LayerNorm{.normalized_shape = {7}, .elementwise_affine = false}, {2, 7}, p, 5, randomized);
  test::check_layer(LayerNorm{.normalized_shape = {2, 3}, .bias = false}, {2, 3}, p, 6, randomized);
}

TEST_CASE("LayerNorm: the forward is PyTorch's formula", "[nn][layernorm]") {
  // over the last two of (2, 2, 3): each sample's two groups of 6 values, biased variance, γ and β of shape (2, 3)
  Sequential<double> net({.input = {2, 2, 3}, .layers = {LayerNorm{.normalized_shape = {2, 3}, .eps = 0.5}}}, 0);
  for (int64_t i = 0; i < 6; ++i) {
    net.parameter("0.weight")[i] = 0.5 + 0.25 * static_cast<double>(i);
    net.parameter("0.bias")[i] = 1.0 - 0.5 * static_cast<double>(i);
  }
  const Tensor<double> x = test::randn<double>({2, 2, 2, 3}, 3);
  const auto y = net.forward(x);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t g = 0; g < 2; ++g) {
      double mean = 0, var = 0;
      for (int64_t d = 0; d < 6; ++d) mean += x(b, g, d / 3, d % 3) / 6;
      for (int64_t d = 0; d < 6; ++d) var += (x(b, g, d / 3, d % 3) - mean) * (x(b, g, d / 3, d % 3) - mean) / 6;
      for (int64_t d = 0; d < 6; ++d) {
        const double want = (x(b, g, d / 3, d % 3) - mean) / std::sqrt(var + 0.5) * net.parameter("0.weight")[d] +
                            net.parameter("0.bias")[d];
        CHECK(std::abs(y(b, g, d / 3, d % 3) - want) <= 1e-14 * std::max(1.0, std::abs(want)));
      }
    }
}

TEST_CASE("explicit = autograd through LayerNorm (float64, every mode)", "[nn][layernorm][autograd]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  struct Case {
    const char* what;
    ModelSpec spec;
    std::vector<std::string> norms;
  };
  const std::vector<Case> cases = {
      {"an MLP with LayerNorm after each linear layer, one at the output",
       {.input = {6},
        .parameterization = p,
        .layers = {Linear{.out_features = 5}, LayerNorm{.normalized_shape = {5}}, Tanh(), Linear{.out_features = 3},
                   LayerNorm{.normalized_shape = {3}, .eps = 0.01}}},
       {"1.", "4."}},
      // (a LayerNorm over rows or (H, W) right after a conv would cancel the conv's bias, whose component is then
      // zero up to rounding: an activation comes between)
      {"a CNN with LayerNorm over (C, H, W), over rows, without affine, and γ only",
       {.input = {2, 5, 5},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1}, LayerNorm{.normalized_shape = {3, 5, 5}},
                   ReLU(), Conv2d{.out_channels = 4, .kernel_size = 2}, Tanh(), LayerNorm{.normalized_shape = {4}},
                   LayerNorm{.normalized_shape = {4, 4, 4}, .elementwise_affine = false},
                   LayerNorm{.normalized_shape = {4, 4}, .bias = false}, Flatten{}, Linear{.out_features = 2}}},
       {"1.", "5.", "7."}},
      {"LayerNorm in a residual block's body and shortcut",
       {.input = {4},
        .parameterization = p,
        .layers = {Residual{.body = {Linear{.out_features = 4}, LayerNorm{.normalized_shape = {4}}, ReLU(),
                                     Linear{.out_features = 4}},
                            .shortcut = {LayerNorm{.normalized_shape = {4}}}},
                   Linear{.out_features = 3}}},
       {"0.body.1.", "0.shortcut.0."}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const Sequential<double> net(c.spec, 3);
    test::randomize_norms(net, 4, c.norms);
    Shape s1{4}, s2{3};
    s1.insert(s1.end(), c.spec.input.begin(), c.spec.input.end());
    s2.insert(s2.end(), c.spec.input.begin(), c.spec.input.end());
    const auto x1 = test::randn<double>(s1, 5), x2 = test::randn<double>(s2, 6);
    test::compare_with_autograd(net, x1, x2, 1e-10);
    // the total alone, without components: there a layer adds its weight and bias terms into one block, and a
    // LayerNorm without bias must add no β term
    for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
      INFO("total alone, mode " << name(mode));
      CHECK(test::rel_error(ntk(net, x1, x2, {.mode = mode}).total, autograd_ntk(net, x1, x2, {.mode = mode}).total) <=
            1e-10);
    }
  }
}

TEST_CASE("LayerNorm's parameters and the specs it refuses", "[nn][layernorm][errors]") {
  const Sequential<double> net({.input = {3, 4},
                                .layers = {LayerNorm{.normalized_shape = {3, 4}}, Flatten{}, Linear{.out_features = 2},
                                           LayerNorm{.normalized_shape = {2}, .bias = false},
                                           LayerNorm{.normalized_shape = {2}, .elementwise_affine = false}}},
                               0);
  std::vector<std::string> params;
  for (const auto& q : net.named_parameters()) params.push_back(q.name);
  CHECK(params == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "3.weight"});
  CHECK(net.component_names() == std::vector<std::string>{"3.weight", "2.weight", "2.bias", "0.weight", "0.bias"});
  CHECK(net.parameter("0.weight").shape() == Shape{3, 4});
  CHECK(net.parameter("0.weight")[5] == 1);
  CHECK(net.parameter("0.bias")[5] == 0);
  CHECK(net.named_buffers().empty());

  CHECK_THROWS_WITH(Sequential<double>({.input = {3, 4}, .layers = {LayerNorm{.normalized_shape = {3}}}}),
                    Contains("layer 0 (layernorm): normalized_shape (3,) is not the trailing part of the input shape "
                             "(3, 4)"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {4}, .layers = {LayerNorm{.normalized_shape = {2, 4}}}}),
                    Contains("not the trailing part"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {4}, .layers = {LayerNorm{}}}), Contains("normalized_shape ()"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {4}, .layers = {LayerNorm{.normalized_shape = {4}, .eps = 0}}}),
                    Contains("layer 0 (layernorm): eps must be positive"));
}
