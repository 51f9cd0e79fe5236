// Explicit layer-wise NTK = autograd NTK over a table of random CNNs: both conv evaluation orders, every
// mode, components, tiles, exact symmetry, and float32 against float64.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace xntk;

namespace {

struct Case {
  ModelSpec spec;
  int64_t n, m;
};

/// Output size of a window sliding over `size` values (PyTorch's floor rounding).
int64_t slide(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  return (size + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
}

/// Case c of the table: 1–3 conv layers (kernel 1–3, stride 1–2, padding 0–1, dilation 1–2, bias on and off),
/// an activation after each (every kind in turn), average or max pooling between some of them, both
/// parameterisations, and four heads: flatten + linear, global average pooling + linear, and two where a
/// conv is the last parameterised layer (global average pooling, or the conv's own outputs flattened).
Case make_case(int c) {
  std::mt19937_64 g(7000 + c);
  auto pick = [&](int lo, int hi) { return static_cast<int64_t>(lo + g() % (hi - lo + 1)); };
  const auto kinds = all_activation_kinds();
  Case k;
  k.spec.parameterization = (c / 2) % 2 ? Parameterization::ntk : Parameterization::standard;
  int64_t C = pick(1, 3), H = pick(5, 8), W = pick(5, 8);
  k.spec.input = {C, H, W};
  const int head = c % 4;
  const int convs = 1 + (c / 4) % 3;
  for (int l = 0; l < convs; ++l) {
    Conv2d conv{.out_channels = pick(1, 4), .bias = g() % 3 != 0};
    conv.kernel_size.h = pick(1, 3);
    conv.kernel_size.w = g() % 4 == 0 ? pick(1, 3) : conv.kernel_size.h;
    conv.stride.h = pick(1, 2);
    conv.stride.w = g() % 4 == 0 ? pick(1, 2) : conv.stride.h;
    conv.padding.h = conv.padding.w = pick(0, 1);
    conv.dilation.h = conv.dilation.w = pick(1, 2);
    conv.w_std = 0.5 + static_cast<double>(g() % 100) / 100.0;
    conv.b_std = static_cast<double>(g() % 100) / 100.0;
    // shrink what does not fit the (small) image
    if (slide(H, conv.kernel_size.h, 1, conv.padding.h, conv.dilation.h) < 2 ||
        slide(W, conv.kernel_size.w, 1, conv.padding.w, conv.dilation.w) < 2)
      conv.dilation.h = conv.dilation.w = 1;
    while (slide(H, conv.kernel_size.h, 1, conv.padding.h, 1) < 1) --conv.kernel_size.h;
    while (slide(W, conv.kernel_size.w, 1, conv.padding.w, 1) < 1) --conv.kernel_size.w;
    H = slide(H, conv.kernel_size.h, conv.stride.h, conv.padding.h, conv.dilation.h);
    W = slide(W, conv.kernel_size.w, conv.stride.w, conv.padding.w, conv.dilation.w);
    C = conv.out_channels;
    k.spec.layers.push_back(conv);
    Activation act{kinds[static_cast<size_t>(c + l) % kinds.size()]};
    if (act.kind == ActivationKind::leaky_relu) act.negative_slope = 0.2;
    if (act.kind == ActivationKind::gelu && c % 2) act.approximate = "tanh";
    const bool last = l == convs - 1;
    if (!last || head != 3 || c % 8 == 3) k.spec.layers.push_back(act);
    if (last || H < 2 || W < 2) continue;
    switch ((c + l) % 3) {
      case 0: {
        AvgPool2d pool{.kernel_size = {2, W >= 3 && g() % 2 ? 3 : 2}};
        pool.padding.h = g() % 3 == 0 ? 1 : 0;
        k.spec.layers.push_back(pool);
        H = slide(H, pool.kernel_size.h, pool.kernel_size.h, pool.padding.h, 1);
        W = slide(W, pool.kernel_size.w, pool.kernel_size.w, 0, 1);
        break;
      }
      case 1: {
        MaxPool2d pool{.kernel_size = 2, .stride = {1, g() % 2 ? 1 : 2}};
        if (H >= 3 && W >= 3 && g() % 2) pool.dilation.h = pool.dilation.w = 2;
        pool.padding.w = g() % 3 == 0 ? 1 : 0;
        k.spec.layers.push_back(pool);
        H = slide(H, 2, 1, 0, pool.dilation.h);
        W = slide(W, 2, pool.stride.w, pool.padding.w, pool.dilation.w);
        break;
      }
      default: break;  // no pooling
    }
  }
  switch (head) {
    case 0:
      k.spec.layers.push_back(Flatten{});
      k.spec.layers.push_back(Linear{.out_features = pick(1, 4), .bias = g() % 2 == 0});
      break;
    case 1:
      k.spec.layers.push_back(GlobalAvgPool{});
      k.spec.layers.push_back(Flatten{});
      k.spec.layers.push_back(Linear{.out_features = pick(2, 4)});
      break;
    case 2:  // the last conv's deltas are not the identity: they come through the pooling
      k.spec.layers.push_back(GlobalAvgPool{});
      k.spec.layers.push_back(Flatten{});
      break;
    default:  // the last conv's outputs are the network's outputs
      k.spec.layers.push_back(Flatten{});
      break;
  }
  k.n = pick(2, 4);
  k.m = k.n + pick(1, 2);
  return k;
}

std::string describe(const ModelSpec& spec) {
  std::string s = std::string(name(spec.parameterization)) + " input " + to_string(spec.input) + ":";
  for (const auto& l : spec.layers) {
    s += " " + type_name(l);
    if (auto* cv = std::get_if<Conv2d>(&l))
      s += "(" + std::to_string(cv->out_channels) + ",k" + std::to_string(cv->kernel_size.h) + "x" +
           std::to_string(cv->kernel_size.w) + ",s" + std::to_string(cv->stride.h) + "x" +
           std::to_string(cv->stride.w) + ",p" + std::to_string(cv->padding.h) + ",d" + std::to_string(cv->dilation.h) +
           (cv->bias ? "" : ",nobias") + ")";
  }
  return s;
}

/// The same model with every conv forced to one evaluation order.
ModelSpec with_method(ModelSpec spec, ConvMethod method) {
  for (auto& l : spec.layers)
    if (auto* cv = std::get_if<Conv2d>(&l)) cv->method = method;
  return spec;
}

}  // namespace

TEST_CASE("explicit = autograd on random CNNs (float64, both conv orders, every mode)", "[cnn]") {
  const int c = GENERATE(range(0, 48));
  const Case k = make_case(c);
  INFO("case " << c << ": " << describe(k.spec) << ", N=" << k.n << " M=" << k.m);
  const Sequential<double> net(k.spec, 90 + c);
  const Sequential<double> by_gradients(with_method(k.spec, ConvMethod::gradients), 90 + c);
  const Sequential<double> by_positions(with_method(k.spec, ConvMethod::positions), 90 + c);
  Shape s1{k.n}, s2{k.m};
  s1.insert(s1.end(), k.spec.input.begin(), k.spec.input.end());
  s2.insert(s2.end(), k.spec.input.begin(), k.spec.input.end());
  const auto x1 = test::randn<double>(s1, 3 * c), x2 = test::randn<double>(s2, 3 * c + 1);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    const KernelOptions opt{.mode = mode, .components = true};
    const auto ref = autograd_ntk(net, x1, x2, opt), ref_sym = autograd_ntk(net, x1, opt);
    for (const auto* model : {&net, &by_gradients, &by_positions}) {
      const auto e = ntk(*model, x1, x2, opt);
      INFO("conv methods " << (e.methods.empty() ? "" : test::methods_text(e.methods).front()) << " ...");
      test::compare(e, ref, 1e-10);
      test::compare(ntk(*model, x1, opt), ref_sym, 1e-10);
    }
    // the two orders against each other, and the total accumulated without components
    CHECK(test::rel_error(ntk(by_gradients, x1, x2, opt).total, ntk(by_positions, x1, x2, opt).total) <= 1e-10);
    CHECK(test::rel_error(ntk(net, x1, x2, {.mode = mode}).total, ref.total) <= 1e-10);
  }
}

