#pragma once
// Elementwise activation y = φ(z).
/// NTK: no component; backward δ_z = φ'(z) ⊙ δ_y with φ' written by hand (ReLU'(0) = 0, as PyTorch).

#include "nn/layer.hpp"

namespace xntk::nn {

template <class T>
class ActivationLayer final : public Leaf<T> {
 public:
  ActivationLayer(std::string path, const Shape& in, const Activation& spec);

  std::string type() const override { return name(spec_.kind); }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  /// A ReLU's derivative is exactly 0 wherever its input is not positive: the layer above may skip those.
  const T* gate(const Values<T>&, const T* in) const override {
    return spec_.kind == ActivationKind::relu ? in : nullptr;
  }
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>&, const T* out, T* dout,
           int64_t batch) const override {
    // dy = φ'(z) ⊙ dz: the backward's product with one row per sample
    cx.count(cx.ops().activation_backward(spec_, in, out, din, dout, batch, 1, this->in_size()));
  }
  const Activation& spec() const { return spec_; }

 private:
  Activation spec_;
};

}  // namespace xntk::nn
