// The CNN layers one by one: shapes and validation, forward against direct loops, max pooling's first
// maximum, and the conv weight component's two orders and gradient chunks on the layer itself.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "nn/conv2d.hpp"
#include "nn/model.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

/// A delta of the given kind holding t's values.
template <class T>
nn::Delta<T> delta_of(nn::DeltaKind kind, const Tensor<T>& t) {
  nn::Delta<T> d{kind, {}};
  d.rows.resize(t.size());
  std::copy(t.data(), t.data() + t.size(), d.rows.data());
  return d;
}

template <class T>
Tensor<T> run(const Sequential<T>& net, const Tensor<T>& x) {
  return net.forward(x);
}

}  // namespace

TEST_CASE("CNN output shapes follow PyTorch", "[cnn][layers]") {
  const Sequential<double> net(
      {.input = {3, 32, 32},
       .layers =
           {Conv2d{.out_channels = 32, .kernel_size = 3}, ReLU(),
            Conv2d{.out_channels = 8, .kernel_size = {3, 5}, .stride = {2, 1}, .padding = {1, 2}, .dilation = {2, 1}},
            AvgPool2d{.kernel_size = {3, 2}, .padding = {1, 0}},
            MaxPool2d{.kernel_size = {2, 3}, .stride = {1, 0}, .dilation = {1, 2}}, GlobalAvgPool{}, Flatten{}}},
      0);
  // 32 -> 30 (k3); h: (30 + 2 - 5)/2 + 1 = 14, w: (30 + 4 - 5)/1 + 1 = 30; avg: (14 + 2 - 3)/3 + 1 = 5,
  // (30 - 2)/2 + 1 = 15; max: h (5 - 2)/1 + 1 = 4, w (15 - 5)/3 + 1 = 4
  CHECK(net.layer_output_shape(0) == Shape{32, 30, 30});
  CHECK(net.layer_output_shape(2) == Shape{8, 14, 30});
  CHECK(net.layer_output_shape(3) == Shape{8, 5, 15});
  CHECK(net.layer_output_shape(4) == Shape{8, 4, 4});
  CHECK(net.layer_output_shape(5) == Shape{8, 1, 1});
  CHECK(net.output_shape() == Shape{8});
  CHECK(net.parameter("0.weight").shape() == Shape{32, 3, 3, 3});
  CHECK(net.parameter("2.weight").shape() == Shape{8, 32, 3, 5});
  CHECK(net.parameter("2.bias").shape() == Shape{8});
  CHECK(net.num_parameters() == 32 * 27 + 32 + 8 * 32 * 15 + 8);
}

TEST_CASE("CNN layers name themselves in shape and argument errors", "[cnn][layers][errors]") {
  // layer 3 sees a 2×2 map: conv 5 -> 4, max pooling 4 -> 2
  CHECK_THROWS_WITH(Sequential<double>({.input = {1, 5, 5},
                                        .layers = {Conv2d{.out_channels = 2, .kernel_size = 2}, ReLU(), MaxPool2d{},
                                                   Conv2d{.out_channels = 2, .kernel_size = 3}}}),
                    Contains("layer 3 (conv2d)") && Contains("larger than its padded input") &&
                        Contains("expected a padded input of at least 3x3") && Contains("got 2x2"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {1, 4, 4},
                                        .layers = {Conv2d{.out_channels = 1, .kernel_size = 2, .dilation = {4, 1}}}}),
                    Contains("layer 0 (conv2d)") && Contains("at least 5x2") && Contains("got 4x4"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 4, 4},
                                        .layers = {Conv2d{.out_channels = 1, .method = static_cast<ConvMethod>(7)}}}),
                    Contains("layer 0 (conv2d)") && Contains("automatic, gradients or positions"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 4, 4}, .layers = {Conv2d{.out_channels = 1, .in_channels = 3}}}),
                    Contains("layer 0 (conv2d)") && Contains("in_channels is 3") && Contains("2 channels"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {16}, .layers = {Conv2d{.out_channels = 1}}}),
                    Contains("layer 0 (conv2d)") && Contains("3-D input") && Contains("(16"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 4, 4}, .layers = {Conv2d{.out_channels = 0}}}),
                    Contains("out_channels must be positive"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 4, 4}, .layers = {Conv2d{.out_channels = 1, .stride = {0, 1}}}}),
                    Contains("stride must be positive"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 4, 4}, .layers = {Conv2d{.out_channels = 1, .padding = {0, -1}}}}),
                    Contains("padding must be non-negative"));
  CHECK_THROWS_WITH(Sequential<double>(
                        {.input = {2, 4, 4}, .layers = {Conv2d{.out_channels = 1}, ReLU(), Linear{.out_features = 2}}}),
                    Contains("layer 2 (linear)") && Contains("flatten"));
  CHECK_THROWS_WITH(
      Sequential<double>({.input = {2, 4, 4}, .layers = {AvgPool2d{.kernel_size = 2, .padding = {2, 0}}}}),
      Contains("layer 0 (avgpool2d)") && Contains("half the kernel size"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {2, 3, 3}, .layers = {ReLU(), MaxPool2d{.kernel_size = {4, 2}}}}),
                    Contains("layer 1 (maxpool2d)") && Contains("at least 4x2") && Contains("got 3x3"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {8}, .layers = {GlobalAvgPool{}}}),
                    Contains("layer 0 (global_avgpool)") && Contains("3-D input"));
  CHECK_THROWS_WITH(Sequential<double>({.input = {8}, .layers = {AvgPool2d{}}}), Contains("layer 0 (avgpool2d)"));
}