TEST_CASE("explicit = autograd through stride-1 convs with 8 or more input channels", "[cnn]") {
  // their input derivatives take the direct kernel (cpu/conv_backward.hpp) where built with AVX-512:
  // a width past one vector pair, 9 channels (a group of 8 and one more), a rectangular kernel with
  // padding as wide as it, a 1 × 1 conv whose deltas all samples share
  const ModelSpec spec{.input = {2, 6, 37},
                       .layers = {Conv2d{.out_channels = 9, .kernel_size = 3, .padding = 1}, ReLU(),
                                  Conv2d{.out_channels = 8, .kernel_size = {2, 3}, .padding = {1, 3}}, Tanh(),
                                  Conv2d{.out_channels = 4, .kernel_size = 1}, Flatten{}, Linear{.out_features = 3}}};
  const Sequential<double> net(spec, 23);
  const auto x1 = test::randn<double>({3, 2, 6, 37}, 1), x2 = test::randn<double>({2, 2, 6, 37}, 2);
  test::compare_with_autograd(net, x1, x2, 1e-10);
}

TEST_CASE("explicit = autograd where conv gradients skip the positions a ReLU zeroed", "[cnn]") {
  // per-sample weight gradients through masked_product (AVX-512 builds): both convs have ≥ 256 output
  // positions and K = 36 (two whole strips of 16 doubles and 4 columns more), each followed by a ReLU
  const ModelSpec spec{.input = {4, 20, 20},
                       .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .method = ConvMethod::gradients}, ReLU(),
                                  Conv2d{.out_channels = 3, .kernel_size = 3, .method = ConvMethod::gradients}, ReLU(),
                                  Flatten{}, Linear{.out_features = 3}}};
  const Sequential<double> net(spec, 29);
  const auto x1 = test::randn<double>({3, 4, 20, 20}, 5), x2 = test::randn<double>({2, 4, 20, 20}, 6);
  test::compare_with_autograd(net, x1, x2, 1e-10);
}

