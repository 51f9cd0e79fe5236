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
  if (spec_.kind == ActivationKind::relu || spec_.kind == ActivationKind::leaky_relu) {
    // A branch-free loop that vectorises: the per-element switch below mispredicted on about every
    // other sign. The same expression as activation_value (slope 0 for ReLU, so NaN stays NaN), so the
    // explicit and autograd paths still agree bit for bit.
    const T slope = spec_.kind == ActivationKind::relu ? T(0) : T(spec_.negative_slope);
    parallel_for_work(batch, 2.0 * static_cast<double>(n), [&](int64_t b) {
      const T* __restrict src = in + b * n;
      T* __restrict dst = out + b * n;
      const T s = slope;  // a local: read through the closure, GCC reloaded it per element and did not vectorise
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i] > T(0) ? src[i] : src[i] * s;
    });
    return;
  }
  parallel_for_work(batch, 8.0 * static_cast<double>(n), [&](int64_t b) {
    for (int64_t i = b * n; i < (b + 1) * n; ++i) out[i] = activation_value<T>(spec_, in[i]);
  });
}

template <class T>
void ActivationLayer<T>::derivatives(const T* z, const T* y, T* __restrict d, int64_t n) const {
  const T one(1);
  // one loop per kind, the switch outside it, so that the simple kinds (ReLU, tanh) vectorise
  auto fill = [&](auto f) {
    for (int64_t i = 0; i < n; ++i) d[i] = f(z[i], y[i]);
  };
  switch (spec_.kind) {
    case ActivationKind::relu: return fill([&](T x, T) { return x > T(0) ? one : T(0); });
    case ActivationKind::leaky_relu: {
      const T slope(spec_.negative_slope);
      return fill([&](T x, T) { return x > T(0) ? one : slope; });
    }
    case ActivationKind::tanh: return fill([&](T, T v) { return one - v * v; });
    case ActivationKind::sigmoid: return fill([&](T, T v) { return v * (one - v); });
    case ActivationKind::gelu:
      if (spec_.approximate == "tanh") {
        const T k = std::sqrt(T(2) / std::numbers::pi_v<T>), c = T(0.044715);
        return fill([&](T x, T) {
          const T t = std::tanh(k * (x + c * x * x * x));
          return T(0.5) * (one + t) + T(0.5) * x * (one - t * t) * k * (one + T(3) * c * x * x);
        });
      }
      return fill([&](T x, T) {
        const T cdf = T(0.5) * (one + std::erf(x * T(std::numbers::sqrt2 / 2)));
        const T pdf = std::exp(T(-0.5) * x * x) * T(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
        return cdf + x * pdf;
      });
    case ActivationKind::erf: return fill([&](T x, T) { return T(2 * std::numbers::inv_sqrtpi) * std::exp(-x * x); });
    case ActivationKind::softplus: {
      const T beta(spec_.beta), threshold(spec_.threshold);
      return fill([&](T x, T) {
        const T bx = x * beta;
        return bx > threshold ? one : one / (one + std::exp(-bx));
      });
    }
    case ActivationKind::silu:
      return fill([&](T x, T) {
        const T s = one / (one + std::exp(-x));
        return s * (one + x * (one - s));
      });
    case ActivationKind::elu: {
      const T alpha(spec_.alpha);
      return fill([&](T x, T) { return x > T(0) ? one : alpha * std::exp(x); });
    }
    case ActivationKind::identity: return fill([&](T, T) { return one; });
  }
}

template <class T>
void ActivationLayer<T>::backward(const T* in, const T* out, const T* dout, T* din, int64_t batch,
                                  int64_t streams) const {
  const int64_t n = this->in_size();
  parallel_for_work(batch, static_cast<double>(n * (8 + streams)), [&](int64_t b) {
    thread_local std::vector<T> buffer;
    buffer.resize(static_cast<size_t>(n));
    const T* d = buffer.data();
    derivatives(in + b * n, out + b * n, buffer.data(), n);
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
