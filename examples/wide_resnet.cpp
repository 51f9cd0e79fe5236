// A small WideResNet (Zagoruyko & Komodakis, "Wide Residual Networks", 2016), WRN-depth-k as their reference
// PyTorch implementation with a base width of `base` channels (16 in the paper), built through the C++ API with
// PyTorch's module names, in PyTorch's standard parameterisation and with BatchNorm in eval mode:
//
//   conv1: Conv2d(3 → base, 3×3, padding 1, no bias)
//   block1, block2, block3: (depth − 4) / 6 pre-activation blocks each, of base·k, 2·base·k, 4·base·k channels,
//     the first of a group with stride 1, 2, 2; a block is
//       bn1, relu1, conv1 (3×3, the stride), bn2, relu2, conv2 (3×3) + shortcut
//     the shortcut being the identity when the shape is kept and otherwise convShortcut, a 1×1 convolution with
//     the stride applied to relu1(bn1(x)), which then feeds both branches (all convolutions without bias)
//   bn1, relu, avgpool (global average), flatten, fc: Linear(4·base·k → 10)
//
// The parameters are named as that module's state_dict ("block2.0.convShortcut.weight", "fc.bias"). It computes
// the empirical NTK of random images (or --x1's) in trace mode, each parameter's share of the trace, the condition
// number and the time; with --check DIR it compares its kernel and every component with a conformance fixture's
// (tests/conformance/make_fixtures.py, wide_resnet_diagonal_x2: WRN-10-2, base 4, 16×16) and exits 1 above 1e-10
// relative.
//
// Usage: wide_resnet [--depth 10] [--widen 2] [--base 4] [--image 16] [common options of architecture_example.hpp]
#include <cstdio>
#include <exception>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

#include "architecture_example.hpp"

namespace {

using namespace xntk;

/// One pre-activation block from `in` to `out` channels (a module whose children are bn1, relu1, conv1, ...).
LayerSpec block(int64_t in, int64_t out, int64_t stride) {
  const Conv2d conv1{.out_channels = out, .kernel_size = 3, .stride = stride, .padding = 1, .bias = false};
  const Conv2d conv2{.out_channels = out, .kernel_size = 3, .padding = 1, .bias = false};
  std::vector<LayerSpec> pre = {named("bn1", BatchNorm2d{}), named("relu1", ReLU())};
  std::vector<LayerSpec> body = {named("conv1", conv1), named("bn2", BatchNorm2d{}), named("relu2", ReLU()),
                                 named("conv2", conv2)};
  if (in == out && stride == 1) {
    // x + conv2(relu2(bn2(conv1(relu1(bn1(x)))))): the pre-activation inside the body
    body.insert(body.begin(), pre.begin(), pre.end());
    return SequentialBlock{.layers = {named("", Residual{.body = body, .shortcut = {}, .body_name = ""})}};
  }
  // a = relu1(bn1(x)); conv2(relu2(bn2(conv1(a)))) + convShortcut(a). The branches' names "" add no level: their
  // layers are the block's own children.
  const Conv2d shortcut{.out_channels = out, .kernel_size = 1, .stride = stride, .bias = false};
  pre.push_back(named(
      "", Residual{.body = body, .shortcut = {named("convShortcut", shortcut)}, .body_name = "", .shortcut_name = ""}));
  return SequentialBlock{.layers = pre};
}

ModelSpec wide_resnet(int depth, int64_t widen, int64_t base, int64_t image) {
  const int64_t n = (depth - 4) / 6;
  const int64_t widths[] = {base, base * widen, 2 * base * widen, 4 * base * widen};
  std::vector<LayerSpec> layers = {
      named("conv1", Conv2d{.out_channels = base, .kernel_size = 3, .padding = 1, .bias = false})};
  for (int g = 0; g < 3; ++g) {
    SequentialBlock group;
    for (int64_t i = 0; i < n; ++i)
      group.layers.push_back(block(i == 0 ? widths[g] : widths[g + 1], widths[g + 1], i == 0 && g > 0 ? 2 : 1));
    layers.push_back(named("block" + std::to_string(g + 1), group));
  }
  for (LayerSpec l : {named("bn1", BatchNorm2d{}), named("relu", ReLU()), named("avgpool", GlobalAvgPool{}),
                      LayerSpec(Flatten{}), named("fc", Linear{.out_features = 10})})
    layers.push_back(l);
  return {.input = {3, image, image}, .parameterization = Parameterization::standard, .layers = layers};
}

int usage() {
  std::fprintf(stderr, "usage: wide_resnet [--depth 10 (6n + 4)] [--widen 2] [--base 4] [--image 16] %s\n",
               example::common_usage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int depth = 10;
  int64_t widen = 2, base = 4, image = 16;
  example::Options options;
  try {
    for (int i = 1; i < argc; i += 2) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) return usage();
      const std::string value = argv[i + 1];
      if (flag == "--depth")
        depth = std::stoi(value);
      else if (flag == "--widen")
        widen = std::stoll(value);
      else if (flag == "--base")
        base = std::stoll(value);
      else if (flag == "--image")
        image = std::stoll(value);
      else if (!example::common_option(flag, value, options))
        return usage();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wide_resnet: %s\n", e.what());
    return usage();
  }
  if (depth < 10 || (depth - 4) % 6 != 0 || widen < 1 || base < 1 || image < 1 ||
      (!options.perturb.empty() && options.check.empty()))
    return usage();
  try {
    Sequential<double> net(wide_resnet(depth, widen, base, image), options.seed);
    std::printf("WRN-%d-%lld, base width %lld, %lldx%lld images\n", depth, static_cast<long long>(widen),
                static_cast<long long>(base), static_cast<long long>(image), static_cast<long long>(image));
    return example::run(net, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wide_resnet: %s\n", e.what());
    return 1;
  }
}
