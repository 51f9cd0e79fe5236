// Pooling: backward against finite differences of the forward.
#include "layer_check.hpp"

using namespace xntk;

TEST_CASE("pooling: backward matches finite differences", "[nn][pool]") {
  test::check_layer(AvgPool2d{.kernel_size = 2}, {2, 6, 5});
  test::check_layer(AvgPool2d{.kernel_size = {3, 2}, .stride = {2, 1}, .padding = 1}, {3, 7, 6});
  test::check_layer(MaxPool2d{.kernel_size = 2}, {2, 6, 5});
  test::check_layer(MaxPool2d{.kernel_size = 3, .stride = {1, 2}, .padding = 1, .dilation = {2, 1}}, {2, 9, 8});
  test::check_layer(GlobalAvgPool{}, {4, 3, 5});
}

TEST_CASE("flatten: backward matches finite differences", "[nn][flatten]") { test::check_layer(Flatten{}, {2, 3, 4}); }