TEST_CASE("explicit = autograd through grouped, depthwise and \"same\"-padded convs (float64, both orders)",
          "[cnn][groups]") {
  struct Case {
    const char* what;
    ModelSpec spec;
  };
  const auto p = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO(name(p));
  const std::vector<Case> cases = {
      {"groups 2, then depthwise with a multiplier, then a pooled head",
       {.input = {4, 7, 6},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 6, .kernel_size = 3, .padding = 1, .groups = 2, .b_std = 0.4}, ReLU(),
                   Conv2d{.out_channels = 12, .kernel_size = {3, 2}, .stride = 2, .groups = 6, .w_std = 1.4}, Tanh(),
                   GlobalAvgPool{}, Flatten{}, Linear{.out_features = 3}}}},
      {"MobileNet-style: depthwise \"same\" then pointwise; even kernels pad after",
       {.input = {3, 6, 6},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 3, .kernel_size = 2, .padding_rule = ConvPadding::same, .groups = 3}, GELU(),
                   Conv2d{.out_channels = 4, .kernel_size = 1}, SiLU(),
                   Conv2d{.out_channels = 4,
                          .kernel_size = {4, 3},
                          .padding_rule = ConvPadding::same,
                          .dilation = {1, 2},
                          .groups = 2,
                          .bias = false},
                   Flatten{}, Linear{.out_features = 2}}}},
      {"a grouped conv as the output layer, \"valid\"",
       {.input = {2, 5, 5},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .padding_rule = ConvPadding::valid}, ReLU(),
                   Conv2d{.out_channels = 4, .kernel_size = 3, .groups = 2}, Flatten{}}}},
      {"depthwise as the output, through global pooling",
       {.input = {3, 5, 5},
        .parameterization = p,
        .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1, .groups = 3}, Sigmoid(),
                   Conv2d{.out_channels = 3, .kernel_size = 2, .groups = 3}, GlobalAvgPool{}, Flatten{}}}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    for (const ConvMethod method : {ConvMethod::automatic, ConvMethod::gradients, ConvMethod::positions}) {
      INFO("method " << name(method));
      const Sequential<double> net(with_method(c.spec, method), 3);
      Shape s1{3}, s2{2};
      s1.insert(s1.end(), c.spec.input.begin(), c.spec.input.end());
      s2.insert(s2.end(), c.spec.input.begin(), c.spec.input.end());
      test::compare_with_autograd(net, test::randn<double>(s1, 5), test::randn<double>(s2, 6), 1e-10);
    }
    // the per-sample Jacobians (linearisation, training) through the grouped layers too
    const auto [worst, scale] = test::jacobian_gap(
        Sequential<double>(c.spec, 3), test::randn<double>({3, c.spec.input[0], c.spec.input[1], c.spec.input[2]}, 7));
    CHECK(scale > 0);
    CHECK(worst <= 1e-13 * scale);
  }
}

