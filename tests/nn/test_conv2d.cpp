// Conv2d: backward and gradient against finite differences of its forward, over stride, padding, dilation
// and rectangular kernels, with and without bias, in both parameterisations; groups (depthwise too) and
// PyTorch's padding strings.
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

TEST_CASE("Conv2d with groups: backward and gradient match finite differences", "[nn][conv2d][groups]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  // two groups of 2 input and 3 output channels, strided and padded
  test::check_layer(Conv2d{.out_channels = 6, .kernel_size = 3, .stride = 2, .padding = 1, .groups = 2}, {4, 7, 6}, p,
                    4);
  // depthwise with a channel multiplier of 2, rectangular and dilated, no bias
  test::check_layer(
      Conv2d{.out_channels = 6, .kernel_size = {3, 2}, .dilation = {1, 2}, .groups = 3, .bias = false, .w_std = 1.3},
      {3, 6, 7}, p, 5);
  // depthwise, one output channel per input channel
  test::check_layer(Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1, .groups = 3}, {3, 5, 5}, p, 6);
  // groups of 8 channels at stride 1: each group takes the direct kernels where they are taken
  test::check_layer(Conv2d{.out_channels = 16, .kernel_size = 3, .padding = 1, .groups = 2}, {16, 5, 6}, p, 7);
}

TEST_CASE("Conv2d with padding \"same\" and \"valid\": shapes as PyTorch and finite differences",
          "[nn][conv2d][padding]") {
  struct Case {
    Conv2d conv;
    Shape out;
  };
  // "same" keeps H × W; an even kernel (or an odd dilation·(k − 1)) pads the extra row/column after
  const std::vector<Case> cases = {
      {Conv2d{.out_channels = 2, .kernel_size = 2, .padding_rule = ConvPadding::same}, {2, 5, 6}},
      {Conv2d{.out_channels = 3, .kernel_size = {4, 3}, .padding_rule = ConvPadding::same, .dilation = {1, 3}},
       {3, 5, 6}},
      {Conv2d{.out_channels = 4, .kernel_size = 3, .padding_rule = ConvPadding::same, .groups = 2}, {4, 5, 6}},
      {Conv2d{.out_channels = 2, .kernel_size = {2, 3}, .padding = 4, .padding_rule = ConvPadding::valid}, {2, 4, 4}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    const Sequential<double> net({.input = {2, 5, 6}, .layers = {cases[i].conv}}, 1);
    CHECK(nn::top_leaf(net, 0).out_shape() == cases[i].out);
    for (const auto p : {Parameterization::standard, Parameterization::ntk})
      test::check_layer(cases[i].conv, {2, 5, 6}, p, 8 + i);
  }
  // PyTorch's split of the total: ⌊t/2⌋ before, the rest after
  const auto sizes =
      padding_sizes(Conv2d{.kernel_size = {4, 3}, .padding_rule = ConvPadding::same, .dilation = {1, 3}});
  CHECK(sizes.before == Size2(1, 3));
  CHECK(sizes.after == Size2(2, 3));
  CHECK(padding_sizes(Conv2d{.kernel_size = 3, .padding = 2, .padding_rule = ConvPadding::valid}).after == Size2(0));
  CHECK(padding_sizes(Conv2d{.kernel_size = 3, .padding = {2, 1}}).after == Size2(2, 1));
}

TEST_CASE("Conv2d refuses groups that do not divide its channels and \"same\" with a stride, naming the layer",
          "[nn][conv2d][errors]") {
  auto error = [](const Conv2d& conv) -> std::string {
    try {
      Sequential<double>({.input = {4, 6, 6}, .layers = {ReLU(), conv}}, 0);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(error(Conv2d{.out_channels = 6, .kernel_size = 3, .groups = 3}),
             Contains("layer 1 (conv2d): groups must") && Contains("groups 3 for 4 input and 6 output channels"));
  CHECK_THAT(error(Conv2d{.out_channels = 6, .kernel_size = 3, .groups = 4}), Contains("layer 1 (conv2d): groups"));
  CHECK_THAT(error(Conv2d{.out_channels = 4, .kernel_size = 3, .groups = 0}), Contains("layer 1 (conv2d): groups"));
  CHECK_THAT(error(Conv2d{.out_channels = 4, .kernel_size = 3, .stride = {1, 2}, .padding_rule = ConvPadding::same}),
             Contains("layer 1 (conv2d): padding \"same\" needs stride 1"));
}
