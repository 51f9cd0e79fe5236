#include "nn/linear.hpp"

#include <cmath>
#include <tuple>

#include "batch.hpp"

namespace xntk::nn {

namespace {
std::string where(const std::string& path) { return "layer " + path + " (linear)"; }
}  // namespace

template <class T>
LinearLayer<T>::LinearLayer(std::string path, const Shape& in, const Linear& spec, Parameterization p, detail::Rng& rng)
    : Leaf<T>(in, {spec.out_features}, std::move(path)), has_bias_(spec.bias) {
  const std::string at = where(this->path_);
  if (in.size() != 1)
    throw Error(at + ": expects a 1-D input (features), got shape " + to_string(in) +
                "; add a flatten layer before it");
  in_features_ = in[0];
  out_features_ = spec.out_features;
  if (out_features_ <= 0) throw Error(at + ": out_features must be positive, got " + std::to_string(out_features_));
  if (spec.in_features != 0 && spec.in_features != in_features_)
    throw Error(at + ": in_features is " + std::to_string(spec.in_features) + " but the previous layer gives " +
                std::to_string(in_features_) + " features");
  if (!(spec.w_std > 0) || !(spec.b_std >= 0) || !std::isfinite(spec.w_std) || !std::isfinite(spec.b_std))
    throw Error(at + ": w_std must be positive and b_std non-negative");
  weight_ = Tensor<T>({out_features_, in_features_});
  if (has_bias_) bias_ = Tensor<T>({out_features_});
  const double fan_in = static_cast<double>(in_features_);
  std::tie(cw_, cb_) = detail::initialize(weight_, bias_, fan_in, p, spec.w_std, spec.b_std, rng);
}

template <class T>
void LinearLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  cx.count(cx.ops().linear(batch, out_features_, in_features_, T(cw_), in, weight_.data(), out));
  if (has_bias_) cx.count(cx.ops().add_bias(out, batch, out_features_, 1, T(cb_), bias_.data()));
}

template <class T>
Delta<T> LinearLayer<T>::backward(Context<T>& cx, const T*, const T*, int64_t batch, int64_t streams, Delta<T>&& d,
                                  const T* gate) const {
  // din = c_w δ W: a fixed linear map, so shared deltas stay shared (one product instead of one per sample);
  // after a ReLU a sample's deltas are zero at the same units and the product may skip them, and with a
  // ReLU below it may skip the columns of din that the ReLU zeroes
  const bool shared = d.kind != DeltaKind::per_sample;
  d = materialized(cx, std::move(d), streams);
  const int64_t groups = shared ? 1 : batch, in = in_features_, out = out_features_;
  Delta<T> r{shared ? DeltaKind::shared : DeltaKind::per_sample, cx.buffer()};
  r.rows.resize(groups * streams * in);
  const backend::Groups g{.groups = groups,
                          .rows = streams,
                          .in_group = streams * out,
                          .in_row = out,
                          .out_group = streams * in,
                          .out_row = in};
  cx.count(cx.ops().product_skipping_zeros(g, out, in, T(cw_), d.data(), weight_.data(), r.rows.data(),
                                           shared ? nullptr : gate, in));
  return r;
}

template <class T>
void LinearLayer<T>::gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout,
                              const std::vector<T*>& grads) const {
  // ∂L/∂W = c_w Σ_b δ_b a_bᵀ = c_w δᵀ A,  ∂L/∂b = c_b Σ_b δ_b
  cx.count(cx.ops().gemm(true, false, out_features_, in_features_, batch, T(cw_), dout, out_features_, in, in_features_,
                         T(1), grads[0], in_features_));
  if (has_bias_) cx.count(cx.ops().sum_rows(dout, batch, out_features_, T(cb_), grads[1]));
}

template <class T>
void LinearLayer<T>::jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T*,
                         T* dout, int64_t batch) const {
  // dy = c_w (da Wᵀ + a dWᵀ) + c_b db
  const auto& ops = cx.ops();
  if (din) cx.count(ops.linear(batch, out_features_, in_features_, T(cw_), din, weight_.data(), dout));
  if (dparams.empty()) return;
  cx.count(ops.gemm(false, true, batch, out_features_, in_features_, T(cw_), in, in_features_, dparams[0], in_features_,
                    din ? T(1) : T(0), dout, out_features_));
  if (has_bias_) cx.count(ops.add_bias(dout, batch, out_features_, 1, T(cb_), dparams[1]));
}

template <class T>
void LinearLayer<T>::jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                              const std::vector<T*>& out) const {
  // sample b's rows of ∂f_s/∂W = c_w δ_{b,s} a_bᵀ: one (streams·out × 1)·(1 × in) product per sample
  const int64_t rows = streams * out_features_, size = out_features_ * in_features_;
  for (int64_t b = 0; b < batch; ++b)
    cx.count(cx.ops().gemm(false, false, rows, in_features_, 1, T(cw_), dout + b * rows, 1, in + b * in_features_,
                           in_features_, T(0), out[0] + b * streams * size, in_features_));
  if (has_bias_) {  // ∂f_s/∂b = c_b δ_{b,s}
    cx.ops().copy(batch * rows, dout, out[1]);
    cx.count(cx.ops().scale(batch * rows, T(cb_), out[1]));
  }
}

template <class T>
std::vector<NamedParameter<T>> LinearLayer<T>::parameters() const {
  const std::string prefix = this->path_.empty() ? "" : this->path_ + ".";
  std::vector<NamedParameter<T>> p{{prefix + "weight", &weight_}};
  if (has_bias_) p.push_back({prefix + "bias", &bias_});
  return p;
}

