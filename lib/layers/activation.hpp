#pragma once
// Elementwise activation y = φ(z).
/// NTK: no component; backward δ_z = φ'(z) ⊙ δ_y with φ' written by hand (ReLU'(0) = 0, as PyTorch).

#include "layer.hpp"

namespace xntk::detail {

template <class T>
class ActivationLayer final : public Layer<T> {
 public:
  ActivationLayer(int index, const Shape& in, const Activation& spec);

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  double backward_flops(int64_t batch, int64_t streams) const override;
  bool in_place_backward() const override { return true; }
  bool gates_below_zero() const override { return spec_.kind == ActivationKind::relu; }
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;

  /// d[i] = φ'(z[i]) given z and y = φ(z), for n values.
  void derivatives(const T* z, const T* y, T* __restrict d, int64_t n) const;

 private:
  Activation spec_;
};

}  // namespace xntk::detail
