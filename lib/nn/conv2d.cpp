#include "nn/conv2d.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "batch.hpp"
#include "nn/pool.hpp"

namespace xntk::nn {

namespace {

std::string hw(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

// Order (A) holds the gradients of at most this many bytes of samples per side at once, so its memory
// does not grow with the tile (a large tile of a wide layer would otherwise need n·O·C_out·K per side).
constexpr double kGradientChunkBytes = 64.0 * 1024 * 1024;

double threads() {
#ifdef _OPENMP
  return static_cast<double>(omp_get_max_threads());
#else
  return 1.0;
#endif
}

/// Sample i's rows of a side's deltas: its own, or the rows every sample shares.
template <class T>
const T* deltas_of(const Delta<T>& d, int64_t i, int64_t rows_per_sample) {
  return d.kind == DeltaKind::per_sample ? d.data() + i * rows_per_sample : d.data();
}

/// dst (rows × count·plane) = the channels [first, first + count) of each of `rows` rows of src (channels·plane
/// values each): one group's share of a batch of images, derivative rows or gradients.
template <class T>
void take_channels(Context<T>& cx, const T* src, int64_t rows, int64_t channels, int64_t first, int64_t count,
                   int64_t plane, T* dst) {
  for (int64_t r = 0; r < rows; ++r)
    cx.ops().copy(count * plane, src + (r * channels + first) * plane, dst + r * count * plane);
}

/// The inverse of take_channels: src's rows written into channels [first, first + count) of dst's.
template <class T>
void put_channels(Context<T>& cx, const T* src, int64_t rows, int64_t channels, int64_t first, int64_t count,
                  int64_t plane, T* dst) {
  for (int64_t r = 0; r < rows; ++r)
    cx.ops().copy(count * plane, src + r * count * plane, dst + (r * channels + first) * plane);
}

}  // namespace

template <class T>
Conv2dLayer<T>::Conv2dLayer(std::string path, const Shape& in, const Conv2d& spec, Parameterization p, detail::Rng& rng)
    : Leaf<T>(in, {}, std::move(path)),
      out_channels_(spec.out_channels),
      groups_(spec.groups),
      method_(spec.method),
      has_bias_(spec.bias) {
  const Size2 k = spec.kernel_size, st = spec.stride, dil = spec.dilation;
  const std::string at = "layer " + this->path_ + " (conv2d)";
  if (in.size() != 3) throw Error(at + ": expects a 3-D input (channels, height, width), got shape " + to_string(in));
  if (out_channels_ <= 0) throw Error(at + ": out_channels must be positive, got " + std::to_string(out_channels_));
  if (spec.in_channels != 0 && spec.in_channels != in[0])
    throw Error(at + ": in_channels is " + std::to_string(spec.in_channels) + " but the input " + to_string(in) +
                " has " + std::to_string(in[0]) + " channels");
  if (groups_ <= 0 || in[0] % groups_ != 0 || out_channels_ % groups_ != 0)
    throw Error(at + ": groups must be positive and divide in_channels and out_channels, got groups " +
                std::to_string(groups_) + " for " + std::to_string(in[0]) + " input and " +
                std::to_string(out_channels_) + " output channels");
  if (st.h <= 0 || st.w <= 0) throw Error(at + ": stride must be positive, got " + hw(st.h, st.w));
  if (spec.padding_rule == ConvPadding::same && (st.h != 1 || st.w != 1))
    throw Error(at + ": padding \"same\" needs stride 1 (as in PyTorch), got stride " + hw(st.h, st.w));
  if (spec.padding_rule != ConvPadding::sizes && spec.padding_rule != ConvPadding::valid &&
      spec.padding_rule != ConvPadding::same)
    throw Error(at + ": padding_rule must be sizes, valid or same");
  const ConvPaddingSizes pad = padding_sizes(spec);
  if (pad.before.h < 0 || pad.before.w < 0)
    throw Error(at + ": padding must be non-negative, got " + hw(pad.before.h, pad.before.w));
  if (method_ != ConvMethod::automatic && method_ != ConvMethod::gradients && method_ != ConvMethod::positions)
    throw Error(at + ": method must be automatic, gradients or positions");
  if (!(spec.w_std > 0) || !(spec.b_std >= 0) || !std::isfinite(spec.w_std) || !std::isfinite(spec.b_std))
    throw Error(at + ": w_std must be positive and b_std non-negative");
  g_ = window_geometry(at, in, k.h, k.w, st.h, st.w, pad.before.h, pad.before.w, dil.h, dil.w,
                       pad.after.h - pad.before.h, pad.after.w - pad.before.w);
  g_.channels = in[0] / groups_;  // one group's geometry: its C_in/groups channels
  this->out_ = {out_channels_, g_.out_h(), g_.out_w()};
  weight_ = Tensor<T>({out_channels_, g_.channels, g_.kernel_h, g_.kernel_w});
  if (has_bias_) bias_ = Tensor<T>({out_channels_});
  const double fan_in = static_cast<double>(g_.rows());
  std::tie(cw_, cb_) = detail::initialize(weight_, bias_, fan_in, p, spec.w_std, spec.b_std, rng);
}

template <class T>
void Conv2dLayer<T>::convolve(Context<T>& cx, T alpha, const T* w, const T* in, int64_t batch, T* out) const {
  if (groups_ == 1) {
    cx.count(cx.ops().conv_forward(g_, out_channels_, alpha, w, in, batch, out));
    return;
  }
  const int64_t Cg = g_.channels, Og = out_channels_ / groups_, HW = g_.height * g_.width, P = g_.positions();
  Buffer<T> x = cx.buffer(), y = cx.buffer();
  x.resize(batch * Cg * HW);
  y.resize(batch * Og * P);
  for (int64_t grp = 0; grp < groups_; ++grp) {
    take_channels(cx, in, batch, groups_ * Cg, grp * Cg, Cg, HW, x.data());
    cx.count(cx.ops().conv_forward(g_, Og, alpha, w + grp * Og * g_.rows(), x.data(), batch, y.data()));
    put_channels(cx, y.data(), batch, out_channels_, grp * Og, Og, P, out);
  }
}

template <class T>
void Conv2dLayer<T>::convolve_transposed(Context<T>& cx, const T* dout, int64_t rows, T* din) const {
  if (groups_ == 1) {
    cx.count(cx.ops().conv_backward(g_, out_channels_, T(cw_), weight_.data(), dout, rows, din));
    return;
  }
  const int64_t Cg = g_.channels, Og = out_channels_ / groups_, HW = g_.height * g_.width, P = g_.positions();
  Buffer<T> d = cx.buffer(), x = cx.buffer();
  d.resize(rows * Og * P);
  x.resize(rows * Cg * HW);
  for (int64_t grp = 0; grp < groups_; ++grp) {
    take_channels(cx, dout, rows, out_channels_, grp * Og, Og, P, d.data());
    cx.count(cx.ops().conv_backward(g_, Og, T(cw_), weight_.data() + grp * Og * g_.rows(), d.data(), rows, x.data()));
    put_channels(cx, x.data(), rows, groups_ * Cg, grp * Cg, Cg, HW, din);
  }
}

template <class T>
void Conv2dLayer<T>::sample_gradients(Context<T>& cx, const T* x, int64_t n, int64_t streams, const T* delta,
                                      bool shared, T* G) const {
  if (groups_ == 1) {
    cx.count(cx.ops().conv_gradients(g_, out_channels_, streams, x, n, delta, shared, G));
    return;
  }
  const int64_t Cg = g_.channels, Og = out_channels_ / groups_, HW = g_.height * g_.width, P = g_.positions(),
                K = g_.rows(), delta_rows = (shared ? 1 : n) * streams;
  Buffer<T> xg = cx.buffer(), dg = cx.buffer(), gg = cx.buffer();
  xg.resize(n * Cg * HW);
  dg.resize(delta_rows * Og * P);
  gg.resize(n * streams * Og * K);
  for (int64_t grp = 0; grp < groups_; ++grp) {
    take_channels(cx, x, n, groups_ * Cg, grp * Cg, Cg, HW, xg.data());
    take_channels(cx, delta, delta_rows, out_channels_, grp * Og, Og, P, dg.data());
    cx.count(cx.ops().conv_gradients(g_, Og, streams, xg.data(), n, dg.data(), shared, gg.data()));
    // row (s, o) of G holds the C_out × K gradient of that stream; group grp owns its rows [grp·Og, (grp + 1)·Og)
    put_channels(cx, gg.data(), n * streams, out_channels_, grp * Og, Og, K, G);
  }
}

template <class T>
void Conv2dLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  convolve(cx, T(cw_), weight_.data(), in, batch, out);
  if (has_bias_) cx.count(cx.ops().add_bias(out, batch, out_channels_, g_.positions(), T(cb_), bias_.data()));
}

template <class T>
Delta<T> Conv2dLayer<T>::backward(Context<T>& cx, const T*, const T*, int64_t batch, int64_t streams, Delta<T>&& d,
                                  const T*) const {
  // din = c_w col2im(W_matᵀ δ): a fixed linear map, so shared deltas stay shared
  const bool shared = d.kind != DeltaKind::per_sample;
  d = materialized(cx, std::move(d), streams);
  const int64_t rows = (shared ? 1 : batch) * streams;
  Delta<T> r{d.kind, cx.buffer()};
  r.rows.resize(rows * this->in_size());
  convolve_transposed(cx, d.data(), rows, r.rows.data());
  return r;
}

template <class T>
void Conv2dLayer<T>::gradient(Context<T>& cx, const T* in, int64_t batch, const T* dout,
                              const std::vector<T*>& grads) const {
  // ∂L/∂W = c_w Σ_b δ_b U_bᵀ, summed over the batch by the backend (no per-sample gradients), group by group:
  // group grp's rows [grp·Og, (grp + 1)·Og) of W see its Cg input channels; ∂L/∂b = c_b Σ_b δ_b 1
  const int64_t C = out_channels_, K = g_.rows(), P = g_.positions();
  if (groups_ == 1) {
    cx.count(cx.ops().conv_weight_gradient(g_, C, in, batch, dout, T(cw_), grads[0]));
  } else {
    const int64_t Cg = g_.channels, Og = C / groups_, HW = g_.height * g_.width;
    Buffer<T> xg = cx.buffer(), dg = cx.buffer();
    xg.resize(batch * Cg * HW);
    dg.resize(batch * Og * P);
    for (int64_t grp = 0; grp < groups_; ++grp) {
      take_channels(cx, in, batch, groups_ * Cg, grp * Cg, Cg, HW, xg.data());
      take_channels(cx, dout, batch, C, grp * Og, Og, P, dg.data());
      cx.count(cx.ops().conv_weight_gradient(g_, Og, xg.data(), batch, dg.data(), T(cw_), grads[0] + grp * Og * K));
    }
  }
  if (!has_bias_) return;
  Buffer<T> sums = cx.buffer();
  sums.resize(batch * C);
  cx.count(cx.ops().sum_positions(dout, batch * C, P, T(1), sums.data()));
  cx.count(cx.ops().sum_rows(sums.data(), batch, C, T(cb_), grads[1]));
}

template <class T>
void Conv2dLayer<T>::jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>& dparams, const T*,
                         T* dout, int64_t batch) const {
  // dy = c_w (W ⋆ da + dW ⋆ a) + c_b db 1ᵀ
  const auto& ops = cx.ops();
  const int64_t n = batch * this->out_size();
  if (din) convolve(cx, T(cw_), weight_.data(), din, batch, dout);
  if (dparams.empty()) return;
  if (din) {
    Buffer<T> t = cx.buffer();
    t.resize(n);
    convolve(cx, T(cw_), dparams[0], in, batch, t.data());
    cx.count(ops.add(n, t.data(), dout));
  } else {
    convolve(cx, T(cw_), dparams[0], in, batch, dout);
  }
  if (has_bias_) cx.count(ops.add_bias(dout, batch, out_channels_, g_.positions(), T(cb_), dparams[1]));
}

