#pragma once
// Flatten (x.flatten(1)): a C-order sample is already its own flattening, so only the shape changes.
/// NTK: no component; backward δ_a = δ_y (a copy under the input's shape).

#include "layer.hpp"

namespace xntk::detail {

template <class T>
class FlattenLayer final : public Layer<T> {
 public:
  FlattenLayer(int index, const Shape& in) : Layer<T>(index, in, {numel(in)}) {}

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  bool input_independent_backward() const override { return true; }
  bool in_place_backward() const override { return true; }
  double forward_flops(int64_t) const override { return 0; }
  double backward_flops(int64_t, int64_t) const override { return 0; }
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;
};

}  // namespace xntk::detail
