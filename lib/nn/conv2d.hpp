#pragma once
// Conv2d layer (NCHW): y = c_w W_mat U(a) + c_b b 1ᵀ with U = im2col(a) (K × P), W (C_out, C_in/groups, kh, kw);
// with groups > 1, group g's C_out/groups output channels see only its C_in/groups input channels (U_g, K rows).
/// NTK: Θ_W[o,o'] = c_w² Σ_g ⟨δ_o[g] U_gᵀ, δ'_o'[g] U'_gᵀ⟩_F = c_w² Σ_g Σ_{p,q} ⟨δ_o[g,p], δ'_o'[g,q]⟩ ⟨U_g[:,p],
/// U'_g[:,q]⟩,  Θ_b[o,o'] = c_b² ⟨δ_o 1, δ'_o' 1⟩.

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
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode mode) const override;
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
  /// One group's window geometry (its C_in/groups input channels; K = its patch rows).
  const backend::ConvGeometry& geometry() const { return g_; }
  int64_t groups() const { return groups_; }

 private:
  /// G (n·O·C_out × K) of samples [first, first + n) of a side whose deltas are d, without the factor c_w.
  void gradients(Context<T>& cx, const Side<T>& s, const Delta<T>& d, int64_t first, int64_t n, int64_t outputs,
                 T* g) const;
  /// out (batch × C_out·P) = alpha · W ⋆ in for weights w in PyTorch's layout, group by group.
  void convolve(Context<T>& cx, T alpha, const T* w, const T* in, int64_t batch, T* out) const;
  /// din (rows × C_in·H·W) = c_w times the transposed convolution of `rows` derivative rows dout (rows × C_out·P).
  void convolve_transposed(Context<T>& cx, const T* dout, int64_t rows, T* din) const;
  /// The per-sample weight gradients G[s] (streams·C_out × K) = δ_s U(x_s)ᵀ, group g's rows from its own channels
  /// (deltas and sharing as in Ops::conv_gradients).
  void sample_gradients(Context<T>& cx, const T* x, int64_t n, int64_t streams, const T* delta, bool shared,
                        T* G) const;
  /// The weight component in the positions order, added group by group.
  void positions_component(Context<T>& cx, const Side<T>& a, const Side<T>& b, const Delta<T>& da, const Delta<T>& db,
                           const ComponentTarget<T>& t) const;

  backend::ConvGeometry g_;
  int64_t out_channels_, groups_ = 1;
  ConvMethod method_;
  double cw_ = 1, cb_ = 1;
  mutable Tensor<T> weight_, bias_;  // mutable: exposed for assignment through named_parameters()
  bool has_bias_;
};

}  // namespace xntk::nn
