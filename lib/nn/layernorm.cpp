#include "nn/layernorm.hpp"

#include <algorithm>
#include <cmath>

#include "nn/affine_components.hpp"

namespace xntk::nn {

template <class T>
LayerNormLayer<T>::LayerNormLayer(std::string path, const Shape& in, const LayerNorm& spec)
    : Leaf<T>(in, in, std::move(path)) {
  const std::string at = "layer " + this->path_ + " (layernorm)";
  const Shape& ns = spec.normalized_shape;
  const size_t k = ns.size();
  if (k == 0 || k > in.size() || !std::equal(in.end() - static_cast<std::ptrdiff_t>(k), in.end(), ns.begin()))
    throw Error(at + ": normalized_shape " + to_string(ns) + " is not the trailing part of the input shape " +
                to_string(in) +
                "; expected the last dimensions of the sample (for (C, H, W): [W], [H, W] or [C, H, W])");
  size_ = 1;
  for (size_t i = in.size() - k; i < in.size(); ++i) size_ *= in[i];
  groups_ = this->in_size() / size_;
  if (!(spec.eps > 0) || !std::isfinite(spec.eps))
    throw Error(at + ": eps must be positive, got " + std::to_string(spec.eps));
  eps_ = spec.eps;
  affine_ = spec.elementwise_affine;
  bias_on_ = spec.bias;
  const Shape shape(in.end() - static_cast<std::ptrdiff_t>(k), in.end());
  if (affine_) {  // PyTorch's reset_parameters: γ = 1, β = 0, whatever the parameterisation
    weight_ = Tensor<T>(shape, T(1));
    if (bias_on_) bias_ = Tensor<T>(shape, T(0));
  }
}

template <class T>
void LayerNormLayer<T>::normalized(Context<T>& cx, const T* in, int64_t batch, Buffer<T>& xhat, Buffer<T>& inv) const {
  xhat.resize(batch * this->in_size());
  inv.resize(batch * groups_);
  cx.count(cx.ops().normalize(in, batch * groups_, size_, eps_, xhat.data(), inv.data()));
}

template <class T>
void LayerNormLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  Buffer<T> inv = cx.buffer();
  if (!affine_) {
    inv.resize(batch * groups_);
    cx.count(cx.ops().normalize(in, batch * groups_, size_, eps_, out, inv.data()));
    return;
  }
  Buffer<T> xhat = cx.buffer();
  normalized(cx, in, batch, xhat, inv);
  // γ and β per element of each group: a "channel" affine map with one position per channel
  cx.count(cx.ops().channel_affine(xhat.data(), batch * groups_, size_, 1, weight_.data(),
                                   bias_on_ ? bias_.data() : nullptr, out));
}

template <class T>
Delta<T> LayerNormLayer<T>::backward(Context<T>& cx, const T* in, const T*, int64_t batch, int64_t streams,
                                     Delta<T>&& d, const T*) const {
  // δ_x = ∂x̂/∂xᵀ (γ ⊙ δ_y): x̂ depends on the sample, so the deltas are per sample from here on; in place
  d = expanded(cx, std::move(d), streams, this->out_size(), batch);
  const int64_t rows = batch * streams * groups_;
  if (affine_) cx.count(cx.ops().channel_affine(d.data(), rows, size_, 1, weight_.data(), nullptr, d.rows.data()));
  Buffer<T> xhat = cx.buffer(), inv = cx.buffer();
  normalized(cx, in, batch, xhat, inv);
  cx.count(
      cx.ops().normalize_derivative(xhat.data(), inv.data(), batch, streams, groups_, size_, d.data(), d.rows.data()));
  return std::move(d);
}

template <class T>
void LayerNormLayer<T>::gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout,
                                 const std::vector<T*>& grads) const {
  if (!affine_) return;
  // ∂L/∂γ_d = Σ_b Σ_g δ_b[g,d] x̂_b[g,d],  ∂L/∂β_d = Σ_b Σ_g δ_b[g,d]
  const int64_t G = groups_, D = size_;
  Buffer<T> xhat = cx.buffer(), inv = cx.buffer(), sums = cx.buffer();
  normalized(cx, in, batch, xhat, inv);
  sums.resize(batch * D);
  cx.count(cx.ops().weighted_sums(false, batch, 1, G, D, dout, false, xhat.data(), sums.data()));
  cx.count(cx.ops().sum_rows(sums.data(), batch, D, T(1), grads[0]));
  if (!bias_on_) return;
  cx.count(cx.ops().weighted_sums(false, batch, 1, G, D, dout, false, nullptr, sums.data()));
  cx.count(cx.ops().sum_rows(sums.data(), batch, D, T(1), grads[1]));
}

