// The torchntk README's MLP: 784-100-100-1 with tanh and 1/√width scaling (the `ntk` parameterisation),
// its explicit per-parameter NTK components, and the largest difference from the autograd path.
#include <cmath>
#include <cstdio>
#include <random>
#include <xntk/xntk.hpp>

int main() {
  using namespace xntk;
  const ModelSpec spec{
      .input = {784},
      .parameterization = Parameterization::ntk,
      .layers = {Linear{.out_features = 100}, Tanh(), Linear{.out_features = 100}, Tanh(), Linear{.out_features = 1}}};
  const Sequential<double> net(spec, 0);
  const int64_t n = 40;
  Tensor<double> x({n, 784});
  std::mt19937_64 g(1);
  std::normal_distribution<double> d;
  for (int64_t i = 0; i < x.size(); ++i) x[i] = d(g);

  const auto k = ntk(net, x, {.mode = Mode::full, .components = true});
  std::printf("torchntk MLP 784-100-100-1 (tanh, ntk parameterisation), %lld samples, %lld parameters\n",
              static_cast<long long>(n), static_cast<long long>(net.num_parameters()));
  std::printf("kernel shape %s\n", to_string(k.total.shape()).c_str());
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += k.total(i, i, 0, 0);
  for (size_t c = 0; c < k.names.size(); ++c) {
    double t = 0;
    for (int64_t i = 0; i < n; ++i) t += k.components[c](i, i, 0, 0);
    std::printf("  %-9s shape %s  trace %12.6f  (%5.1f%% of the total)\n", k.names[c].c_str(),
                to_string(k.components[c].shape()).c_str(), t, 100.0 * t / trace);
  }
  std::printf("total trace %.6f\n", trace);

  const auto a = autograd_ntk(net, x, {.mode = Mode::full, .components = true});
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < k.total.size(); ++i) {
    worst = std::max(worst, std::abs(k.total[i] - a.total[i]));
    scale = std::max(scale, std::abs(a.total[i]));
  }
  std::printf("largest explicit-vs-autograd difference: %.3e (relative %.3e)\n", worst, worst / scale);
  return worst / scale <= 1e-10 ? 0 : 1;
}
