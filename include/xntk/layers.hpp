#pragma once
/// \file layers.hpp
/// Layer descriptions (scalar-type free), with PyTorch's argument names and defaults. A model is a
/// list of these; `Sequential<T>` turns them into computing layers. Notation of docs/maths.md:
/// a = layer input, δ_o = ∂f_o/∂y (y = layer output), ⟨·,·⟩ = dot product, c_w / c_b = the
/// parameterisation's weight and bias multipliers (1 for `standard`).

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace xntk {

/// `torch.nn.Linear`: y = c_w W a + c_b b, W is (out_features, in_features).
/// NTK: Θ_W[o,o'] = c_w² ⟨a,a'⟩ ⟨δ_o,δ'_o'⟩,  Θ_b[o,o'] = c_b² ⟨δ_o,δ'_o'⟩.
struct Linear {
  int64_t out_features = 0;
  bool bias = true;
  int64_t in_features = 0;  ///< 0: taken from the previous layer; otherwise checked against it
  double w_std = 1.0;       ///< σ_w of the `ntk` parameterisation (c_w = σ_w / √fan_in)
  double b_std = 1.0;       ///< σ_b of the `ntk` parameterisation (c_b = σ_b)
};

/// A spatial size as PyTorch's `_pair` takes it: one integer for both dimensions (`3`) or (h, w) (`{3, 5}`).
struct Size2 {
  int64_t h = 0, w = 0;
  constexpr Size2() = default;
  constexpr Size2(int64_t both) : h(both), w(both) {}  // implicit, as PyTorch's int argument
  constexpr Size2(int64_t height, int64_t width) : h(height), w(width) {}
  friend constexpr bool operator==(const Size2&, const Size2&) = default;
};

/// How a conv layer's weight component is evaluated (docs/maths.md): `automatic` picks the order with fewer
/// FLOPs for the tile; Kernel::methods reports the one used.
enum class ConvMethod {
  automatic,  ///< the cheaper of the two by FLOPs (the default)
  gradients,  ///< per-sample weight gradients δ_o Uᵀ, then their Gram (large feature maps)
  positions   ///< the double sum over output positions (tiny feature maps)
};

/// "auto", "gradients" or "positions" (the model JSON's names).
const char* name(ConvMethod method);

/// PyTorch's string paddings of `torch.nn.Conv2d`.
enum class ConvPadding {
  sizes,  ///< Conv2d::padding as given, on both sides (the default)
  valid,  ///< "valid": no padding
  same    ///< "same" (stride 1 only): dilation·(kernel_size − 1) in total per dimension, half of it (rounded
          ///< down) at the top/left and the rest at the bottom/right, as PyTorch pads an odd total
};

/// `torch.nn.Conv2d` on NCHW input: y = c_w W_mat im2col(a) + c_b b 1ᵀ, W (C_out, C_in/groups, kh, kw). With
/// groups > 1 the output channels of group g see only its input channels (depthwise: groups = C_in).
/// NTK: Θ_W[o,o'] = c_w² Σ_g Σ_{p,q} ⟨δ_o[g,p], δ'_o'[g,q]⟩ ⟨U_g[:,p], U'_g[:,q]⟩ (δ[g,·], U_g: group g's output
/// channels and patch rows),  Θ_b[o,o'] = c_b² ⟨δ_o 1, δ'_o' 1⟩.
struct Conv2d {
  int64_t out_channels = 0;
  Size2 kernel_size = 1;
  Size2 stride = 1;
  Size2 padding = 0;
  ConvPadding padding_rule = ConvPadding::sizes;  ///< "same" / "valid" replace `padding`
  Size2 dilation = 1;
  int64_t groups = 1;  ///< must divide in_channels and out_channels
  bool bias = true;
  int64_t in_channels = 0;  ///< 0: taken from the input shape; otherwise checked against it
  double w_std = 1.0, b_std = 1.0;
  ConvMethod method = ConvMethod::automatic;
};

/// The zero padding a Conv2d applies before (top, left) and after (bottom, right) its input.
struct ConvPaddingSizes {
  Size2 before, after;
};

/// Conv2d::padding on both sides, none for "valid", PyTorch's split of the total for "same" (whatever the stride:
/// the layer refuses "same" with a stride other than 1).
ConvPaddingSizes padding_sizes(const Conv2d& conv);

/// "sizes", "valid" or "same".
const char* name(ConvPadding padding);

/// `torch.nn.AvgPool2d` (stride defaults to the kernel size, count_include_pad = true, ceil_mode = false).
struct AvgPool2d {
  Size2 kernel_size = 2;
  Size2 stride = 0;  ///< 0: equal to the kernel size (PyTorch's stride=None)
  Size2 padding = 0;
};

/// `torch.nn.MaxPool2d` (stride defaults to the kernel size; the gradient goes to the first maximum).
struct MaxPool2d {
  Size2 kernel_size = 2;
  Size2 stride = 0;  ///< 0: equal to the kernel size (PyTorch's stride=None)
  Size2 padding = 0;
  Size2 dilation = 1;
};

/// `torch.nn.AdaptiveAvgPool2d(1)`: (C, H, W) -> (C, 1, 1).
struct GlobalAvgPool {};

/// `torch.nn.AdaptiveAvgPool2d(output_size)`: (C, H, W) -> (C, OH, OW), output (i, j) the mean over rows
/// [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) and columns [⌊j·W/OW⌋, ⌈(j+1)·W/OW⌉) (windows of varying size that may overlap).
/// NTK: no component; backward δ_a = Pᵀ δ_y with P that fixed averaging map.
struct AdaptiveAvgPool2d {
  Size2 output_size = 1;  ///< 0 in a dimension: the input's size there (PyTorch's None)
};

/// `torch.nn.Flatten()` / `x.flatten(1)`: C-order, no data movement.
struct Flatten {};

/// `torch.nn.BatchNorm2d` in eval mode on (C, H, W) samples: y = γ ⊙ (x − μ)/√(σ² + ε) + β per channel, μ and σ²
/// the running statistics (buffers `running_mean`, `running_var`, read from the weights file; 0 and 1 by default).
/// γ (`weight`) starts at 1 and β (`bias`) at 0 in both parameterisations (no fan-in, no multipliers). Training mode,
/// and track_running_stats = false, normalise by the batch's statistics, which couples the samples of a batch:
/// both are refused.
/// NTK: Θ_γ[o,o'] = Σ_c (Σ_p δ_o[c,p] x̂[c,p]) (Σ_q δ'_o'[c,q] x̂'[c,q]),  Θ_β[o,o'] = Σ_c (Σ_p δ_o[c,p]) (Σ_q
/// δ'_o'[c,q]).
struct BatchNorm2d {
  int64_t num_features = 0;  ///< C; 0: taken from the input shape, otherwise checked against it
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  ///< unused in eval mode (nullopt: PyTorch's cumulative average)
  bool affine = true;                    ///< false: no γ, β (a fixed affine map)
  bool track_running_stats = true;       ///< false is refused (batch statistics even in eval mode)
  bool training = false;                 ///< true (model.train()) is refused
};

/// `torch.nn.BatchNorm1d` in eval mode on (C) or (C, L) samples: as BatchNorm2d, the positions being L (or 1).
/// NTK: as BatchNorm2d's, p running over the L positions.
struct BatchNorm1d {
  int64_t num_features = 0;  ///< C; 0: taken from the input shape, otherwise checked against it
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  ///< unused in eval mode (nullopt: PyTorch's cumulative average)
  bool affine = true;
  bool track_running_stats = true;  ///< false is refused (batch statistics even in eval mode)
  bool training = false;            ///< true (model.train()) is refused
};

/// `torch.nn.LayerNorm` over the trailing `normalized_shape` of each sample: for each of the G leading positions,
/// x̂ = (x − μ)/√(σ² + ε) with μ, σ² the mean and (biased) variance of its D = numel(normalized_shape) values, and
/// y = γ ⊙ x̂ + β, γ (`weight`, starting at 1) and β (`bias`, at 0) of shape normalized_shape.
/// NTK: Θ_γ[o,o'] = Σ_d (Σ_g δ_o[g,d] x̂[g,d]) (Σ_g δ'_o'[g,d] x̂'[g,d]),  Θ_β[o,o'] = Σ_d (Σ_g δ_o[g,d]) (Σ_g
/// δ'_o'[g,d]).
struct LayerNorm {
  std::vector<int64_t> normalized_shape;  ///< the trailing dimensions of the sample (required)
  double eps = 1e-5;
  bool elementwise_affine = true;  ///< false: no γ, β
  bool bias = true;                ///< false: γ only (PyTorch 2.1's bias=False)
};

/// The elementwise activations: y = φ(z), backward δ_z = φ'(z) ⊙ δ_y, no NTK component.
enum class ActivationKind { relu, leaky_relu, tanh, sigmoid, gelu, erf, softplus, silu, elu, identity };

/// An elementwise activation with PyTorch's parameters (each used only by its own kind).
struct Activation {
  ActivationKind kind = ActivationKind::identity;
  double negative_slope = 0.01;      ///< leaky_relu
  double alpha = 1.0;                ///< elu
  double beta = 1.0;                 ///< softplus
  double threshold = 20.0;           ///< softplus
  std::string approximate = "none";  ///< gelu: "none" (erf form) or "tanh"
};

/// Convenience constructors, named as PyTorch's modules.
inline Activation ReLU() { return {ActivationKind::relu}; }
inline Activation LeakyReLU(double negative_slope = 0.01) {
  Activation a{ActivationKind::leaky_relu};
  a.negative_slope = negative_slope;
  return a;
}
inline Activation Tanh() { return {ActivationKind::tanh}; }
inline Activation Sigmoid() { return {ActivationKind::sigmoid}; }
inline Activation GELU(std::string approximate = "none") {
  Activation a{ActivationKind::gelu};
  a.approximate = std::move(approximate);
  return a;
}
inline Activation Erf() { return {ActivationKind::erf}; }
inline Activation Softplus(double beta = 1.0, double threshold = 20.0) {
  Activation a{ActivationKind::softplus};
  a.beta = beta;
  a.threshold = threshold;
  return a;
}
inline Activation SiLU() { return {ActivationKind::silu}; }
inline Activation ELU(double alpha = 1.0) {
  Activation a{ActivationKind::elu};
  a.alpha = alpha;
  return a;
}
inline Activation Identity() { return {ActivationKind::identity}; }

/// Lower-case name of an activation kind, as in the model JSON ("leaky_relu").
const char* name(ActivationKind kind);
/// All activation kinds, in declaration order.
std::vector<ActivationKind> all_activation_kinds();

struct LayerSpec;

/// A residual block, as a PyTorch module with two `nn.Sequential` children `body` and `shortcut`:
/// y = body(x) + shortcut(x), the shortcut the identity when it has no layers. Its parameters are named
/// "<i>.body.<j>.weight" and "<i>.shortcut.<j>.bias" (other module names through `body_name`, `shortcut_name`
/// and each layer's LayerSpec::name); body and shortcut must give the same output shape.
/// NTK: the components of both branches; δ reaches x through both and is summed.
/// Write `.shortcut = {}` for the identity in a designated initializer: g++'s -Wextra warns when it is left out.
// (no default member initialisers on the vectors: clang 14 would instantiate them while LayerSpec is
// incomplete, whatever the spelling; a vector starts empty all the same)
struct Residual {
  std::vector<LayerSpec> body;
  std::vector<LayerSpec> shortcut;  ///< empty: the identity
  /// The branches' module names; "" adds no level (torchvision's BasicBlock: the body's layers are the block's
  /// own children conv1, bn1, ..., the shortcut is "downsample").
  std::string body_name = "body", shortcut_name = "shortcut";
};

/// A nested `nn.Sequential` (parameters "<i>.<j>.weight").
struct SequentialBlock {
  std::vector<LayerSpec> layers;
};

using LayerVariant = std::variant<Linear, Conv2d, AvgPool2d, MaxPool2d, GlobalAvgPool, AdaptiveAvgPool2d, Flatten,
                                  Activation, BatchNorm2d, BatchNorm1d, LayerNorm, Residual, SequentialBlock>;

/// One layer of a model: a layer or a block of layers.
struct LayerSpec : LayerVariant {
  using LayerVariant::LayerVariant;
  using LayerVariant::operator=;
  /// The module name that replaces the layer's index in parameter names ("conv1": "conv1.weight" instead of
  /// "0.weight"), so that a model that is not a plain `nn.Sequential` maps onto its state_dict. Unset: the
  /// index. "" (blocks only): no level of its own, its layers named as its parent's children. A name is one or
  /// more dot-separated parts of letters, digits and '_'.
  std::optional<std::string> name = std::nullopt;
};

/// `layer` under module name `name` (LayerSpec::name).
inline LayerSpec named(std::string name, LayerSpec layer) {
  layer.name = std::move(name);
  return layer;
}

/// The lower-case type name of a layer ("linear", "conv2d", "relu", "residual", "sequential", ...).
std::string type_name(const LayerSpec& layer);

}  // namespace xntk
