#pragma once
// A sequence of layers, as torch.nn.Sequential: the model itself and any nested sequential block. Its
// output is its last child's (no copy); its parameters are named "<path>.<i>.…" after the children's index.
/// NTK: the sum of its children's components; backward through the children in reverse.

#include <memory>
#include <vector>

#include "nn/layer.hpp"

namespace xntk::nn {

template <class T>
class SequentialLayer final : public Layer<T> {
 public:
  /// children: at least one, each taking the previous one's output shape.
  SequentialLayer(std::string path, Shape in, std::vector<std::unique_ptr<Layer<T>>> children);

  std::string type() const override { return "sequential"; }
  void for_each(const std::function<void(const Layer<T>&)>& f) const override;
  const T* forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const override;
  const T* gate(const Values<T>& values, const T* in) const override;
  void sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const override;
  const T* tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in, const T* din,
                   int64_t batch, const Tangents<T>& dtheta) const override;

  const std::vector<std::unique_ptr<Layer<T>>>& children() const { return children_; }

 private:
  std::vector<std::unique_ptr<Layer<T>>> children_;
  int first_with_parameters_;  // the lowest child that has parameters (children_.size() if none)
};

}  // namespace xntk::nn
