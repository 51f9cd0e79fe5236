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

/// Samples below which a slice of a batch is not worth a thread of its own in value_and_gradient.
inline constexpr int64_t kMinShardSamples = 8;
/// Parameter bytes above which value_and_gradient keeps the batch whole. Every slice reads all the weights
/// and writes, zeroes and sums a whole gradient, and a large model's layers are large operations that
/// parallelise well inside. On a 2-core Xeon (docs/design.md, 2 slices against 1, alternating) a
/// training step of a 784-1000-1000-10 MLP (7.2 MB of float32 parameters) was 1.02–1.23× slower in 9 of
/// 10 pairs; the tutorial CNN's (0.95 MB) 0.95–1.14× (median 0.98); the notebook run's 30-500-1 MLP
/// (62 KB) 0.74–0.97× its time.
inline constexpr double kMaxShardParameterBytes = 4 << 20;

/// The slices value_and_gradient cuts a batch of n samples into on `threads` threads, for a model of
/// `parameter_bytes` bytes of parameters: min(threads, n / kMinShardSamples), at least 1, or 1 above
/// kMaxShardParameterBytes. Each slice runs its forward pass and backward sweep on one thread (the layers
/// single-threaded inside), and the slices' parameter cotangents are summed in slice order: for a small
/// model one parallel region per pass costs far less than one per layer operation.
int gradient_shards(int64_t n, int threads, double parameter_bytes);

/// xntk::gradient from the forward pass it runs anyway: `cotangent_of` receives the outputs f(x) (n × the output
/// shape; it may change them) and returns a view of ∂L/∂f, of that shape and valid until this returns, whose
/// parameter cotangent is returned. A training step's loss needs f(x) and its gradient one forward pass, not two.
/// The batch runs in gradient_shards(n, threads) slices at once; `cotangent_of` is called once, on the
/// calling thread, with the whole batch's outputs.
/// The parameter cotangents are written into `grads`: into the tensors it holds where their names and shapes are
/// the model's parameters' (zeroed in place first), otherwise into new ones it is given. A training loop that
/// keeps `grads` from step to step maps no fresh pages for them (at the lazy-training study's width 10000, 800 MB
/// of float64 a step, which the kernel zeroed before the step could: 3× the rest of the step's time).
template <class T>
void value_and_gradient(const Sequential<T>& model, TensorArg<T> x,
                        const std::function<TensorRef<T>(Tensor<T>&)>& cotangent_of,
                        std::vector<NamedTensor<T>>& grads);

/// xntk::jvp, and the model's outputs f(x) from the same forward pass into `primal` if given (the linearised
/// network's f(x; θ₀) + J(x; θ₀)·δθ needs both: a second forward pass was one more read of θ₀ per step).
template <class T>
Tensor<T> jvp(const Sequential<T>& model, TensorArg<T> x, const std::vector<NamedTensor<T>>& tangents,
              Tensor<T>* primal);

}  // namespace detail
}  // namespace xntk
