#pragma once
// A residual block: y = body(x) + shortcut(x), the shortcut the identity when absent (PyTorch: a module with
// `nn.Sequential` children `body` and `shortcut`).
/// NTK: the components of both branches; backward δ_x = δ_body(x) + δ_shortcut(x), each branch from the same δ_y.

#include <memory>

#include "nn/sequential.hpp"

namespace xntk::nn {

template <class T>
class ResidualLayer final : public Layer<T> {
 public:
  /// shortcut: null for the identity. The branches' output shapes must agree (xntk::Error naming the block).
  ResidualLayer(std::string path, Shape in, std::unique_ptr<SequentialLayer<T>> body,
                std::unique_ptr<SequentialLayer<T>> shortcut);

  std::string type() const override { return "residual"; }
  void for_each(const std::function<void(const Layer<T>&)>& f) const override;
  const T* forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const override;
  void sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const override;
  const T* tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in, const T* din,
                   int64_t batch, const Tangents<T>& dtheta) const override;

 private:
  std::unique_ptr<SequentialLayer<T>> body_, shortcut_;
};

/// d1 + d2 for deltas of `streams` rows per sample of `width` values over `batch` samples (either kind).
template <class T>
Delta<T> sum_deltas(Context<T>& cx, Delta<T>&& d1, Delta<T>&& d2, int64_t streams, int64_t width, int64_t batch);

}  // namespace xntk::nn
