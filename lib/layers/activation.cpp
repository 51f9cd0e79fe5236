#include "layers/activation.hpp"

#include <cmath>
#include <numbers>
#include <type_traits>
#include <vector>

#include "autograd/tape.hpp"
#include "cpu/backend.hpp"
#include "cpu/fast_math.hpp"
#include "cpu/grain.hpp"
#include "layers/activation_fn.hpp"

namespace xntk::detail {

template <class T>
ActivationLayer<T>::ActivationLayer(int index, const Shape& in, const Activation& spec)
    : Layer<T>(index, in, in), spec_(spec) {
  const std::string where = "layer " + std::to_string(index) + " (" + name(spec.kind) + ")";
  if (spec.kind == ActivationKind::gelu && spec.approximate != "none" && spec.approximate != "tanh")
    throw Error(where + ": approximate must be \"none\" or \"tanh\", got \"" + spec.approximate + "\"");
  if (spec.kind == ActivationKind::softplus && !(spec.beta > 0)) throw Error(where + ": beta must be positive");
  if (!std::isfinite(spec.negative_slope) || !std::isfinite(spec.alpha) || !std::isfinite(spec.threshold))
    throw Error(where + ": parameters must be finite");
}

template <class T>
void ActivationLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  const int64_t n = this->in_size();
  if constexpr (std::is_same_v<T, float>) {
    if (spec_.kind == ActivationKind::tanh) {  // vectorised, rounded once from double
      parallel_for_work(batch, 8.0 * static_cast<double>(n), [&](int64_t b) {
        const float* __restrict src = in + b * n;
        float* __restrict dst = out + b * n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) dst[i] = tanh_float(src[i]);
      });
      return;
    }
  }
  parallel_for_work(batch, 8.0 * static_cast<double>(n), [&](int64_t b) {
    for (int64_t i = b * n; i < (b + 1) * n; ++i) out[i] = activation_value<T>(spec_, in[i]);
  });
}

template <class T>
T ActivationLayer<T>::derivative(T z, T y) const {
  const T one(1);
  switch (spec_.kind) {
    case ActivationKind::relu: return z > T(0) ? one : T(0);
    case ActivationKind::leaky_relu: return z > T(0) ? one : T(spec_.negative_slope);
    case ActivationKind::tanh: return one - y * y;
    case ActivationKind::sigmoid: return y * (one - y);
    case ActivationKind::gelu: {
      if (spec_.approximate == "tanh") {
        const T k = std::sqrt(T(2) / std::numbers::pi_v<T>), c = T(0.044715);
        const T t = std::tanh(k * (z + c * z * z * z));
        return T(0.5) * (one + t) + T(0.5) * z * (one - t * t) * k * (one + T(3) * c * z * z);
      }
      const T cdf = T(0.5) * (one + std::erf(z * T(std::numbers::sqrt2 / 2)));
      const T pdf = std::exp(T(-0.5) * z * z) * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
      return cdf + z * pdf;
    }
    case ActivationKind::erf: return T(2 * std::numbers::inv_sqrtpi) * std::exp(-z * z);
    case ActivationKind::softplus: {
      const T bz = z * T(spec_.beta);
      if (bz > T(spec_.threshold)) return one;
      return one / (one + std::exp(-bz));
    }
    case ActivationKind::silu: {
      const T s = one / (one + std::exp(-z));
      return s * (one + z * (one - s));
    }
    case ActivationKind::elu: return z > T(0) ? one : T(spec_.alpha) * std::exp(z);
    case ActivationKind::identity: return one;
  }
  return one;
}

template <class T>
void ActivationLayer<T>::backward(const T* in, const T* out, const T* dout, T* din, int64_t batch,
                                  int64_t streams) const {
  const int64_t n = this->in_size();
  parallel_for_work(batch, static_cast<double>(n * (8 + streams)), [&](int64_t b) {
    thread_local std::vector<T> buffer;
    buffer.resize(static_cast<size_t>(n));
    T* __restrict d = buffer.data();
    const T* z = in + b * n;
    const T* y = out + b * n;
    // the common kinds as plain (vectorisable) loops, the rest through derivative()
    if (spec_.kind == ActivationKind::relu) {
      for (int64_t i = 0; i < n; ++i) d[i] = z[i] > T(0) ? T(1) : T(0);
    } else if (spec_.kind == ActivationKind::tanh) {
      for (int64_t i = 0; i < n; ++i) d[i] = T(1) - y[i] * y[i];
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = derivative(z[i], y[i]);
    }
    for (int64_t s = 0; s < streams; ++s) {
      const int64_t row = (b * streams + s) * n;
      for (int64_t i = 0; i < n; ++i) din[row + i] = d[i] * dout[row + i];
    }
  });
}

template <class T>
double ActivationLayer<T>::backward_flops(int64_t batch, int64_t streams) const {
  return static_cast<double>(batch * streams * this->in_size());
}

template <class T>
int ActivationLayer<T>::record(autograd::Tape<T>& tape, int in, int) const {
  return tape.activation(in, spec_);
}

template class ActivationLayer<float>;
template class ActivationLayer<double>;

}  // namespace xntk::detail
