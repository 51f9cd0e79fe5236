#pragma once
// The value of each activation, written once as a template so the explicit path evaluates it on
// scalars and the autograd path on dual numbers; and the explicit path's hand-written derivatives, which
// the autograd path never uses (it differentiates the value function). PyTorch's definitions (Softplus
// with its threshold, GELU in erf or tanh form, ReLU'(0) = 0).

#include <cmath>
#include <numbers>

#include "autograd/dual.hpp"
#include "xntk/layers.hpp"

namespace xntk::detail {

template <class T, class S>
S activation_value(const Activation& a, S z) {
  using autograd::value_of;
  using std::erf;
  using std::exp;
  using std::log1p;
  using std::tanh;
  const T one(1), half(0.5);
  switch (a.kind) {
    case ActivationKind::relu: return value_of(z) > T(0) ? z : z * T(0);
    case ActivationKind::leaky_relu: return value_of(z) > T(0) ? z : z * T(a.negative_slope);
    case ActivationKind::tanh: return tanh(z);
    case ActivationKind::sigmoid: return one / (one + exp(-z));
    case ActivationKind::gelu:
      if (a.approximate == "tanh") {
        const T k = std::sqrt(T(2) / std::numbers::pi_v<T>);
        return half * z * (one + tanh(k * (z + T(0.044715) * z * z * z)));
      }
      return half * z * (one + erf(z * T(std::numbers::sqrt2 / 2)));
    case ActivationKind::erf: return erf(z);
    case ActivationKind::softplus: {
      const T beta(a.beta);
      if (value_of(z) * beta > T(a.threshold)) return z;
      return log1p(exp(z * beta)) / beta;
    }
    case ActivationKind::silu: return z / (one + exp(-z));
    case ActivationKind::elu: return value_of(z) > T(0) ? z : T(a.alpha) * (exp(z) - one);
    case ActivationKind::identity: return z;
  }
  return z;
}

/// Calls visit(d) once, with d(z, y) = φ'(z) for a's kind given z and y = φ(z): the kind is chosen outside
/// the caller's loop, so that a loop over d for the simple kinds (ReLU, tanh) vectorises.
template <class T, class Visit>
void with_derivative(const Activation& a, Visit&& visit) {
  const T one(1);
  switch (a.kind) {
    case ActivationKind::relu: return visit([one](T x, T) { return x > T(0) ? one : T(0); });
    case ActivationKind::leaky_relu: {
      const T slope(a.negative_slope);
      return visit([one, slope](T x, T) { return x > T(0) ? one : slope; });
    }
    case ActivationKind::tanh: return visit([one](T, T v) { return one - v * v; });
    case ActivationKind::sigmoid: return visit([one](T, T v) { return v * (one - v); });
    case ActivationKind::gelu:
      if (a.approximate == "tanh") {
        const T k = std::sqrt(T(2) / std::numbers::pi_v<T>), c = T(0.044715);
        return visit([one, k, c](T x, T) {
          const T t = std::tanh(k * (x + c * x * x * x));
          return T(0.5) * (one + t) + T(0.5) * x * (one - t * t) * k * (one + T(3) * c * x * x);
        });
      }
      return visit([one](T x, T) {
        const T cdf = T(0.5) * (one + std::erf(x * T(std::numbers::sqrt2 / 2)));
        const T pdf = std::exp(T(-0.5) * x * x) * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
        return cdf + x * pdf;
      });
    case ActivationKind::erf: return visit([](T x, T) { return T(2 * std::numbers::inv_sqrtpi) * std::exp(-x * x); });
    case ActivationKind::softplus: {
      const T beta(a.beta), threshold(a.threshold);
      return visit([one, beta, threshold](T x, T) {
        const T bx = x * beta;
        return bx > threshold ? one : one / (one + std::exp(-bx));
      });
    }
    case ActivationKind::silu:
      return visit([one](T x, T) {
        const T s = one / (one + std::exp(-x));
        return s * (one + x * (one - s));
      });
    case ActivationKind::elu: {
      const T alpha(a.alpha);
      return visit([one, alpha](T x, T) { return x > T(0) ? one : alpha * std::exp(x); });
    }
    case ActivationKind::identity: return visit([one](T, T) { return one; });
  }
}

}  // namespace xntk::detail
