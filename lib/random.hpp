#pragma once
// Seeded, platform-independent random numbers for parameter initialisation (std's distributions are
// implementation-defined; the engine is not).

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>

namespace xntk::detail {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
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
};

}  // namespace xntk::detail
