#pragma once
// Vectorisable elementwise functions for the hot loops. glibc's tanhf costs ~17 ns a call and does not
// vectorise; on a 1000-sample tanh MLP it was a tenth of the whole kernel computation.

#include <bit>
#include <cmath>
#include <cstdint>

namespace xntk::backend::cpu {

/// tanh of a float, evaluated in double and rounded once: it equals (float)std::tanh((double)x) for
/// every float checked (all of [0, 12] exhaustively during development; tests check a grid). Written
/// without branches or calls so that a `#pragma omp simd` loop over it vectorises.
inline float tanh_float(float xf) {
  const double x = xf, ax = std::fabs(x), x2 = x * x;
  // |x| < 2⁻⁶: the odd Taylor series to x⁷ (the next term is below 1e-16 relative)
  const double small = x * (1.0 + x2 * (-1.0 / 3 + x2 * (2.0 / 15 + x2 * (-17.0 / 315))));
  // otherwise (1 − e) / (1 + e) with e = exp(−2|x|) = 2^k · exp(r), |r| ≤ ln2 / 2: Taylor to r¹¹
  // (relative error < 1e-13, so the float rounding is decided correctly but for ties closer than that)
  double y = -2.0 * ax;
  y = y < -80.0 ? -80.0 : y;  // tanh is ±1 in float long before; NaN stays NaN
  // k = round(y / ln2) by adding 1.5·2⁵²: its low mantissa bits then hold k as an integer
  const double shifted = y * 1.4426950408889634 + 6755399441055744.0;
  const double k = shifted - 6755399441055744.0;
  const double r = (y - k * 0.6931471805598903) - k * 5.497923018708371e-14;  // ln2 in two parts
  double p = 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const double e = p * std::bit_cast<double>((std::bit_cast<uint64_t>(shifted) + 1023) << 52);
  const double large = std::copysign((1.0 - e) / (1.0 + e), x);
  return static_cast<float>(ax < 0.015625 ? small : large);
}

}  // namespace xntk::backend::cpu
