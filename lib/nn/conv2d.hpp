#pragma once
// Conv2d layer (groups = 1, NCHW): y = c_w W_mat U(a) + c_b b 1ᵀ with U = im2col(a) (K × P), W (C_out, C_in, kh, kw).
/// NTK: Θ_W[o,o'] = c_w² ⟨δ_o Uᵀ, δ'_o' U'ᵀ⟩_F = c_w² Σ_{p,q} ⟨δ_o[:,p], δ'_o'[:,q]⟩ ⟨U[:,p], U'[:,q]⟩,  Θ_b[o,o'] =
/// c_b² ⟨δ_o 1, δ'_o' 1⟩.

#include "backend/geometry.hpp"
#include "nn/layer.hpp"
#include "random.hpp"

namespace xntk::nn {

/// The two evaluation orders of the weight component (docs/maths.md).
enum class ConvOrder {
  gradients,  // (A) per-sample weight gradients G_o = δ_o Uᵀ (C_out × K), then their Gram
  positions   // (B) Σ_{p,q} over output positions: Uᵀ U' (P × P') per pair, contracted with the deltas
};

template <class T>
class Conv2dLayer final : public Leaf<T> {
 public:
  Conv2dLayer(std::string path, const Shape& in, const Conv2d& spec, Parameterization p, detail::Rng& rng);

  std::string type() const override { return "conv2d"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout, const std::vector<T*>& grads) const override;
  void jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                const std::vector<T*>& out) const override;
  std::vector<NamedParameter<T>> parameters() const override;
  std::pair<double, double> multipliers() const override { return {cw_, cb_}; }
  void components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const override;
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs) const override;
  void notes(int64_t n1, int64_t n2, int64_t outputs, std::vector<MethodNote>& out) const override;
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T* out, T* dout,
           int64_t batch) const override;

  /// The order used for n1 × n2 samples: the forced one, or the cheaper by FLOPs of a full-mode block.
  ConvOrder order(int64_t n1, int64_t n2, int64_t outputs) const;
  /// FLOPs of the weight component of an n1 × n2 full-mode block in each order.
  double order_flops(ConvOrder order, int64_t n1, int64_t n2, int64_t outputs) const;
  /// The weight component alone, in a given order; `chunk` bounds the samples per side whose gradients
  /// order (A) holds at once (0: from the memory cap). Exposed so tests can compare orders and chunks.
  void weight_component(Context<T>& cx, ConvOrder order, const Side<T>& a, const Side<T>& b,
                        const ComponentTarget<T>& t, int64_t chunk = 0) const;
  /// Samples per side of one gradient chunk of order (A).
  int64_t gradient_chunk(int64_t outputs) const;
  const backend::ConvGeometry& geometry() const { return g_; }

 private:
  /// G (n·O·C_out × K) of samples [first, first + n) of a side whose deltas are d, without the factor c_w.
  void gradients(Context<T>& cx, const Side<T>& s, const Delta<T>& d, int64_t first, int64_t n, int64_t outputs,
                 T* g) const;

  backend::ConvGeometry g_;
  int64_t out_channels_;
  ConvMethod method_;
  double cw_ = 1, cb_ = 1;
  mutable Tensor<T> weight_, bias_;  // mutable: exposed for assignment through named_parameters()
  bool has_bias_;
};

}  // namespace xntk::nn
