// The CNN of the functorch "Neural Tangent Kernels" tutorial: conv 3→32→32→32 (3×3, stride 1, no padding),
// ReLU after the first two, flatten, Linear(21632, 10), PyTorch's standard parameterisation; its empirical
// NTK between 20 training and 5 test images of 3×32×32 in all three modes, the evaluation order chosen for
// each conv, each parameter's share of the training kernel's trace, and the largest difference from the
// autograd path (exit code 1 above 1e-10 relative).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <xntk/xntk.hpp>

namespace {

xntk::Tensor<double> images(int64_t n, uint64_t seed) {
  xntk::Tensor<double> x({n, 3, 32, 32});
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  for (int64_t i = 0; i < x.size(); ++i) x[i] = d(g);
  return x;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main() {
  using namespace xntk;
  const Conv2d conv3x3{.out_channels = 32, .kernel_size = 3};
  const ModelSpec spec{.input = {3, 32, 32},
                       .parameterization = Parameterization::standard,
                       .layers = {conv3x3, ReLU(), conv3x3, ReLU(), conv3x3, Flatten{}, Linear{.out_features = 10}}};
  const Sequential<double> net(spec, 0);
  const auto train = images(20, 1), test = images(5, 2);
  std::printf("functorch tutorial CNN: %lld parameters, output %s; %lld training and %lld test images %s\n",
              static_cast<long long>(net.num_parameters()), to_string(net.output_shape()).c_str(),
              static_cast<long long>(train.dim(0)), static_cast<long long>(test.dim(0)),
              to_string(net.input_shape()).c_str());

  auto t0 = std::chrono::steady_clock::now();
  const auto full = ntk(net, train, test, {.mode = Mode::full});
  const double explicit_s = seconds_since(t0);
  const auto trace = ntk(net, train, test, {.mode = Mode::trace});
  const auto diagonal = ntk(net, train, test, {.mode = Mode::diagonal});
  std::printf("full kernel shape %s (%.2f s, %.2f GFLOP)\n", to_string(full.total.shape()).c_str(), explicit_s,
              full.flops / 1e9);
  std::printf("trace kernel shape %s\n", to_string(trace.total.shape()).c_str());
  std::printf("diagonal kernel shape %s\n", to_string(diagonal.total.shape()).c_str());
  for (const auto& m : full.methods) std::printf("conv method  layer %s: %s\n", m.layer.c_str(), name(m.method));

  // Each parameter's share of the trace of the training kernel: Σ_n Θ_θ(x_n, x_n) summed over the outputs,
  // over the same sum of Θ (on the diagonal every component is a squared norm, so the shares are positive
  // and add up to 100%).
  const auto train_kernel = ntk(net, train, {.mode = Mode::trace, .components = true});
  auto trace_of = [](const Tensor<double>& k) {
    double s = 0;
    for (int64_t n = 0; n < k.dim(0); ++n) s += k(n, n);
    return s;
  };
  const double trace_total = trace_of(train_kernel.total);
  std::printf("trace of the training kernel Θ(train, train): %.6f\n", trace_total);
  for (size_t c = 0; c < train_kernel.names.size(); ++c)
    std::printf("  component %-9s %8.4f%% of the trace\n", train_kernel.names[c].c_str(),
                100.0 * trace_of(train_kernel.components[c]) / trace_total);

  t0 = std::chrono::steady_clock::now();
  const auto check = autograd_ntk(net, train, test, {.mode = Mode::full});
  const double autograd_s = seconds_since(t0);
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < full.total.size(); ++i) {
    worst = std::max(worst, std::abs(full.total[i] - check.total[i]));
    scale = std::max(scale, std::abs(check.total[i]));
  }
  const double relative = worst / scale;
  std::printf("autograd path: %.2f s\n", autograd_s);
  std::printf("largest explicit-vs-autograd difference: %.3e (relative to max |Θ| = %.3e: %.3e)\n", worst, scale,
              relative);
  if (!(relative <= 1e-10)) {
    std::printf("FAILED: the explicit and autograd kernels differ by more than 1e-10\n");
    return 1;
  }
  std::printf("OK\n");
  return 0;
}
