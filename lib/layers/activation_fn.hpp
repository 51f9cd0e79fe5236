#pragma once
// The value of each activation, written once as a template so the explicit path evaluates it on
// scalars and the autograd path on dual numbers. PyTorch's definitions (Softplus with its threshold,
// GELU in erf or tanh form, ReLU'(0) = 0).

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

}  // namespace xntk::detail