template <class T>
void Conv2dLayer<T>::jacobian(Context<T>& cx, const T* in, int64_t batch, int64_t streams, const T* dout,
                              const std::vector<T*>& out) const {
  // ∂f_s/∂W = c_w δ_{b,s} Uᵀ (the per-sample gradients of order (A)); ∂f_s/∂b = c_b δ_{b,s} 1
  const int64_t C = out_channels_, K = g_.rows(), P = g_.positions();
  sample_gradients(cx, in, batch, streams, dout, false, out[0]);
  cx.count(cx.ops().scale(batch * streams * C * K, T(cw_), out[0]));
  if (has_bias_) cx.count(cx.ops().sum_positions(dout, batch * streams * C, P, T(cb_), out[1]));
}

template <class T>
std::vector<NamedParameter<T>> Conv2dLayer<T>::parameters() const {
  const std::string prefix = this->path_.empty() ? "" : this->path_ + ".";
  std::vector<NamedParameter<T>> p{{prefix + "weight", &weight_}};
  if (has_bias_) p.push_back({prefix + "bias", &bias_});
  return p;
}

template <class T>
double Conv2dLayer<T>::order_flops(ConvOrder order, int64_t n1, int64_t n2, int64_t outputs) const {
  const double n = static_cast<double>(n1), m = static_cast<double>(n2), O = static_cast<double>(outputs);
  const double C = static_cast<double>(out_channels_), K = static_cast<double>(g_.rows()),
               P = static_cast<double>(g_.positions());
  if (order == ConvOrder::gradients) return 2.0 * (n + m) * O * C * P * K + 2.0 * n * m * O * O * C * K;
  // per group: the positions Gram over its K patch rows, then its C_out/groups channels' deltas
  return 2.0 * n * m * (static_cast<double>(groups_) * P * P * K + O * C * P * P + O * O * C * P);
}

