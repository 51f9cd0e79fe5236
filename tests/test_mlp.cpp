// Explicit layer-wise NTK = autograd NTK over a table of random MLPs, every mode, both dtypes.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace xntk;

namespace {

struct Case {
  ModelSpec spec;
  int64_t n, m;
};

/// Case c of the table: depth 1–5, widths 1–64, each activation in turn, both parameterisations, bias
/// on and off, O = 1 and O > 1, an activation after the last layer in every fourth case, and in every
/// sixth case no activation between the last two Linear layers (deltas shared by all samples).
Case make_case(int c) {
  std::mt19937_64 g(1000 + c);
  auto pick = [&](int lo, int hi) { return static_cast<int64_t>(lo + g() % (hi - lo + 1)); };
  const auto kinds = all_activation_kinds();
  Activation act{kinds[c % kinds.size()]};
  if (act.kind == ActivationKind::gelu && c % 20 >= 10) act.approximate = "tanh";
  if (act.kind == ActivationKind::leaky_relu) act.negative_slope = 0.2;
  Case k;
  k.spec.input = {pick(1, 12)};
  k.spec.parameterization = (c / 2) % 2 ? Parameterization::ntk : Parameterization::standard;
  const int depth = 1 + c % 5;
  for (int d = 0; d < depth; ++d) {
    const bool last = d == depth - 1;
    const int64_t width = last ? (c % 3 == 0 ? 1 : pick(2, 5)) : (c % 7 == 0 ? 64 : pick(1, 24));
    Linear lin{.out_features = width, .bias = g() % 3 != 0};
    lin.w_std = 0.5 + 1.5 * static_cast<double>(g() % 100) / 100.0;
    lin.b_std = static_cast<double>(g() % 100) / 100.0;
    k.spec.layers.push_back(lin);
    const bool skip = c % 6 == 5 && d == depth - 2;
    if ((!last && !skip) || (last && c % 4 == 3)) k.spec.layers.push_back(act);
  }
  k.n = pick(2, 5);
  k.m = k.n + pick(1, 3);
  return k;
}

}  // namespace

TEST_CASE("explicit = autograd on random MLPs (float64, every mode)", "[mlp]") {
  const int c = GENERATE(range(0, 60));
  const Case k = make_case(c);
  INFO("case " << c << ": " << test::describe(k.spec) << ", N=" << k.n << " M=" << k.m);
  const Sequential<double> net(k.spec, 50 + c);
  const auto x1 = test::randn<double>({k.n, k.spec.input[0]}, 2 * c);
  const auto x2 = test::randn<double>({k.m, k.spec.input[0]}, 2 * c + 1);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    KernelOptions opt{.mode = mode, .components = true};
    test::compare(ntk(net, x1, x2, opt), autograd_ntk(net, x1, x2, opt), 1e-10);
    test::compare(ntk(net, x1, opt), autograd_ntk(net, x1, opt), 1e-10);
    // without components, the kernel accumulates straight into the total
    opt.components = false;
    CHECK(test::rel_error(ntk(net, x1, x2, opt).total, autograd_ntk(net, x1, x2, opt).total) <= 1e-10);
  }
}

TEST_CASE("float32 agrees with float64", "[mlp][float]") {
  const int c = GENERATE(range(0, 60, 3));
  const Case k = make_case(c);
  INFO("case " << c << ": " << test::describe(k.spec));
  const Sequential<double> netd(k.spec, 50 + c);
  const Sequential<float> netf(k.spec, 50 + c);
  // both are initialised from the same double draws
  for (size_t i = 0; i < netd.named_parameters().size(); ++i)
    CHECK(test::rel_error(*netf.named_parameters()[i].tensor, netd.named_parameters()[i].tensor->cast<float>()) == 0);
  const auto x1 = test::randn<double>({k.n, k.spec.input[0]}, 2 * c);
  const auto x2 = test::randn<double>({k.m, k.spec.input[0]}, 2 * c + 1);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    const KernelOptions opt{.mode = mode};
    const auto kd = ntk(netd, x1, x2, opt);
    CHECK(test::rel_error(ntk(netf, x1.cast<float>(), x2.cast<float>(), opt).total, kd.total) <= 1e-4);
    CHECK(test::rel_error(autograd_ntk(netf, x1.cast<float>(), x2.cast<float>(), opt).total, kd.total) <= 1e-4);
    CHECK(test::rel_error(ntk(netf, x1.cast<float>(), opt).total, ntk(netd, x1, opt).total) <= 1e-4);
  }
}

TEST_CASE("explicit = autograd on wide ReLU MLPs with few samples", "[mlp]") {
  // layers ≥ 256 wide, ≤ 32 samples and ≤ 12 outputs take the backward that skips the columns a ReLU
  // above zeroed and, gated by the ReLU below, the outputs it zeroes (in AVX-512 builds); 13 outputs take
  // the GEMM. Widths leave partial column strips and row blocks.
  const int64_t outputs = GENERATE(1, 3, 8, 9, 13);
  INFO("outputs " << outputs);
  const ModelSpec spec{
      .input = {300},
      .layers = {Linear{.out_features = 260}, Activation{ActivationKind::relu}, Linear{.out_features = 270},
                 Activation{ActivationKind::relu}, Linear{.out_features = outputs}}};
  const Sequential<double> net(spec, 7);
  const auto x1 = test::randn<double>({5, 300}, 11);
  const auto x2 = test::randn<double>({7, 300}, 12);
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    KernelOptions opt{.mode = mode, .components = true};
    test::compare(ntk(net, x1, x2, opt), autograd_ntk(net, x1, x2, opt), 1e-10);
    test::compare(ntk(net, x1, opt), autograd_ntk(net, x1, opt), 1e-10);
    opt.threads = 1;
    const auto one = ntk(net, x1, x2, opt);
    opt.threads = 3;
    CHECK(test::rel_error(ntk(net, x1, x2, opt).total, one.total) <= 1e-13);
  }
  const Sequential<float> netf(spec, 7);
  const KernelOptions opt{.mode = Mode::full};
  CHECK(test::rel_error(ntk(netf, x1.cast<float>(), x2.cast<float>(), opt).total, ntk(net, x1, x2, opt).total) <= 1e-4);
}