template <class T>
void LayerNormLayer<T>::jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                                 const std::vector<T*>& out) const {
  if (!affine_) return;
  // row (b, s): ∂f_s/∂γ_d = Σ_g δ_{b,s}[g,d] x̂_b[g,d],  ∂f_s/∂β_d = Σ_g δ_{b,s}[g,d]
  Buffer<T> xhat = cx.buffer(), inv = cx.buffer();
  normalized(cx, in, batch, xhat, inv);
  cx.count(cx.ops().weighted_sums(false, batch, streams, groups_, size_, dout, false, xhat.data(), out[0]));
  if (bias_on_) cx.count(cx.ops().weighted_sums(false, batch, streams, groups_, size_, dout, false, nullptr, out[1]));
}

template <class T>
void LayerNormLayer<T>::jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T*,
                            T* dout, int64_t batch) const {
  // dy = γ ⊙ (∂x̂/∂x · dx) + dγ ⊙ x̂ + dβ
  const auto& ops = cx.ops();
  const int64_t n = batch * this->in_size(), rows = batch * groups_;
  Buffer<T> xhat = cx.buffer(), inv = cx.buffer();
  normalized(cx, in, batch, xhat, inv);
  if (din) {
    cx.count(ops.normalize_derivative(xhat.data(), inv.data(), batch, 1, groups_, size_, din, dout));
    if (affine_) cx.count(ops.channel_affine(dout, rows, size_, 1, weight_.data(), nullptr, dout));
  }
  if (dparams.empty()) {
    if (!din) ops.fill(n, T(0), dout);
    return;
  }
  const T* dbeta = bias_on_ ? dparams[1] : nullptr;
  if (!din) {
    cx.count(ops.channel_affine(xhat.data(), rows, size_, 1, dparams[0], dbeta, dout));
    return;
  }
  Buffer<T> t = cx.buffer();
  t.resize(n);
  cx.count(ops.channel_affine(xhat.data(), rows, size_, 1, dparams[0], dbeta, t.data()));
  cx.count(ops.add(n, t.data(), dout));
}

template <class T>
std::vector<NamedParameter<T>> LayerNormLayer<T>::parameters() const {
  if (!affine_) return {};
  const std::string prefix = this->path_.empty() ? "" : this->path_ + ".";
  std::vector<NamedParameter<T>> p{{prefix + "weight", &weight_}};
  if (bias_on_) p.push_back({prefix + "bias", &bias_});
  return p;
}

template <class T>
double LayerNormLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode) const {
  // x̂ and the per-element sums of each side, and the full-mode Gram of the sums
  const double n = static_cast<double>(n1), m = static_cast<double>(n2), O = static_cast<double>(outputs);
  const double G = static_cast<double>(groups_), D = static_cast<double>(size_);
  return static_cast<double>(sizeof(T)) * ((n + m) * (G * D + G + O * D) + n * m * O * O);
}

template <class T>
void LayerNormLayer<T>::components(Context<T>& cx, const Side<T>& a, const Side<T>& b,
                                   const ComponentTarget<T>& t) const {
  // u_o[d] = Σ_g δ_o[g,d] x̂[g,d] per sample and output (γ) and v_o[d] = Σ_g δ_o[g,d] (β): Θ_γ and Θ_β are the
  // Grams of these rows (D wide); t.bias is t.weight for the total alone, so β's is skipped without a bias
  affine_components<T>(cx, a, b, t, false, groups_, size_, bias_on_, [&](const Side<T>& s) {
    Buffer<T> xhat = cx.buffer(), inv = cx.buffer();
    normalized(cx, s.in, s.batch, xhat, inv);
    return xhat;
  });
}

template class LayerNormLayer<float>;
template class LayerNormLayer<double>;

}  // namespace xntk::nn