template <class T>
ConvOrder Conv2dLayer<T>::order(int64_t n1, int64_t n2, int64_t outputs) const {
  if (method_ == ConvMethod::gradients) return ConvOrder::gradients;
  if (method_ == ConvMethod::positions) return ConvOrder::positions;
  return order_flops(ConvOrder::positions, n1, n2, outputs) < order_flops(ConvOrder::gradients, n1, n2, outputs)
             ? ConvOrder::positions
             : ConvOrder::gradients;
}

template <class T>
void Conv2dLayer<T>::notes(int64_t n1, int64_t n2, int64_t outputs, std::vector<MethodNote>& out) const {
  out.push_back(
      {this->path_, order(n1, n2, outputs) == ConvOrder::gradients ? ConvMethod::gradients : ConvMethod::positions});
}

template <class T>
int64_t Conv2dLayer<T>::gradient_chunk(int64_t outputs) const {
  const double per_sample = static_cast<double>(sizeof(T)) * static_cast<double>(outputs * out_channels_ * g_.rows());
  return std::max<int64_t>(1, static_cast<int64_t>(kGradientChunkBytes / per_sample));
}

template <class T>
double Conv2dLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs, Mode) const {
  const double O = static_cast<double>(outputs), C = static_cast<double>(out_channels_),
               K = static_cast<double>(g_.rows()), P = static_cast<double>(g_.positions());
  const double n = static_cast<double>(n1), m = static_cast<double>(n2);
  // bias: the deltas' sums over positions per side, and their Gram (full mode is the largest)
  double values = has_bias_ ? (n + m) * O * C + n * m * O * O : 0.0;
  // groups > 1: one group's inputs and deltas taken out of each side (and its gradients, order (A))
  const double Cg = static_cast<double>(g_.channels), HW = static_cast<double>(g_.height * g_.width),
               Og = C / static_cast<double>(groups_), grouped = groups_ > 1 ? 1.0 : 0.0;
  if (order(n1, n2, outputs) == ConvOrder::gradients) {
    const int64_t chunk = gradient_chunk(outputs);
    const double c1 = static_cast<double>(std::min(n1, chunk)), c2 = static_cast<double>(std::min(n2, chunk));
    values += (c1 + c2) * O * C * K + c1 * c2 * O * O + threads() * K * P;
    values += grouped * std::max(c1, c2) * (Cg * HW + O * Og * P + O * Og * K);
  } else {
    values += (n + m) * K * P + threads() * (P * P + O * Og * P + O * O);
    values += grouped * (n + m) * (Cg * HW + O * Og * P);
  }
  return static_cast<double>(sizeof(T)) * values;
}

