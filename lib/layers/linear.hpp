#pragma once
// Linear layer: y = c_w W a + c_b b, W (out, in).
/// NTK: Θ_W[o,o'] = c_w² ⟨a,a'⟩ ⟨δ_o,δ'_o'⟩,  Θ_b[o,o'] = c_b² ⟨δ_o,δ'_o'⟩  (a Hadamard product of two Grams).

#include "layer.hpp"
#include "random.hpp"

namespace xntk::detail {

template <class T>
class LinearLayer final : public Layer<T> {
 public:
  LinearLayer(int index, const Shape& in, const Linear& spec, Parameterization p, Rng& rng);

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  void backward_gated(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams,
                      const T* gate) const override;
  double forward_flops(int64_t batch) const override;
  double backward_flops(int64_t batch, int64_t streams) const override;

  std::vector<NamedParameter<T>> parameters() const override;
  std::pair<double, double> multipliers() const override { return {cw_, cb_}; }
  bool accepts_identity_delta() const override { return true; }
  bool accepts_shared_delta() const override { return true; }
  bool input_independent_backward() const override { return true; }
  void components(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const override;
  double component_bytes(int64_t n1, int64_t n2, int64_t outputs) const override;
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;

 private:
  int64_t in_features_, out_features_;
  double cw_ = 1, cb_ = 1;
  mutable Tensor<T> weight_, bias_;  // mutable: exposed for assignment through named_parameters()
  bool has_bias_;
};

}  // namespace xntk::detail
