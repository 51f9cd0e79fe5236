// Linear: backward and gradient against finite differences of its forward.
#include "layer_check.hpp"

using namespace xntk;

TEST_CASE("Linear: backward and gradient match finite differences", "[nn][linear]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  const bool bias = GENERATE(true, false);
  INFO(name(p) << (bias ? ", bias" : ", no bias"));
  test::check_layer(Linear{.out_features = 5, .bias = bias, .w_std = 1.3, .b_std = 0.4}, {7}, p);
  // wide enough for the zero-skipping backward (256 × 256) on the variants that take it
  test::check_layer(Linear{.out_features = 260, .bias = bias}, {300}, p, 2);
}
