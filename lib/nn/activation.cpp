#include "nn/activation.hpp"

#include <cmath>

namespace xntk::nn {

template <class T>
ActivationLayer<T>::ActivationLayer(std::string path, const Shape& in, const Activation& spec)
    : Leaf<T>(in, in, std::move(path)), spec_(spec) {
  const std::string where = "layer " + this->path_ + " (" + name(spec.kind) + ")";
  if (spec.kind == ActivationKind::gelu && spec.approximate != "none" && spec.approximate != "tanh")
    throw Error(where + ": approximate must be \"none\" or \"tanh\", got \"" + spec.approximate + "\"");
  if (spec.kind == ActivationKind::softplus && !(spec.beta > 0)) throw Error(where + ": beta must be positive");
  if (!std::isfinite(spec.negative_slope) || !std::isfinite(spec.alpha) || !std::isfinite(spec.threshold))
    throw Error(where + ": parameters must be finite");
}

template <class T>
void ActivationLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  cx.count(cx.ops().activation_forward(spec_, in, out, batch, this->in_size()));
}

template <class T>
Delta<T> ActivationLayer<T>::backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams,
                                      Delta<T>&& d, const T*) const {
  // φ'(z) differs per sample: shared deltas are written out per sample first; then in place
  d = expanded(cx, std::move(d), streams, this->out_size(), batch);
  cx.count(cx.ops().activation_backward(spec_, in, out, d.data(), d.rows.data(), batch, streams, this->in_size()));
  return std::move(d);
}

template class ActivationLayer<float>;
template class ActivationLayer<double>;

}  // namespace xntk::nn