template <class T>
double LinearLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode mode) const {
  // the inputs Gram and the deltas Gram (full mode: of all (i, o) × (j, o') rows; trace and diagonal: one
  // n1 × n2 Gram at a time), and, where the backend may sum the full-mode deltas Gram over shared units, its
  // transposed deltas (at most 16 lanes per unit and sample) and column masks
  const bool full = mode == Mode::full && outputs > 1;
  const double grams = static_cast<double>(n1 * n2) * static_cast<double>(1 + (full ? outputs * outputs : 1));
  const bool masked = full && outputs >= 4 && outputs <= 12;
  const double transposed = masked ? static_cast<double>((n1 + n2) * out_features_) * 16.0 : 0.0;
  const double masks = masked ? static_cast<double>((n1 + n2) * ((out_features_ + 63) / 64)) * 8.0 : 0.0;
  return static_cast<double>(sizeof(T)) * (grams + transposed) + masks;
}

template <class T>
void LinearLayer<T>::components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  const auto& ops = cx.ops();
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, in = in_features_, out = out_features_;
  const T cw2 = T(cw_ * cw_), cb2 = T(cb_ * cb_);
  T* w = t.weight;
  T* bias = has_bias_ ? t.bias : nullptr;
  const int64_t per = detail::per_pair(O, t.mode);
  // alpha · the Gram matrix of rows of x (r1 × k, leading dimension ld) with those of y; on a symmetric
  // block (t.same, y = x) only its lower triangle, by SYRK
  auto gram_of = [&](const T* x, int64_t r1, const T* y, int64_t r2, int64_t k, int64_t ld, T alpha, T* dst, T beta) {
    cx.count(t.same ? ops.syrk_lower(r1, k, alpha, x, ld, beta, dst, r1)
                    : ops.gram(r1, r2, k, alpha, x, ld, y, ld, beta, dst, r2));
  };

  if (a.delta->kind != DeltaKind::per_sample) {
    // Deltas shared by all samples (at the last layer δ_o = e_o): ⟨δ_o, δ'_o'⟩ = S[o, o'] for every pair
    Buffer<T> S = cx.buffer(), s = cx.buffer();
    S.resize(O * O);
    if (a.delta->kind == DeltaKind::identity)
      ops.identity(O, S.data());
    else
      cx.count(ops.syrk_lower(O, out, T(1), a.delta->data(), out, T(0), S.data(), O));
    s.resize(per);  // the (o, o') block of one pair in the mode's layout
    ops.pair_block(t.mode, O, S.data(), s.data());
    if (per == 1) {
      // one value per pair: c_w² s ⟨a, a'⟩ accumulated by the Gram product itself (β = 1), then c_b² s
      // (the one value read back to scale the product: a device backend's buffers are host-visible here)
      gram_of(a.in, n1, b.in, n2, in, in, cw2 * s[0], w, T(1));
      if (bias) cx.count(ops.combine_shared(n1, n2, 1, t.same, nullptr, s.data(), cb2, w, bias));
      return;
    }
    // c_w² ⟨a, a'⟩ for every sample pair. On a symmetric block only pairs j ≤ i are formed and written
    // (ComponentTarget::same); Grams are then valid in their lower triangles.
    T* A = cx.scratch(0, n1 * n2);
    gram_of(a.in, n1, b.in, n2, in, in, cw2, A, T(0));
    cx.count(ops.combine_shared(n1, n2, per, t.same, A, s.data(), cb2, w, bias));
    return;
  }

  T* A = cx.scratch(0, n1 * n2);
  gram_of(a.in, n1, b.in, n2, in, in, cw2, A, T(0));
  const T* da = a.delta->data();
  const T* db = b.delta->data();
  // with one output the three modes coincide; the trace loop is the flat one
  switch (O == 1 ? Mode::trace : t.mode) {
    case Mode::full: {
      // D[(i,o), (j,o')] = ⟨δ_o(x_i), δ_o'(x'_j)⟩; Θ[i,j,o,o'] = c_w² A[i,j] D[(i,o),(j,o')] (+ c_b² D)
      const int64_t r1 = n1 * O, r2 = n2 * O;
      T* D = cx.scratch(1, r1 * r2);
      cx.count(ops.delta_gram(n1, n2, O, out, da, db, out, t.same, T(1), D, r2));
      cx.count(ops.combine_full(n1, n2, O, t.same, A, D, cb2, w, bias));
      break;
    }
    case Mode::trace: {
      // Σ_o ⟨δ_o, δ'_o⟩: a sample's O rows are contiguous, so this is one Gram of (n, O·out) rows
      T* D = cx.scratch(1, n1 * n2);
      gram_of(da, n1, db, n2, O * out, O * out, T(1), D, T(0));
      cx.count(ops.combine_values(n1, n2, 1, 0, t.same, A, D, cb2, w, bias));
      break;
    }
    case Mode::diagonal: {
      // one Gram per output over rows o, O + o, 2O + o, ...
      T* D = cx.scratch(1, n1 * n2);
      for (int64_t o = 0; o < O; ++o) {
        gram_of(da + o * out, n1, db + o * out, n2, out, O * out, T(1), D, T(0));
        cx.count(ops.combine_values(n1, n2, O, o, t.same, A, D, cb2, w, bias));
      }
      break;
    }
  }
}

template class LinearLayer<float>;
template class LinearLayer<double>;

}  // namespace xntk::nn
