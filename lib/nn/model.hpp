#pragma once
// What a Sequential model holds: its layer tree and the lists the drivers read off it.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/sequential.hpp"

namespace xntk {

template <class T>
struct Sequential<T>::Impl {
  std::unique_ptr<nn::SequentialLayer<T>> root;
  int nodes = 0;
  /// Leaves with parameters in state_dict order.
  std::vector<const nn::Leaf<T>*> owners;
  /// Leaves with buffers in state_dict order.
  std::vector<const nn::Leaf<T>*> buffer_owners;
  /// Component names in component order: the owners reversed, weight before bias within each.
  std::vector<std::string> component_names;
};

namespace nn {

/// The model's layer tree.
template <class T>
const SequentialLayer<T>& root(const Sequential<T>& model) {
  return *model.impl().root;
}

/// The model's top-level layer i as a leaf (xntk::Error if it is a block or out of range).
template <class T>
const Leaf<T>& top_leaf(const Sequential<T>& model, int i) {
  const auto& c = root(model).children();
  if (i < 0 || static_cast<size_t>(i) >= c.size() || !c[static_cast<size_t>(i)]->leaf())
    throw Error("model: layer " + std::to_string(i) + " is not a leaf layer");
  return *c[static_cast<size_t>(i)]->leaf();
}

}  // namespace nn

namespace detail {

/// xntk::gradient from the forward pass it runs anyway: `cotangent_of` receives the outputs f(x) (n × the output
/// shape; it may change them) and returns a view of ∂L/∂f, of that shape and valid until this returns, whose
/// parameter cotangent is returned. A training step's loss needs f(x) and its gradient one forward pass, not two.
template <class T>
std::vector<NamedTensor<T>> value_and_gradient(const Sequential<T>& model, TensorArg<T> x,
                                               const std::function<TensorRef<T>(Tensor<T>&)>& cotangent_of);

}  // namespace detail
}  // namespace xntk
