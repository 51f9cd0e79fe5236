// Elementwise activations: backward against finite differences of the forward, for every kind.
#include "layer_check.hpp"

using namespace xntk;

TEST_CASE("activations: backward matches finite differences for every kind", "[nn][activation]") {
  for (ActivationKind kind : all_activation_kinds()) {
    Activation a{kind};
    a.negative_slope = 0.2;
    a.alpha = 0.7;
    a.beta = 1.5;
    a.threshold = 5;
    for (const std::string approximate : {"none", "tanh"}) {
      if (approximate == "tanh" && kind != ActivationKind::gelu) continue;
      a.approximate = approximate;
      INFO(name(kind) << " " << approximate);
      test::check_layer(a, {2, 3, 4});
    }
  }
}
