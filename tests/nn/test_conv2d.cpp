// Conv2d: backward and gradient against finite differences of its forward, over stride, padding, dilation
// and rectangular kernels, with and without bias, in both parameterisations.
#include "layer_check.hpp"

using namespace xntk;

TEST_CASE("Conv2d: backward and gradient match finite differences", "[nn][conv2d]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  test::check_layer(Conv2d{.out_channels = 4, .kernel_size = 3}, {2, 6, 5}, p, 1);
  test::check_layer(Conv2d{.out_channels = 3,
                           .kernel_size = {2, 3},
                           .stride = {2, 1},
                           .padding = {1, 2},
                           .dilation = {1, 2},
                           .bias = false,
                           .w_std = 0.7},
                    {3, 7, 8}, p, 2);
  // 8 channels, stride 1: the direct kernels where they are taken
  test::check_layer(Conv2d{.out_channels = 8, .kernel_size = 3, .padding = 1, .b_std = 0.3}, {8, 6, 6}, p, 3);
}
