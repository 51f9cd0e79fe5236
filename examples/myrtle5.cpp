// The Myrtle-5 CNN of Shankar et al., "Neural Kernels Without Tangents" (ICML 2020), laid out as neural-tangents'
// MyrtleNetwork, built through the C++ API in PyTorch's standard parameterisation, on 3×32×32 images:
//
//   [Conv2d(3×3, padding 1), ReLU] × 2, AvgPool2d(2), [Conv2d, ReLU] × 1, AvgPool2d(2), [Conv2d, ReLU] × 1,
//   AvgPool2d(2) × 3 (8×8 → 1×1: a global average), Flatten, Linear(width, 10)
//
// (--depth 7 and 10: 2-2-2 and 3-3-3 convolutions per stage). It computes the empirical NTK of random images (or
// --x1's) in trace mode, each parameter's share of the trace, the condition number and the time; with --check DIR
// it compares its kernel and every component with a conformance fixture's (tests/conformance/make_fixtures.py,
// myrtle5_full_x2: width 8) and exits 1 above 1e-10 relative.
//
// Usage: myrtle5 [--depth 5] [--width 8] [common options of architecture_example.hpp]
#include <array>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

#include "architecture_example.hpp"

namespace {

/// The Myrtle network of `depth` (5, 7 or 10) with `width` channels: layer i is module i of the nn.Sequential of
/// tests/conformance/architectures.py's myrtle(), so the parameters are "0.weight", "0.bias", "2.weight", ...
xntk::ModelSpec myrtle(int depth, int64_t width) {
  using namespace xntk;
  const std::array<int, 3> convs = depth == 5   ? std::array{2, 1, 1}
                                   : depth == 7 ? std::array{2, 2, 2}
                                                : std::array{3, 3, 3};
  const Conv2d conv3x3{.out_channels = width, .kernel_size = 3, .padding = 1};
  std::vector<LayerSpec> layers;
  for (int stage = 0; stage < 3; ++stage) {
    for (int c = 0; c < convs[stage]; ++c) {
      layers.push_back(conv3x3);
      layers.push_back(ReLU());
    }
    for (int p = 0; p < (stage == 2 ? 3 : 1); ++p) layers.push_back(AvgPool2d{.kernel_size = 2});
  }
  layers.push_back(Flatten{});
  layers.push_back(Linear{.out_features = 10});
  return {.input = {3, 32, 32}, .parameterization = Parameterization::standard, .layers = layers};
}

int usage() {
  std::fprintf(stderr, "usage: myrtle5 [--depth 5|7|10] [--width 8] %s\n", example::common_usage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int depth = 5;
  int64_t width = 8;
  example::Options options;
  try {
    for (int i = 1; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) return usage();
      const std::string value = argv[i + 1];
      if (flag == "--depth")
        depth = std::stoi(value);
      else if (flag == "--width")
        width = std::stoll(value);
      else if (!example::common_option(flag, value, options))
        return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myrtle5: %s\n", e.what());
    return usage();
  }
  if ((depth != 5 && depth != 7 && depth != 10) || width < 1 || (!options.perturb.empty() && options.check.empty()))
    return usage();
  try {
    xntk::Sequential<double> net(myrtle(depth, width), options.seed);
    std::printf("Myrtle-%d, width %lld\n", depth, static_cast<long long>(width));
    return example::run(net, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myrtle5: %s\n", e.what());
    return 1;
  }
}
