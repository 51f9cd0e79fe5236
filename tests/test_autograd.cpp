// The autograd engine itself, checked against central finite differences (independent of both paths).
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace xntk;

TEST_CASE("autograd: per-sample Jacobians match finite differences for every activation", "[autograd]") {
  const auto kind = GENERATE(from_range(all_activation_kinds()));
  Activation act{kind};
  const auto param = GENERATE(Parameterization::standard, Parameterization::ntk);
  INFO("activation " << name(kind) << ", " << name(param));
  Sequential<double> net({.input = {4},
                          .parameterization = param,
                          .layers = {Linear{.out_features = 5}, act, Linear{.out_features = 3}, act}},
                         7);
  const auto x = test::randn<double>({2, 4}, 11);
  const auto J = jacobians(net, x);
  const auto params = net.named_parameters();
  REQUIRE(J.size() == params.size());
  const double h = 1e-6;
  double worst = 0, scale = 0;
  for (size_t s = 0; s < params.size(); ++s) {
    Tensor<double>& p = *params[s].tensor;
    REQUIRE(J[s].shape() == Shape{2, 3, p.size()});
    for (int64_t k = 0; k < p.size(); ++k) {
      const double keep = p[k];
      p[k] = keep + h;
      const auto up = net.forward(x);
      p[k] = keep - h;
      const auto down = net.forward(x);
      p[k] = keep;
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t o = 0; o < 3; ++o) {
          const double fd = (up(i, o) - down(i, o)) / (2 * h);
          worst = std::max(worst, std::abs(fd - J[s](i, o, k)));
          scale = std::max(scale, std::abs(fd));
        }
    }
  }
  // central differences: truncation O(h²) ~ 1e-12 and cancellation ~ 1e-16/h ~ 1e-10 (ReLU kinks are
  // avoided with probability one by random inputs)
  CHECK(worst <= 1e-7 * std::max(scale, 1.0));
}

TEST_CASE("autograd: the forward pass equals a hand-written MLP", "[autograd]") {
  Sequential<double> net({.input = {3}, .layers = {Linear{.out_features = 2}, Tanh(), Linear{.out_features = 1}}}, 3);
  const auto& W1 = net.parameter("0.weight");
  const auto& b1 = net.parameter("0.bias");
  const auto& W2 = net.parameter("2.weight");
  const auto& b2 = net.parameter("2.bias");
  const auto x = test::randn<double>({1, 3}, 5);
  double out = b2[0];
  for (int j = 0; j < 2; ++j) {
    double z = b1[j];
    for (int k = 0; k < 3; ++k) z += W1(j, k) * x(0, k);
    out += W2(0, j) * std::tanh(z);
  }
  CHECK(std::abs(net.forward(x)(0, 0) - out) <= 1e-14 * std::max(1.0, std::abs(out)));
}

TEST_CASE("progress: both paths report steps up to their total, and an exception from it stops the call",
          "[autograd][progress]") {
  Sequential<double> net({.input = {6}, .layers = {Linear{.out_features = 5}, Tanh(), Linear{.out_features = 3}}}, 2);
  const auto x1 = test::randn<double>({37, 6}, 3), x2 = test::randn<double>({11, 6}, 4);
  for (const bool autograd : {false, true}) {
    INFO((autograd ? "autograd" : "explicit"));
    std::vector<std::pair<int64_t, int64_t>> calls;
    KernelOptions opt{.tile = 8};
    opt.progress = [&](int64_t done, int64_t total) { calls.emplace_back(done, total); };
    const auto k = autograd ? autograd_ntk(net, x1, x2, opt) : ntk(net, x1, x2, opt);
    REQUIRE(calls.size() >= 3);
    for (size_t i = 0; i < calls.size(); ++i) {
      CHECK(calls[i].first == static_cast<int64_t>(i) + 1);
      CHECK(calls[i].second == calls.back().first);
    }
    // the same kernel as without a callback
    KernelOptions quiet{.tile = 8};
    const auto plain = autograd ? autograd_ntk(net, x1, x2, quiet) : ntk(net, x1, x2, quiet);
    CHECK(test::rel_error(k.total, plain.total) == 0);

    struct Stop {};
    int64_t seen = 0;
    opt.progress = [&](int64_t done, int64_t) {
      seen = done;
      if (done == 2) throw Stop{};
    };
    CHECK_THROWS_AS(autograd ? autograd_ntk(net, x1, x2, opt) : ntk(net, x1, x2, opt), Stop);
    CHECK(seen == 2);
  }
}
