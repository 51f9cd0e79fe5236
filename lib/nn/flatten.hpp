#pragma once
// Flatten (x.flatten(1)): a C-order sample is already its own flattening, so only the shape changes.
/// NTK: no component; backward δ_a = δ_y (the same rows under the input's shape).

#include "nn/layer.hpp"

namespace xntk::nn {

template <class T>
class FlattenLayer final : public Leaf<T> {
 public:
  FlattenLayer(std::string path, const Shape& in) : Leaf<T>(in, {numel(in)}, std::move(path)) {}

  std::string type() const override { return "flatten"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override {
    cx.ops().copy(batch * this->in_size(), in, out);
  }
  Delta<T> backward(Context<T>&, const T*, const T*, int64_t, int64_t, Delta<T>&& d, const T*) const override {
    return std::move(d);
  }
  void jvp(Context<T>& cx, const T*, const T* din, const std::vector<const T*>&, const T*, T* dout,
           int64_t batch) const override {
    cx.ops().copy(batch * this->in_size(), din, dout);
  }
};

}  // namespace xntk::nn
