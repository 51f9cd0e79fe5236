#include "nn/batchnorm.hpp"

#include <cmath>

#include "nn/affine_components.hpp"

namespace xntk::nn {

template <class T>
BatchNormLayer<T>::BatchNormLayer(std::string path, const Shape& in, const BatchNorm2d& spec)
    : Leaf<T>(in, in, std::move(path)), two_d_(true) {
  if (in.size() != 3)
    throw Error("layer " + this->path_ + " (batchnorm2d): expects a 3-D input (channels, height, width), got shape " +
                to_string(in) + " (BatchNorm1d takes (C) and (C, L))");
  setup("batchnorm2d", spec.num_features, spec.eps, spec.affine, spec.track_running_stats, spec.training);
}

template <class T>
BatchNormLayer<T>::BatchNormLayer(std::string path, const Shape& in, const BatchNorm1d& spec)
    : Leaf<T>(in, in, std::move(path)), two_d_(false) {
  if (in.size() != 1 && in.size() != 2)
    throw Error("layer " + this->path_ + " (batchnorm1d): expects a 1-D (C) or 2-D (C, L) input, got shape " +
                to_string(in) + " (BatchNorm2d takes (C, H, W))");
  setup("batchnorm1d", spec.num_features, spec.eps, spec.affine, spec.track_running_stats, spec.training);
}

template <class T>
void BatchNormLayer<T>::setup(const std::string& kind, int64_t num_features, double eps, bool affine, bool track,
                              bool training) {
  const std::string at = "layer " + this->path_ + " (" + kind + ")";
  if (training)
    throw Error(at +
                ": training mode normalises by the statistics of the batch, which couples its samples, so the "
                "NTK is not a kernel of sample pairs; expected eval mode (model.eval(): the running statistics)");
  if (!track)
    throw Error(at +
                ": track_running_stats = false normalises by the statistics of the batch even in eval mode, "
                "which couples its samples (the NTK is not a kernel of sample pairs); expected "
                "track_running_stats = true");
  channels_ = this->in_[0];
  positions_ = this->in_size() / channels_;
  if (num_features != 0 && num_features != channels_)
    throw Error(at + ": num_features is " + std::to_string(num_features) + " but the input " + to_string(this->in_) +
                " has " + std::to_string(channels_) + " channels");
  if (!(eps > 0) || !std::isfinite(eps)) throw Error(at + ": eps must be positive, got " + std::to_string(eps));
  eps_ = eps;
  affine_ = affine;
  if (affine_) {  // PyTorch's reset_parameters: γ = 1, β = 0, whatever the parameterisation
    weight_ = Tensor<T>({channels_}, T(1));
    bias_ = Tensor<T>({channels_}, T(0));
  }
  running_mean_ = Tensor<T>({channels_}, T(0));
  running_var_ = Tensor<T>({channels_}, T(1));
  num_batches_tracked_ = Tensor<T>(Shape{}, T(0));
}

template <class T>
void BatchNormLayer<T>::coefficients(Buffer<T>& scale, Buffer<T>& shift, bool with_beta) const {
  // C values from the parameters and buffers (which may have been set since construction), not data
  const int64_t C = channels_;
  scale.resize(C);
  shift.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_);
    const double s = (affine_ ? static_cast<double>(weight_[c]) : 1.0) * inv;
    scale[c] = T(s);
    shift[c] =
        T((affine_ && with_beta ? static_cast<double>(bias_[c]) : 0.0) - static_cast<double>(running_mean_[c]) * s);
  }
}

template <class T>
Buffer<T> BatchNormLayer<T>::normalized(Context<T>& cx, const T* in, int64_t batch) const {
  Buffer<T> scale = cx.buffer(), shift = cx.buffer(), xhat = cx.buffer();
  const int64_t C = channels_;
  scale.resize(C);
  shift.resize(C);
  for (int64_t c = 0; c < C; ++c) {
    const double inv = 1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_);
    scale[c] = T(inv);
    shift[c] = T(-static_cast<double>(running_mean_[c]) * inv);
  }
  xhat.resize(batch * this->in_size());
  cx.count(cx.ops().channel_affine(in, batch, C, positions_, scale.data(), shift.data(), xhat.data()));
  return xhat;
}

template <class T>
void BatchNormLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  Buffer<T> scale = cx.buffer(), shift = cx.buffer();
  coefficients(scale, shift, true);
  cx.count(cx.ops().channel_affine(in, batch, channels_, positions_, scale.data(), shift.data(), out));
}

template <class T>
Delta<T> BatchNormLayer<T>::backward(Context<T>& cx, const T*, const T*, int64_t batch, int64_t streams, Delta<T>&& d,
                                     const T*) const {
  // δ_x = s_c δ_y: a fixed linear map, so shared deltas stay shared; in place
  const bool shared = d.kind != DeltaKind::per_sample;
  d = materialized(cx, std::move(d), streams);
  Buffer<T> scale = cx.buffer(), shift = cx.buffer();
  coefficients(scale, shift, false);
  const int64_t rows = (shared ? 1 : batch) * streams;
  cx.count(cx.ops().channel_affine(d.data(), rows, channels_, positions_, scale.data(), nullptr, d.rows.data()));
  return std::move(d);
}