TEST_CASE("conv methods are reported per layer and the cost model picks positions for tiny maps", "[cnn]") {
  // a 5×5 image through a 5×5 kernel has one output position: the double sum is a single term
  const ModelSpec tiny{.input = {2, 5, 5},
                       .layers = {Conv2d{.out_channels = 3, .kernel_size = 3}, ReLU(),
                                  Conv2d{.out_channels = 4, .kernel_size = 3}, Flatten{}, Linear{.out_features = 2}}};
  const Sequential<double> net(tiny, 1);
  const auto x = test::randn<double>({3, 2, 5, 5}, 2);
  CHECK(test::methods_text(ntk(net, x).methods) == std::vector<std::string>{"2: positions", "0: gradients"});
  // a wide map with few outputs: per-sample gradients
  const Sequential<double> wide(
      {.input = {3, 16, 16},
       .layers = {Conv2d{.out_channels = 8, .kernel_size = 3}, Flatten{}, Linear{.out_features = 3}}},
      1);
  CHECK(test::methods_text(ntk(wide, test::randn<double>({2, 3, 16, 16}, 3)).methods) ==
        std::vector<std::string>{"0: gradients"});
  const Sequential<double> forced(with_method(tiny, ConvMethod::gradients), 1);
  CHECK(test::methods_text(ntk(forced, x).methods) == std::vector<std::string>{"2: gradients", "0: gradients"});
  CHECK(autograd_ntk(net, x).methods.empty());
}

TEST_CASE("CNN kernels do not depend on the tile size and Θ(X, X) is exactly symmetric", "[cnn]") {
  const ConvMethod method = GENERATE(ConvMethod::gradients, ConvMethod::positions);
  const bool bias_last = GENERATE(false, true);
  INFO("method " << name(method) << ", output bias " << bias_last);
  const ModelSpec spec{
      .input = {2, 6, 6},
      .parameterization = Parameterization::ntk,
      .layers = {Conv2d{.out_channels = 3, .kernel_size = 3, .padding = 1, .method = method}, Tanh(), MaxPool2d{},
                 Conv2d{.out_channels = 4, .kernel_size = 2, .bias = bias_last, .method = method}, GlobalAvgPool{},
                 Flatten{}}};
  const Sequential<double> net(spec, 4);
  const auto x1 = test::randn<double>({7, 2, 6, 6}, 5), x2 = test::randn<double>({5, 2, 6, 6}, 6);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    const auto ref = autograd_ntk(net, x1, x2, {.mode = mode});
    const auto ref_sym = autograd_ntk(net, x1, {.mode = mode});
    for (int64_t tile : {0, 1, 2, 3}) {
      INFO("tile " << tile);
      const auto k = ntk(net, x1, x2, {.mode = mode, .components = true, .tile = tile});
      CHECK(k.tile == (tile == 0 ? 7 : tile));
      CHECK(test::rel_error(k.total, ref.total) <= 1e-10);
      const auto s = ntk(net, x1, {.mode = mode, .components = true, .tile = tile});
      CHECK(test::rel_error(s.total, ref_sym.total) <= 1e-10);
      const int64_t N = 7, O = 4, per = mode == Mode::full ? O * O : mode == Mode::diagonal ? O : 1;
      bool symmetric = true;
      for (const auto* t : {&s.total, &s.components[0], &s.components[1], &s.components[2]})
        for (int64_t i = 0; i < N; ++i)
          for (int64_t j = 0; j < N; ++j)
            for (int64_t e = 0; e < per; ++e) {
              // full mode: Θ[i, j, o, o'] == Θ[j, i, o', o]
              const int64_t f = mode == Mode::full ? (e % O) * O + e / O : e;
              symmetric = symmetric && (*t)[(i * N + j) * per + e] == (*t)[(j * N + i) * per + f];
            }
      CHECK(symmetric);
    }
  }
}

TEST_CASE("CNN kernels in float32 agree with float64", "[cnn][float]") {
  const int c = GENERATE(0, 5, 10, 15, 21, 30);
  const Case k = make_case(c);
  INFO("case " << c << ": " << describe(k.spec));
  const Sequential<double> netd(k.spec, 90 + c);
  const Sequential<float> netf(k.spec, 90 + c);
  Shape s1{k.n}, s2{k.m};
  s1.insert(s1.end(), k.spec.input.begin(), k.spec.input.end());
  s2.insert(s2.end(), k.spec.input.begin(), k.spec.input.end());
  const auto x1 = test::randn<double>(s1, 3 * c), x2 = test::randn<double>(s2, 3 * c + 1);
  for (Mode mode : {Mode::full, Mode::trace}) {
    INFO("mode " << name(mode));
    const KernelOptions opt{.mode = mode};
    const auto kd = ntk(netd, x1, x2, opt);
    CHECK(test::rel_error(ntk(netf, x1.cast<float>(), x2.cast<float>(), opt).total, kd.total) <= 1e-4);
    CHECK(test::rel_error(autograd_ntk(netf, x1.cast<float>(), x2.cast<float>(), opt).total, kd.total) <= 1e-4);
    CHECK(test::rel_error(ntk(netf, x1.cast<float>(), opt).total, ntk(netd, x1, opt).total) <= 1e-4);
  }
}
