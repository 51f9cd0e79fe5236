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

TEST_CASE("AdaptiveAvgPool2d: backward matches finite differences", "[nn][pool]") {
  // windows of varying size that overlap (7 → 3 rows: [0, 3), [2, 5), [4, 7)), one axis kept (None), an output
  // larger than the input (3 → 5: windows of one or two rows)
  test::check_layer(AdaptiveAvgPool2d{.output_size = {3, 2}}, {2, 7, 5});
  test::check_layer(AdaptiveAvgPool2d{.output_size = {0, 3}}, {2, 4, 7});
  test::check_layer(AdaptiveAvgPool2d{.output_size = {5, 4}}, {1, 3, 3});
}

TEST_CASE("AdaptiveAvgPool2d: PyTorch's windows, and which layer each output size builds", "[nn][pool]") {
  // output (i, j) = the mean over rows [floor(i·H/OH), ceil((i+1)·H/OH)) and columns likewise (PyTorch's
  // adaptive_avg_pool2d), written out here
  struct Case {
    int64_t H, W;
    Size2 out;
    const char* layer;  // the layer built: uneven windows need the averaging map
  };
  for (const Case& c :
       {Case{7, 5, {3, 2}, "adaptive_avgpool2d"}, Case{6, 4, {3, 2}, "avgpool2d"}, Case{5, 6, {1, 1}, "global_avgpool"},
        Case{3, 4, {5, 0}, "adaptive_avgpool2d"}, Case{4, 4, {4, 4}, "avgpool2d"}}) {
    CAPTURE(c.H, c.W, c.out.h, c.out.w);
    const Sequential<double> net({.input = {2, c.H, c.W}, .layers = {AdaptiveAvgPool2d{.output_size = c.out}}}, 0);
    CHECK(nn::top_leaf(net, 0).type() == c.layer);
    const int64_t oh = c.out.h ? c.out.h : c.H, ow = c.out.w ? c.out.w : c.W;
    CHECK(net.output_shape() == Shape{2, oh, ow});
    const auto x = test::randn<double>({3, 2, c.H, c.W}, 4);
    const auto y = net.forward(x);
    for (int64_t b = 0; b < 3; ++b)
      for (int64_t ch = 0; ch < 2; ++ch)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t r0 = static_cast<int64_t>(std::floor(double(i) * double(c.H) / double(oh)));
            const int64_t r1 = static_cast<int64_t>(std::ceil(double(i + 1) * double(c.H) / double(oh)));
            const int64_t c0 = static_cast<int64_t>(std::floor(double(j) * double(c.W) / double(ow)));
            const int64_t c1 = static_cast<int64_t>(std::ceil(double(j + 1) * double(c.W) / double(ow)));
            double sum = 0;
            for (int64_t r = r0; r < r1; ++r)
              for (int64_t k = c0; k < c1; ++k) sum += x(b, ch, r, k);
            const double want = sum / double((r1 - r0) * (c1 - c0));
            CHECK(std::abs(y(b, ch, i, j) - want) <= 1e-14 * std::max(1.0, std::abs(want)));
          }
  }
  CHECK_THROWS_WITH(Sequential<double>({.input = {8}, .layers = {AdaptiveAvgPool2d{.output_size = 2}}}),
                    Catch::Matchers::Contains("layer 0 (adaptive_avgpool2d): expects a 3-D input"));
}

TEST_CASE("explicit = autograd through AdaptiveAvgPool2d (float64, every mode)", "[nn][pool][autograd]") {
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  const ModelSpec spec{
      .input = {2, 7, 6},
      .parameterization = p,
      .layers = {Conv2d{.out_channels = 3, .kernel_size = 2}, ReLU(), AdaptiveAvgPool2d{.output_size = {4, 0}}, Tanh(),
                 Conv2d{.out_channels = 4, .kernel_size = 2}, AdaptiveAvgPool2d{.output_size = {2, 3}}, Flatten{},
                 Linear{.out_features = 3}}};
  const Sequential<double> net(spec, 3);
  test::compare_with_autograd(net, test::randn<double>({4, 2, 7, 6}, 5), test::randn<double>({3, 2, 7, 6}, 6), 1e-10);
}