TEST_CASE("conv and pooling forwards match direct loops", "[cnn][layers]") {
  const auto param = GENERATE(Parameterization::standard, Parameterization::ntk);
  const int64_t C = 2, H = 5, W = 6, F = 3, kh = 2, kw = 3, sh = 2, sw = 1, ph = 1, pw = 0, dh = 1, dw = 2;
  const Sequential<double> net({.input = {C, H, W},
                                .parameterization = param,
                                .layers = {Conv2d{.out_channels = F,
                                                  .kernel_size = {kh, kw},
                                                  .stride = {sh, sw},
                                                  .padding = {ph, pw},
                                                  .dilation = {dh, dw},
                                                  .w_std = 1.3,
                                                  .b_std = 0.7}}},
                               3);
  const auto x = test::randn<double>({2, C, H, W}, 4);
  const auto y = run(net, x);
  const int64_t oh = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1, ow = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  REQUIRE(y.shape() == Shape{2, F, oh, ow});
  const auto& w = net.parameter("0.weight");
  const auto& b = net.parameter("0.bias");
  const auto [cw, cb] = net.multipliers(0);
  double worst = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t s = 0; s < ow; ++s) {
          double acc = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t u = r * sh - ph + i * dh, v = s * sw - pw + j * dw;
                if (u >= 0 && u < H && v >= 0 && v < W) acc += w(f, c, i, j) * x(n, c, u, v);
              }
          worst = std::max(worst, std::abs(y(n, f, r, s) - (cw * acc + cb * b(f))));
        }
  CHECK(worst <= 1e-13);

  // average pooling with padding counts the padding in the divisor
  const Sequential<double> avg({.input = {C, H, W}, .layers = {AvgPool2d{.kernel_size = {2, 3}, .padding = 1}}});
  const auto ya = avg.forward(x);
  REQUIRE(ya.shape() == Shape{2, C, 3, 2});
  worst = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t s = 0; s < 2; ++s) {
          double acc = 0;
          for (int64_t u = r * 2 - 1; u < r * 2 + 1; ++u)
            for (int64_t v = s * 3 - 1; v < s * 3 + 2; ++v)
              if (u >= 0 && u < H && v >= 0 && v < W) acc += x(n, c, u, v);
          worst = std::max(worst, std::abs(ya(n, c, r, s) - acc / 6));
        }
  CHECK(worst <= 1e-14);

  // max pooling with dilation and padding ignores the padding
  const Sequential<double> mx(
      {.input = {C, H, W},
       .layers = {MaxPool2d{.kernel_size = 2, .stride = {1, 2}, .padding = {0, 1}, .dilation = 2}}});
  const auto ym = mx.forward(x);
  REQUIRE(ym.shape() == Shape{2, C, 3, 3});
  worst = 0;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t r = 0; r < 3; ++r)
        for (int64_t s = 0; s < 3; ++s) {
          double best = -INFINITY;
          for (int64_t u : {r, r + 2})
            for (int64_t v : {s * 2 - 1, s * 2 + 1})
              if (v >= 0 && v < W) best = std::max(best, x(n, c, u, v));
          worst = std::max(worst, std::abs(ym(n, c, r, s) - best));
        }
  CHECK(worst == 0);

  // global average pooling and flatten
  const Sequential<double> gp({.input = {C, H, W}, .layers = {GlobalAvgPool{}, Flatten{}}});
  const auto yg = gp.forward(x);
  REQUIRE(yg.shape() == Shape{2, C});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < C; ++c) {
      double acc = 0;
      for (int64_t u = 0; u < H; ++u)
        for (int64_t v = 0; v < W; ++v) acc += x(n, c, u, v);
      CHECK(yg(n, c) == Approx(acc / (H * W)).epsilon(1e-14));
    }
  const auto yf = Sequential<double>({.input = {C, H, W}, .layers = {Flatten{}}}).forward(x);
  CHECK(yf.shape() == Shape{2, C * H * W});
  CHECK(test::rel_error(yf, x.reshaped({2, C * H * W})) == 0);
}