template <class T>
void BatchNormLayer<T>::gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout,
                                 const std::vector<T*>& grads) const {
  if (!affine_) return;
  // ∂L/∂γ_c = Σ_b Σ_p δ_b[c,p] x̂_b[c,p],  ∂L/∂β_c = Σ_b Σ_p δ_b[c,p]
  const int64_t C = channels_, P = positions_;
  const Buffer<T> xhat = normalized(cx, in, batch);
  Buffer<T> sums = cx.buffer();
  sums.resize(batch * C);
  cx.count(cx.ops().weighted_sums(true, batch, 1, C, P, dout, false, xhat.data(), sums.data()));
  cx.count(cx.ops().sum_rows(sums.data(), batch, C, T(1), grads[0]));
  cx.count(cx.ops().weighted_sums(true, batch, 1, C, P, dout, false, nullptr, sums.data()));
  cx.count(cx.ops().sum_rows(sums.data(), batch, C, T(1), grads[1]));
}

template <class T>
void BatchNormLayer<T>::jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                                 const std::vector<T*>& out) const {
  if (!affine_) return;
  // row (b, s): ∂f_s/∂γ_c = Σ_p δ_{b,s}[c,p] x̂_b[c,p],  ∂f_s/∂β_c = Σ_p δ_{b,s}[c,p]
  const Buffer<T> xhat = normalized(cx, in, batch);
  cx.count(cx.ops().weighted_sums(true, batch, streams, channels_, positions_, dout, false, xhat.data(), out[0]));
  cx.count(cx.ops().weighted_sums(true, batch, streams, channels_, positions_, dout, false, nullptr, out[1]));
}

template <class T>
void BatchNormLayer<T>::jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T*,
                            T* dout, int64_t batch) const {
  // dy = s_c dx + dγ_c x̂ + dβ_c
  const auto& ops = cx.ops();
  const int64_t n = batch * this->in_size();
  if (din) {
    Buffer<T> scale = cx.buffer(), shift = cx.buffer();
    coefficients(scale, shift, false);
    cx.count(ops.channel_affine(din, batch, channels_, positions_, scale.data(), nullptr, dout));
  }
  if (dparams.empty()) {
    if (!din) ops.fill(n, T(0), dout);
    return;
  }
  const Buffer<T> xhat = normalized(cx, in, batch);
  if (!din) {
    cx.count(ops.channel_affine(xhat.data(), batch, channels_, positions_, dparams[0], dparams[1], dout));
    return;
  }
  Buffer<T> t = cx.buffer();
  t.resize(n);
  cx.count(ops.channel_affine(xhat.data(), batch, channels_, positions_, dparams[0], dparams[1], t.data()));
  cx.count(ops.add(n, t.data(), dout));
}

template <class T>
std::vector<NamedParameter<T>> BatchNormLayer<T>::parameters() const {
  if (!affine_) return {};
  const std::string prefix = this->path_.empty() ? "" : this->path_ + ".";
  return {{prefix + "weight", &weight_}, {prefix + "bias", &bias_}};
}

template <class T>
std::vector<NamedParameter<T>> BatchNormLayer<T>::buffers() const {
  const std::string prefix = this->path_.empty() ? "" : this->path_ + ".";
  return {{prefix + "running_mean", &running_mean_},
          {prefix + "running_var", &running_var_},
          {prefix + "num_batches_tracked", &num_batches_tracked_}};
}

template <class T>
double BatchNormLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode) const {
  // x̂ and the per-channel sums of each side, and the full-mode Gram of the sums
  const double n = static_cast<double>(n1), m = static_cast<double>(n2), O = static_cast<double>(outputs);
  const double C = static_cast<double>(channels_), P = static_cast<double>(positions_);
  return static_cast<double>(sizeof(T)) * ((n + m) * (C * P + O * C) + n * m * O * O);
}

template <class T>
void BatchNormLayer<T>::components(Context<T>& cx, const Side<T>& a, const Side<T>& b,
                                   const ComponentTarget<T>& t) const {
  // u_o[c] = Σ_p δ_o[c,p] x̂[c,p] per sample and output (γ) and v_o[c] = Σ_p δ_o[c,p] (β): Θ_γ and Θ_β are
  // the Grams of these rows (C wide), formed as every feature Gram is
  affine_components<T>(cx, a, b, t, true, channels_, positions_, true,
                       [&](const Side<T>& s) { return normalized(cx, s.in, s.batch); });
}

template class BatchNormLayer<float>;
template class BatchNormLayer<double>;

}  // namespace xntk::nn
