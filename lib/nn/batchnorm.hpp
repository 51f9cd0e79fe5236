#pragma once
// BatchNorm2d / BatchNorm1d in eval mode: y = γ ⊙ (x − μ)/√(σ² + ε) + β per channel, with μ, σ² the running
// statistics (buffers). In eval mode this is a fixed per-channel affine map y = s_c x + t_c with
// s_c = γ_c/√(σ²_c + ε) and t_c = β_c − μ_c s_c; x̂ = (x − μ)/√(σ² + ε) is what γ multiplies.
/// NTK: Θ_γ[o,o'] = Σ_c (Σ_p δ_o[c,p] x̂[c,p]) (Σ_q δ'_o'[c,q] x̂'[c,q]),  Θ_β[o,o'] = Σ_c (Σ_p δ_o[c,p]) (Σ_q
/// δ'_o'[c,q]).

#include "nn/layer.hpp"

namespace xntk::nn {

template <class T>
class BatchNormLayer final : public Leaf<T> {
 public:
  BatchNormLayer(std::string path, const Shape& in, const BatchNorm2d& spec);
  BatchNormLayer(std::string path, const Shape& in, const BatchNorm1d& spec);

  std::string type() const override { return two_d_ ? "batchnorm2d" : "batchnorm1d"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout, const std::vector<T*>& grads) const override;
  void jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                const std::vector<T*>& out) const override;
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T* out, T* dout,
           int64_t batch) const override;
  std::vector<NamedParameter<T>> parameters() const override;
  std::vector<NamedParameter<T>> buffers() const override;
  std::pair<double, double> multipliers() const override {
    return affine_ ? std::pair<double, double>{1.0, 1.0} : std::pair<double, double>{0.0, 0.0};
  }
  void components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const override;
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode mode) const override;

 private:
  /// The checks and shapes common to both kinds.
  void setup(const std::string& kind, int64_t num_features, double eps, bool affine, bool track, bool training);
  /// s_c and t_c of the current parameters and buffers (C values each; t without β when `with_beta` is false).
  void coefficients(Buffer<T>& scale, Buffer<T>& shift, bool with_beta) const;
  /// x̂ = (x − μ)/√(σ² + ε) of `batch` samples.
  Buffer<T> normalized(Context<T>& cx, const T* in, int64_t batch) const;

  bool two_d_ = true;
  int64_t channels_ = 0, positions_ = 0;
  double eps_ = 1e-5;
  bool affine_ = true;
  // mutable: exposed for assignment through named_parameters() and named_buffers()
  mutable Tensor<T> weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};

}  // namespace xntk::nn