TEMPLATE_TEST_CASE("stride-1 conv forwards match direct sums", "[cnn][layers]", float, double) {
  // From 8 input and 8 output channels, padding below the kernel size, stride and dilation 1 the forward
  // takes the direct kernel (AVX-512 builds); the others take im2col and a GEMM. Widths below, at and
  // past a vector pair, output channels 8, 9 (a group of 8 and one), 16 and 32, padding 0 to kernel − 1
  // and one past it, rectangular kernels, and 3 or 4 input channels (im2col); against long-double sums.
  using T = TestType;
  struct Geometry {
    int64_t ci, co, h, w, kh, kw, ph, pw;
  };
  for (const Geometry& s :
       {Geometry{8, 32, 9, 32, 3, 3, 0, 0}, Geometry{9, 9, 6, 37, 3, 3, 1, 1}, Geometry{8, 16, 5, 13, 2, 5, 1, 4},
        Geometry{12, 8, 7, 40, 3, 2, 2, 0}, Geometry{8, 8, 4, 9, 3, 3, 3, 1}, Geometry{3, 32, 6, 20, 3, 3, 1, 1},
        Geometry{4, 4, 6, 20, 3, 3, 1, 1}}) {
    CAPTURE(s.ci, s.co, s.h, s.w, s.kh, s.kw, s.ph, s.pw);
    const Sequential<T> net(
        {.input = {s.ci, s.h, s.w},
         .parameterization = Parameterization::ntk,
         .layers = {Conv2d{.out_channels = s.co, .kernel_size = {s.kh, s.kw}, .padding = {s.ph, s.pw}, .b_std = 0.5}}},
        7);
    const auto x = test::randn<T>({3, s.ci, s.h, s.w}, 8);
    const auto y = run(net, x);
    const int64_t oh = s.h + 2 * s.ph - s.kh + 1, ow = s.w + 2 * s.pw - s.kw + 1;
    REQUIRE(y.shape() == Shape{3, s.co, oh, ow});
    const auto& w = net.parameter("0.weight");
    const auto& b = net.parameter("0.bias");
    // the multipliers as the layer applies them, rounded to T
    const auto cw = static_cast<long double>(static_cast<T>(net.multipliers(0).first));
    const auto cb = static_cast<long double>(static_cast<T>(net.multipliers(0).second));
    double worst = 0;
    for (int64_t n = 0; n < 3; ++n)
      for (int64_t f = 0; f < s.co; ++f)
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t c = 0; c < ow; ++c) {
            long double acc = cb * b(f), scale = std::fabs(acc);
            for (int64_t q = 0; q < s.ci; ++q)
              for (int64_t i = 0; i < s.kh; ++i)
                for (int64_t j = 0; j < s.kw; ++j) {
                  const int64_t u = r - s.ph + i, v = c - s.pw + j;
                  if (u < 0 || u >= s.h || v < 0 || v >= s.w) continue;
                  const long double term = cw * w(f, q, i, j) * x(n, q, u, v);
                  acc += term;
                  scale += std::fabs(term);
                }
            worst = std::max(worst, static_cast<double>(std::fabs(y(n, f, r, c) - acc) / scale));
          }
    // at most ci·kh·kw products summed, the bias added, and scaled: (ci·kh·kw + 3)·u·Σ|terms| (Higham §3.1)
    CHECK(worst <= static_cast<double>(s.ci * s.kh * s.kw + 3) * std::numeric_limits<T>::epsilon() / 2);
  }
}

TEST_CASE("max pooling sends the derivative to the first maximum", "[cnn][layers]") {
  // 2×2 windows over the 2×4 image [1 3 | 5 5] / [3 2 | 5 4]: both windows have tied maxima (3 twice,
  // 5 three times), and the first of each in row-major order takes the derivative
  const Sequential<double> net({.input = {1, 2, 4}, .layers = {MaxPool2d{}}});
  const std::vector<double> x{1, 3, 5, 5, 3, 2, 5, 4};
  const std::vector<double> y{3, 5}, dout{10, 20};
  std::vector<double> out(2);
  const auto& pool = nn::top_leaf(net, 0);
  nn::Context<double> cx(backend::get("cpu"));
  pool.compute(cx, x.data(), out.data(), 1);
  CHECK(out == y);
  const auto din = pool.backward(cx, x.data(), out.data(), 1, 1,
                                 delta_of(nn::DeltaKind::per_sample, Tensor<double>({2}, dout)), nullptr);
  CHECK(std::vector<double>(din.data(), din.data() + 8) == std::vector<double>{0, 10, 20, 0, 0, 0, 0, 0});
}

