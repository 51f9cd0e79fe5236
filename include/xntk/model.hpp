#pragma once
/// \file model.hpp
/// Sequential models: a list of layers on a fixed per-sample input shape, with PyTorch state_dict names.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xntk/layers.hpp"
#include "xntk/tensor.hpp"

namespace xntk {

/// How parameters enter the network (docs/maths.md §3).
enum class Parameterization {
  standard,  ///< PyTorch: c_w = c_b = 1; W, b ~ U(−1/√fan_in, 1/√fan_in)
  ntk        ///< W, b ~ N(0, 1); c_w = σ_w/√fan_in, c_b = σ_b
};

/// "standard" / "ntk".
const char* name(Parameterization p);

/// Architecture of a sequential model, independent of the scalar type.
struct ModelSpec {
  Shape input = {};  ///< per-sample input shape: (features) for MLPs, (C, H, W) for CNNs
  Parameterization parameterization = Parameterization::standard;
  std::vector<LayerSpec> layers = {};
};

/// A parameter (or buffer) tensor and its state_dict name ("3.weight").
template <class T>
struct NamedParameter {
  std::string name;
  Tensor<T>* tensor;
};

/// A sequential model on float or double. Output shapes are computed and validated layer by layer on
/// construction; a bad layer raises xntk::Error naming its index. Parameters are initialised from
/// `seed` (drawn in double, so Sequential<float> and Sequential<double> of one seed agree to rounding).
template <class T>
class Sequential {
 public:
  explicit Sequential(ModelSpec spec, uint64_t seed = 0);
  /// An independent copy: the same spec, parameters and buffers (PyTorch's copy.deepcopy of a module). Draws
  /// no random numbers: a copy of a 100 M-parameter MLP takes the time of copying it, not of initialising one.
  Sequential copy() const;
  ~Sequential();
  Sequential(Sequential&&) noexcept;
  Sequential& operator=(Sequential&&) noexcept;

  const ModelSpec& spec() const { return spec_; }
  const Shape& input_shape() const { return spec_.input; }
  /// Per-sample output shape of the whole model.
  const Shape& output_shape() const;
  /// Number of outputs O (the product of the output shape).
  int64_t outputs() const;
  /// Number of top-level layers (a block counts as one).
  int num_layers() const;
  /// Per-sample output shape of top-level layer i.
  const Shape& layer_output_shape(int i) const;

  /// Parameters in state_dict order (layer order, weight before bias).
  std::vector<NamedParameter<T>> named_parameters() const;
  /// The parameter called `name`; xntk::Error if there is none.
  Tensor<T>& parameter(std::string_view name) const;
  /// Buffers in state_dict order: values the weights file sets that are not parameters and have no NTK
  /// component (BatchNorm's running_mean, running_var and num_batches_tracked).
  std::vector<NamedParameter<T>> named_buffers() const;
  /// The buffer called `name`; xntk::Error if there is none.
  Tensor<T>& buffer(std::string_view name) const;
  /// Total number of scalar parameters.
  int64_t num_parameters() const;
  /// The multipliers (c_w, c_b) of top-level layer i (1 and 1 under `standard`, 0 for layers without
  /// parameters and for blocks).
  std::pair<double, double> multipliers(int i) const;
  /// Component names in component order: the parameters' state_dict names, outermost layer first, weight
  /// before bias within each layer (torchntk.explicit's order).
  const std::vector<std::string>& component_names() const;

  /// Forward pass on a batch (N, input...) -> (N, output...).
  Tensor<T> forward(TensorRef<T> x) const;

  /// The computing layers (opaque: for the library's own drivers).
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  Sequential(ModelSpec spec, uint64_t seed, bool draw);
  ModelSpec spec_;
  std::unique_ptr<Impl> impl_;
};

extern template class Sequential<float>;
extern template class Sequential<double>;

/// The number of samples of a batch shaped `batch` for a model whose input is `input`: the batch must be
/// (N, input...) with N ≥ 1. xntk::Error starting with `what` (e.g. "x1" or "x.npy (--x1)") otherwise, naming
/// both shapes and the expected one, its sample axis spelled `samples` ("N", "M"). The one check the library
/// and the command line share.
int64_t check_batch(const Shape& input, const Shape& batch, const std::string& what, const std::string& samples = "N");

/// The vector-Jacobian product with respect to the parameters: for a batch x (N, input...) and a cotangent c
/// of the output's shape (N, output...), Σ_n (∂f(x_n)/∂θ)ᵀ c_n for every parameter θ, named and ordered as
/// the state_dict. With c = ∂L/∂f it is the gradient of a loss L. Computed by the layers' own backward and
/// gradient formulas (never the autograd path). xntk::Error if x or c has the wrong shape.
template <class T>
std::vector<NamedTensor<T>> gradient(const Sequential<T>& model, TensorArg<T> x, TensorArg<T> cotangent);

/// The Jacobian-vector product with respect to the parameters: Σ_θ (∂f(x_n)/∂θ) v_θ for each sample, shaped
/// (N, output...), for tangents v named as the state_dict (a parameter not named has a zero tangent).
/// Computed by the layers' own forward-mode formulas. xntk::Error for a name that is not a parameter or a
/// tangent of another shape than its parameter.
template <class T>
Tensor<T> jvp(const Sequential<T>& model, TensorArg<T> x, const std::vector<NamedTensor<T>>& tangents);

}  // namespace xntk
