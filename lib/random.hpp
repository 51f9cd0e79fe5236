#pragma once
// Seeded, platform-independent random numbers for parameter initialisation (std's distributions are
// implementation-defined; the engine is not).

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <utility>

#include "xntk/model.hpp"

namespace xntk::detail {

class Rng {
 public:
  /// `draw` false: initialize() leaves the parameters as they are (zero) and draws nothing (Sequential::copy,
  /// which overwrites them).
  explicit Rng(uint64_t seed, bool draw = true) : engine_(seed), draw_(draw) {}
  bool draws() const { return draw_; }
  /// U[0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  /// U[lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// N(0, 1) by Box–Muller.
  double normal() {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 engine_;
  bool draw_;
};

/// Draws a layer's weight then bias (either may be empty) in its parameterisation and returns (c_w, c_b):
/// `standard` U(−1/√fan_in, 1/√fan_in) with multipliers 1; `ntk` N(0, 1) with c_w = σ_w/√fan_in, c_b = σ_b.
template <class Tensor>
std::pair<double, double> initialize(Tensor& weight, Tensor& bias, double fan_in, Parameterization p, double w_std,
                                     double b_std, Rng& rng) {
  using T = typename Tensor::value_type;
  if (p == Parameterization::standard) {
    if (!rng.draws()) return {1.0, 1.0};
    const double bound = 1.0 / std::sqrt(fan_in);
    for (int64_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<T>(rng.uniform(-bound, bound));
    for (int64_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<T>(rng.uniform(-bound, bound));
    return {1.0, 1.0};
  }
  if (rng.draws()) {
    for (int64_t i = 0; i < weight.size(); ++i) weight[i] = static_cast<T>(rng.normal());
    for (int64_t i = 0; i < bias.size(); ++i) bias[i] = static_cast<T>(rng.normal());
  }
  return {w_std / std::sqrt(fan_in), b_std};
}

}  // namespace xntk::detail