template <class T>
void Conv2dLayer<T>::gradients(Context<T>& cx, const Side<T>& s, const Delta<T>& d, int64_t first, int64_t n,
                               int64_t outputs, T* g) const {
  const int64_t rows = outputs * out_channels_ * g_.positions();
  sample_gradients(cx, s.in + first * this->in_size(), n, outputs, deltas_of(d, first, rows),
                   d.kind != DeltaKind::per_sample, g);
}

template <class T>
void Conv2dLayer<T>::weight_component(Context<T>& cx, ConvOrder order, const Side<T>& a, const Side<T>& b,
                                      const ComponentTarget<T>& t, int64_t chunk) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, CK = out_channels_ * g_.rows();
  const T cw2 = T(cw_ * cw_);
  // a conv layer at the model's output: its identity deltas written out (as shared rows)
  Delta<T> da_m, db_m;
  const Delta<T>* da = a.delta;
  const Delta<T>* db = b.delta;
  if (da->kind == DeltaKind::identity) {
    da_m = materialized(cx, Delta<T>{}, O);
    da = db = &da_m;
  }
  if (order == ConvOrder::positions) {
    positions_component(cx, a, b, *da, *db, t);
    return;
  }
  if (chunk <= 0) chunk = gradient_chunk(O);
  // the gradients come from the block cache uninitialised (conv_gradients writes every value)
  Buffer<T> ga = cx.buffer(), gb = cx.buffer();
  ga.resize(std::min(n1, chunk) * O * CK);
  // the other side's gradients are formed once when they fit one chunk, otherwise again for each chunk of a
  const bool b_once = !t.same && n2 <= chunk;
  if (b_once) {
    gb.resize(n2 * O * CK);
    gradients(cx, b, *db, 0, n2, O, gb.data());
  }
  for (int64_t i0 = 0; i0 < n1; i0 += chunk) {
    const int64_t na = std::min(chunk, n1 - i0);
    gradients(cx, a, *da, i0, na, O, ga.data());
    // symmetric block: chunk pairs j0 ≤ i0 only, feature_gram mirrors them
    const int64_t j_end = t.same ? i0 + 1 : n2;
    for (int64_t j0 = 0; j0 < j_end; j0 += chunk) {
      const int64_t nb = std::min(chunk, n2 - j0);
      if (!b_once && !(t.same && j0 == i0)) {
        gb.resize(nb * O * CK);
        gradients(cx, b, *db, j0, nb, O, gb.data());
      }
      const T* fb = t.same && j0 == i0 ? ga.data() : gb.data();
      cx.count(cx.ops().feature_gram(t.mode, O, ga.data(), i0, na, fb, j0, nb, CK, cw2, t.same, n2, t.weight));
    }
  }
}

