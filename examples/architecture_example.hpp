#pragma once
// What examples/myrtle5.cpp and examples/wide_resnet.cpp share, on the public API only: their common options, the
// demo (the kernel Θ(X, X) of random or given images with its components, each component's share of the trace, the
// condition number from xntk::analyze, the time taken) and `--check DIR`, which loads a conformance fixture's
// weights and inputs into the network the example built and compares the kernel and every component with the ones
// functorch computed (tests/conformance/make_fixtures.py).
//
// Common options: [--samples N] [--x1 IMAGES.npy] [--mode trace|full|diagonal] [--seed S] [--threads T]
//                 [--check FIXTURE_DIR [--perturb PARAMETER]]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>
#include <xntk/xntk.hpp>

namespace example {

struct Options {
  int64_t samples = 20;  ///< random images when no --x1
  std::string x1;        ///< images (N, C, H, W) as .npy; empty: random
  xntk::Mode mode = xntk::Mode::trace;
  uint64_t seed = 0;    ///< the weights' seed (the random images use seed + 1)
  int threads = 0;      ///< 0: OpenMP's default
  std::string check;    ///< a conformance fixture's directory: compare instead of the demo
  std::string perturb;  ///< --check: a parameter whose first element is changed by 1e-6 after loading
};

constexpr const char* common_usage =
    "[--samples N] [--x1 IMAGES.npy] [--mode trace|full|diagonal] [--seed S] [--threads T] "
    "[--check FIXTURE_DIR [--perturb PARAMETER]]";

/// Takes one common option and its value; false if `flag` is not one of them. std::exception for a bad value.
inline bool common_option(const std::string& flag, const std::string& value, Options& o) {
  if (flag == "--samples") {
    o.samples = std::stoll(value);
    if (o.samples < 1) throw std::invalid_argument("--samples: expected at least 1");
  } else if (flag == "--x1") {
    o.x1 = value;
  } else if (flag == "--mode") {
    if (value == "trace")
      o.mode = xntk::Mode::trace;
    else if (value == "full")
      o.mode = xntk::Mode::full;
    else if (value == "diagonal")
      o.mode = xntk::Mode::diagonal;
    else
      throw std::invalid_argument("--mode: expected trace, full or diagonal, got \"" + value + "\"");
  } else if (flag == "--seed") {
    o.seed = std::stoull(value);
  } else if (flag == "--threads") {
    o.threads = std::stoi(value);
  } else if (flag == "--check") {
    o.check = value;
  } else if (flag == "--perturb") {
    o.perturb = value;
  } else {
    return false;
  }
  return true;
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// max|a − b| / max|b|, the error relative to the reference's scale (entries that cancel to ~0, such as
/// off-diagonal output pairs, make elementwise relative errors meaningless); infinite for different shapes.
inline double relative_error(const xntk::Tensor<double>& a, const xntk::Tensor<double>& b) {
  if (a.shape() != b.shape()) return INFINITY;
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

/// `--check DIR`: the fixture's weights (names and shapes must be exactly the network's state_dict), x1 and x2
/// (when present), the mode from the rank of expected.npy; exit code 0 when the total and every component, in
/// order and by name, match functorch's to 1e-10 relative. Both sides are float64 computations of one quantity
/// that differ only in the order of their sums (about 1e-15 seen), while a wrong layer, weight or formula moves a
/// component by far more (a 1e-6 change of one weight: --perturb).
inline int check(xntk::Sequential<double>& net, const Options& o) {
  namespace fs = std::filesystem;
  const fs::path dir = o.check;
  xntk::load_weights(net, (dir / "weights.safetensors").string());
  if (!o.perturb.empty()) net.parameter(o.perturb)[0] *= 1 + 1e-6;
  const auto x1 = xntk::read_npy<double>((dir / "x1.npy").string());
  const bool has_x2 = fs::exists(dir / "x2.npy");
  const auto expected = xntk::read_npy<double>((dir / "expected.npy").string());
  const auto want = xntk::read_safetensors<double>((dir / "components.safetensors").string());
  const xntk::Mode mode = expected.rank() == 4   ? xntk::Mode::full
                          : expected.rank() == 3 ? xntk::Mode::diagonal
                                                 : xntk::Mode::trace;
  const xntk::KernelOptions options{.mode = mode, .components = true, .threads = o.threads};
  const auto t0 = std::chrono::steady_clock::now();
  const auto k = has_x2 ? xntk::ntk(net, x1, xntk::read_npy<double>((dir / "x2.npy").string()), options)
                        : xntk::ntk(net, x1, options);
  std::printf("checking against %s: %s kernel %s, %zu components (%.3f s)\n", dir.string().c_str(), xntk::name(mode),
              xntk::to_string(k.total.shape()).c_str(), k.names.size(), seconds_since(t0));

  constexpr double tolerance = 1e-10;
  double worst = 0;
  bool ok = true;
  auto compare = [&](const std::string& what, const xntk::Tensor<double>& got, const xntk::Tensor<double>& ref) {
    const double e = relative_error(got, ref);
    std::printf("  %-40s relative error %.3e%s\n", what.c_str(), e, e <= tolerance ? "" : "  MISMATCH");
    worst = std::max(worst, e);
    ok = ok && e <= tolerance;  // false for NaN too
  };
  compare("total (expected.npy)", k.total, expected);
  // components.safetensors: the components in component order, then "total"
  if (want.size() != k.names.size() + 1) {
    std::printf("FAILED: %zu components, the fixture has %zu\n", k.names.size(), want.size() - 1);
    return 1;
  }
  for (size_t i = 0; i < k.names.size(); ++i) {
    if (k.names[i] != want[i].name) {
      std::printf("FAILED: component %zu is \"%s\", the fixture's is \"%s\"\n", i, k.names[i].c_str(),
                  want[i].name.c_str());
      return 1;
    }
    compare(k.names[i], k.components[i], want[i].tensor);
  }
  std::printf("largest relative error %.3e (tolerance %.0e)\n", worst, tolerance);
  if (!ok) {
    std::printf("FAILED: the kernel differs from functorch's\n");
    return 1;
  }
  std::printf("OK\n");
  return 0;
}

/// The demo: Θ(X, X) with its components on --x1's images or random ones, the shares of the trace, the spectrum.
inline int demo(const xntk::Sequential<double>& net, const Options& o) {
  xntk::Tensor<double> x;
  if (o.x1.empty()) {
    xntk::Shape shape = net.input_shape();
    shape.insert(shape.begin(), o.samples);
    x = xntk::Tensor<double>(shape);
    std::mt19937_64 g(o.seed + 1);
    std::normal_distribution<double> d;
    for (int64_t i = 0; i < x.size(); ++i) x[i] = d(g);
  } else {
    x = xntk::read_npy<double>(o.x1);
    xntk::check_batch(net.input_shape(), x.shape(), o.x1 + " (--x1)");
  }
  std::printf("%lld parameters, output %s; %lld %s images %s\n", static_cast<long long>(net.num_parameters()),
              xntk::to_string(net.output_shape()).c_str(), static_cast<long long>(x.dim(0)),
              o.x1.empty() ? "random" : "given", xntk::to_string(net.input_shape()).c_str());

  const auto t0 = std::chrono::steady_clock::now();
  const auto k = xntk::ntk(net, x, {.mode = o.mode, .components = true, .threads = o.threads});
  const double s = seconds_since(t0);
  std::printf("%s kernel %s in %.3f s (%.3f GFLOP, %.2f GFLOP/s)\n", xntk::name(o.mode),
              xntk::to_string(k.total.shape()).c_str(), s, k.flops / 1e9, k.flops / 1e9 / std::max(s, 1e-9));

  const auto a = xntk::analyze(k);
  std::printf("trace %.6e; each component's share of it:\n", a.spectrum.trace);
  for (const auto& c : a.components) std::printf("  %-40s %8.4f%%\n", c.name.c_str(), 100 * c.share);
  if (a.spectrum.positive_definite)
    std::printf("condition number λmax/λmin = %.6e (λmax %.6e, λmin %.6e)\n", a.spectrum.condition,
                a.spectrum.lambda_max, a.spectrum.lambda_min);
  else
    std::printf("condition number: infinite (%s)\n", a.spectrum.note.c_str());
  std::printf("effective rank %.3f of %lld\n", a.spectrum.effective_rank,
              static_cast<long long>(a.spectrum.eigenvalues.size()));
  return 0;
}

/// --check or the demo.
inline int run(xntk::Sequential<double>& net, const Options& o) {
  return o.check.empty() ? demo(net, o) : check(net, o);
}

}  // namespace example