TEST_CASE("conv components: both orders, every gradient chunk and shared deltas agree on the layer", "[cnn][layers]") {
  const auto mode = GENERATE(Mode::full, Mode::trace, Mode::diagonal);
  INFO("mode " << name(mode));
  const Sequential<double> net(
      {.input = {2, 5, 4},
       .parameterization = Parameterization::ntk,
       .layers = {Conv2d{.out_channels = 3, .kernel_size = 2, .padding = {1, 0}, .dilation = {1, 2}}}},
      8);
  const auto* conv = dynamic_cast<const nn::Conv2dLayer<double>*>(&nn::top_leaf(net, 0));
  REQUIRE(conv != nullptr);
  const int64_t O = 3, n1 = 7, n2 = 5, in = conv->in_size(), out = conv->out_size();
  const int64_t per = mode == Mode::full ? O * O : mode == Mode::diagonal ? O : 1;
  // the components are bilinear in (inputs, deltas): random deltas test them as well as back-propagated ones
  const auto a_in = test::randn<double>({n1, in}, 1), b_in = test::randn<double>({n2, in}, 2);
  const auto a_delta = test::randn<double>({n1 * O, out}, 3), b_delta = test::randn<double>({n2 * O, out}, 4);
  // shared deltas: O rows for every sample, and the same written out per sample
  const auto shared = test::randn<double>({O, out}, 5);
  Tensor<double> a_rep({n1 * O, out}), b_rep({n2 * O, out});
  for (int64_t e = 0; e < a_rep.size(); ++e) a_rep[e] = shared[e % shared.size()];
  for (int64_t e = 0; e < b_rep.size(); ++e) b_rep[e] = shared[e % shared.size()];
  nn::Context<double> cx(backend::get("cpu"));
  auto compute = [&](nn::ConvOrder order, const nn::Side<double>& a, const nn::Side<double>& b, bool same,
                     int64_t chunk, bool bias) {
    const int64_t m = same ? n1 : n2;
    Tensor<double> w({n1 * m * per}), c({n1 * m * per});
    const nn::ComponentTarget<double> t{mode, O, same, w.data(), c.data()};
    if (bias)
      conv->components(cx, a, same ? a : b, t);
    else
      conv->weight_component(cx, order, a, same ? a : b, t, chunk);
    return bias ? c : w;
  };
  using nn::DeltaKind;
  const auto da = delta_of(DeltaKind::per_sample, a_delta), db = delta_of(DeltaKind::per_sample, b_delta);
  const auto ra = delta_of(DeltaKind::per_sample, a_rep), rb = delta_of(DeltaKind::per_sample, b_rep);
  const auto sh = delta_of(DeltaKind::shared, shared);
  for (bool is_shared : {false, true})
    for (bool same : {false, true}) {
      INFO("shared deltas " << is_shared << ", same " << same);
      const nn::Side<double> a{a_in.data(), is_shared ? &ra : &da, n1}, b{b_in.data(), is_shared ? &rb : &db, n2};
      const nn::Side<double> as{a_in.data(), &sh, n1}, bs{b_in.data(), &sh, n2};
      const auto& sa = is_shared ? as : a;
      const auto& sb = is_shared ? bs : b;
      const auto ref = compute(nn::ConvOrder::positions, a, b, same, 0, false);
      CHECK(test::rel_error(compute(nn::ConvOrder::positions, sa, sb, same, 0, false), ref) <= 1e-12);
      for (int64_t chunk : {1, 2, 3, 100}) {
        INFO("chunk " << chunk);
        const auto k = compute(nn::ConvOrder::gradients, sa, sb, same, chunk, false);
        CHECK(test::rel_error(k, ref) <= 1e-12);
        if (!same) continue;
        bool symmetric = true;
        for (int64_t i = 0; i < n1; ++i)
          for (int64_t j = 0; j < n1; ++j)
            for (int64_t e = 0; e < per; ++e) {
              const int64_t f = mode == Mode::full ? (e % O) * O + e / O : e;
              symmetric = symmetric && k[(i * n1 + j) * per + e] == k[(j * n1 + i) * per + f];
            }
        CHECK(symmetric);
      }
      const auto bias = compute(nn::ConvOrder::gradients, sa, sb, same, 0, true);
      CHECK(test::rel_error(bias, compute(nn::ConvOrder::gradients, a, b, same, 0, true)) <= 1e-12);
      CHECK(test::rel_error(bias, Tensor<double>(bias.shape())) > 0);
    }
  CHECK(cx.flops() > 0);
  CHECK(conv->gradient_chunk(10) >= 1);
}