template <class T>
void Conv2dLayer<T>::positions_component(Context<T>& cx, const Side<T>& a, const Side<T>& b, const Delta<T>& da,
                                         const Delta<T>& db, const ComponentTarget<T>& t) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs;
  const T cw2 = T(cw_ * cw_);
  const bool shared_a = da.kind != DeltaKind::per_sample, shared_b = db.kind != DeltaKind::per_sample;
  if (groups_ == 1) {
    cx.count(cx.ops().conv_positions(g_, out_channels_, O, t.mode, n1, n2, t.same, a.in, da.data(), shared_a, b.in,
                                     db.data(), shared_b, cw2, t.weight));
    return;
  }
  // Σ over groups of each group's double sum over positions (conv_positions adds into the block)
  const int64_t Cg = g_.channels, Og = out_channels_ / groups_, HW = g_.height * g_.width, P = g_.positions();
  const int64_t ra = (shared_a ? 1 : n1) * O, rb = (shared_b ? 1 : n2) * O;
  Buffer<T> xa = cx.buffer(), xb = cx.buffer(), dga = cx.buffer(), dgb = cx.buffer();
  xa.resize(n1 * Cg * HW);
  dga.resize(ra * Og * P);
  if (!t.same) {
    xb.resize(n2 * Cg * HW);
    dgb.resize(rb * Og * P);
  }
  for (int64_t grp = 0; grp < groups_; ++grp) {
    take_channels(cx, a.in, n1, groups_ * Cg, grp * Cg, Cg, HW, xa.data());
    take_channels(cx, da.data(), ra, out_channels_, grp * Og, Og, P, dga.data());
    if (!t.same) {
      take_channels(cx, b.in, n2, groups_ * Cg, grp * Cg, Cg, HW, xb.data());
      take_channels(cx, db.data(), rb, out_channels_, grp * Og, Og, P, dgb.data());
    }
    const T* xbp = t.same ? xa.data() : xb.data();
    const T* dbp = t.same ? dga.data() : dgb.data();
    cx.count(cx.ops().conv_positions(g_, Og, O, t.mode, n1, n2, t.same, xa.data(), dga.data(), shared_a, xbp, dbp,
                                     t.same ? shared_a : shared_b, cw2, t.weight));
  }
}

