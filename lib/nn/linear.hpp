#pragma once
// Linear layer: y = c_w W a + c_b b, W (out, in).
/// NTK: Θ_W[o,o'] = c_w² ⟨a,a'⟩ ⟨δ_o,δ'_o'⟩,  Θ_b[o,o'] = c_b² ⟨δ_o,δ'_o'⟩  (a Hadamard product of two Grams).

#include "nn/layer.hpp"
#include "random.hpp"

namespace xntk::nn {

template <class T>
class LinearLayer final : public Leaf<T> {
 public:
  LinearLayer(std::string path, const Shape& in, const Linear& spec, Parameterization p, detail::Rng& rng);

  std::string type() const override { return "linear"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout, const std::vector<T*>& grads) const override;
  void jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                const std::vector<T*>& out) const override;
  std::vector<NamedParameter<T>> parameters() const override;
  std::pair<double, double> multipliers() const override { return {cw_, cb_}; }
  void components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const override;
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T* out, T* dout,
           int64_t batch) const override;
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode mode) const override;

 private:
  int64_t in_features_, out_features_;
  double cw_ = 1, cb_ = 1;
  mutable Tensor<T> weight_, bias_;  // mutable: exposed for assignment through named_parameters()
  bool has_bias_;
};

}  // namespace xntk::nn
