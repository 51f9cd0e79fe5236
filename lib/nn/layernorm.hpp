#pragma once
// LayerNorm over the trailing normalized_shape (D values) of each sample, at each of its G leading positions:
// x̂ = (x − μ)/√(σ² + ε) with μ, σ² the mean and biased variance of the D values, y = γ ⊙ x̂ + β with γ, β of
// D values. Unlike BatchNorm's, the map depends on the sample, so the deltas below it are per sample.
/// NTK: Θ_γ[o,o'] = Σ_d (Σ_g δ_o[g,d] x̂[g,d]) (Σ_g δ'_o'[g,d] x̂'[g,d]),  Θ_β[o,o'] = Σ_d (Σ_g δ_o[g,d]) (Σ_g
/// δ'_o'[g,d]).

#include "nn/layer.hpp"

namespace xntk::nn {

template <class T>
class LayerNormLayer final : public Leaf<T> {
 public:
  LayerNormLayer(std::string path, const Shape& in, const LayerNorm& spec);

  std::string type() const override { return "layernorm"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout, const std::vector<T*>& grads) const override;
  void jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                const std::vector<T*>& out) const override;
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T* out, T* dout,
           int64_t batch) const override;
  std::vector<NamedParameter<T>> parameters() const override;
  std::pair<double, double> multipliers() const override {
    return {affine_ ? 1.0 : 0.0, affine_ && bias_on_ ? 1.0 : 0.0};
  }
  void components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const override;
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode mode) const override;

 private:
  /// x̂ of `batch` samples (batch·G groups of D values) and 1/√(σ² + ε) of each group.
  void normalized(Context<T>& cx, const T* in, int64_t batch, Buffer<T>& xhat, Buffer<T>& inv) const;

  int64_t groups_ = 0, size_ = 0;  // G and D
  double eps_ = 1e-5;
  bool affine_ = true, bias_on_ = true;
  // mutable: exposed for assignment through named_parameters()
  mutable Tensor<T> weight_, bias_;
};

}  // namespace xntk::nn