template <class T>
void Conv2dLayer<T>::components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  weight_component(cx, order(a.batch, b.batch, t.outputs), a, b, t);
  if (!has_bias_) return;
  // δ_o 1: each delta row summed over the positions, (batch·O × C_out) per side (shared deltas are summed
  // once and repeated: these rows are small next to the weight component's)
  const int64_t O = t.outputs, C = out_channels_, P = g_.positions();
  Delta<T> identity;
  const Delta<T>* da = a.delta;
  if (da->kind == DeltaKind::identity) {
    identity = materialized(cx, Delta<T>{}, O);
    da = &identity;
  }
  auto sums = [&](const Side<T>& s, const Delta<T>& d) {
    Buffer<T> r = cx.buffer();
    r.resize(s.batch * O * C);
    if (d.kind == DeltaKind::per_sample) {
      cx.count(cx.ops().sum_positions(d.data(), s.batch * O * C, P, T(1), r.data()));
    } else {
      Buffer<T> one = cx.buffer();
      one.resize(O * C);
      cx.count(cx.ops().sum_positions(d.data(), O * C, P, T(1), one.data()));
      cx.ops().repeat(one.data(), O * C, s.batch, r.data());
    }
    return r;
  };
  const Buffer<T> sa = sums(a, *da);
  const Buffer<T> sb = t.same ? Buffer<T>() : sums(b, b.delta->kind == DeltaKind::identity ? *da : *b.delta);
  cx.count(cx.ops().feature_gram(t.mode, O, sa.data(), 0, a.batch, t.same ? sa.data() : sb.data(), 0, b.batch, C,
                                 T(cb_ * cb_), t.same, b.batch, t.bias));
}

template class Conv2dLayer<float>;
template class Conv2dLayer<double>;

}  // namespace xntk::nn
