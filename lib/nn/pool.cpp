#include "nn/pool.hpp"

namespace xntk::nn {

namespace {
std::string hw(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }
Shape pooled(const ConvGeometry& g) { return {g.channels, g.out_h(), g.out_w()}; }
}  // namespace

ConvGeometry window_geometry(const std::string& where, const Shape& in, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t eh, int64_t ew) {
  if (in.size() != 3)
    throw Error(where + ": expects a 3-D input (channels, height, width), got shape " + to_string(in));
  if (kh <= 0 || kw <= 0) throw Error(where + ": kernel_size must be positive, got " + hw(kh, kw));
  if (sh < 0 || sw < 0) throw Error(where + ": stride must be positive (or 0 for the kernel size), got " + hw(sh, sw));
  if (dh <= 0 || dw <= 0) throw Error(where + ": dilation must be positive, got " + hw(dh, dw));
  const ConvGeometry g{.channels = in[0],
                       .height = in[1],
                       .width = in[2],
                       .kernel_h = kh,
                       .kernel_w = kw,
                       .stride_h = sh == 0 ? kh : sh,
                       .stride_w = sw == 0 ? kw : sw,
                       .pad_h = ph,
                       .pad_w = pw,
                       .dilation_h = dh,
                       .dilation_w = dw,
                       .extra_h = eh,
                       .extra_w = ew};
  if (!g.fits())
    throw Error(where + ": kernel " + hw(kh, kw) + " with dilation " + hw(dh, dw) +
                " is larger than its padded input; expected a padded input of at least " + hw(g.span_h(), g.span_w()) +
                ", got " + hw(g.height + 2 * ph + eh, g.width + 2 * pw + ew) + " (input " + to_string(in) +
                ", padding " + hw(ph, pw) + ")");
  return g;
}

namespace {
ConvGeometry pool_geometry(const std::string& where, const Shape& in, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  if (ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw)
    throw Error(where + ": padding must be between 0 and half the kernel size " + hw(kh, kw) + ", got " + hw(ph, pw));
  return window_geometry(where, in, kh, kw, sh, sw, ph, pw, dh, dw);
}
}  // namespace

template <class T>
Pool2dLayer<T>::Pool2dLayer(std::string path, const Shape& in, const AvgPool2d& s)
    : Leaf<T>(in, {}, std::move(path)),
      kind_(backend::Pool::average),
      g_(pool_geometry("layer " + this->path_ + " (avgpool2d)", in, s.kernel_size.h, s.kernel_size.w, s.stride.h,
                       s.stride.w, s.padding.h, s.padding.w, 1, 1)) {
  this->out_ = pooled(g_);
}

template <class T>
Pool2dLayer<T>::Pool2dLayer(std::string path, const Shape& in, const MaxPool2d& s)
    : Leaf<T>(in, {}, std::move(path)),
      kind_(backend::Pool::max),
      g_(pool_geometry("layer " + this->path_ + " (maxpool2d)", in, s.kernel_size.h, s.kernel_size.w, s.stride.h,
                       s.stride.w, s.padding.h, s.padding.w, s.dilation.h, s.dilation.w)) {
  this->out_ = pooled(g_);
}

template <class T>
void Pool2dLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  cx.count(cx.ops().pool_forward(kind_, g_, in, batch, out));
}

template <class T>
Delta<T> Pool2dLayer<T>::backward(Context<T>& cx, const T* in, const T*, int64_t batch, int64_t streams, Delta<T>&& d,
                                  const T*) const {
  // average pooling is a fixed linear map: shared deltas stay shared; the maximum's position differs per
  // sample, so max pooling writes them out first
  const bool shared = d.kind != DeltaKind::per_sample && kind_ == backend::Pool::average;
  if (shared)
    d = materialized(cx, std::move(d), streams);
  else
    d = expanded(cx, std::move(d), streams, this->out_size(), batch);
  Delta<T> r{shared ? DeltaKind::shared : DeltaKind::per_sample, cx.buffer()};
  const int64_t images = shared ? 1 : batch;
  r.rows.resize(images * streams * this->in_size());
  cx.count(cx.ops().pool_backward(kind_, g_, in, d.data(), images, streams, r.rows.data()));
  return r;
}

template <class T>
GlobalAvgPoolLayer<T>::GlobalAvgPoolLayer(std::string path, const Shape& in) : Leaf<T>(in, {}, std::move(path)) {
  if (in.size() != 3)
    throw Error("layer " + this->path_ +
                " (global_avgpool): expects a 3-D input (channels, height, width), got shape " + to_string(in));
  this->out_ = {in[0], 1, 1};
}

template <class T>
void GlobalAvgPoolLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  const int64_t C = this->in_[0], HW = this->in_[1] * this->in_[2];
  cx.count(cx.ops().sum_positions(in, batch * C, HW, T(1) / T(HW), out));
}

template <class T>
Delta<T> GlobalAvgPoolLayer<T>::backward(Context<T>& cx, const T*, const T*, int64_t batch, int64_t streams,
                                         Delta<T>&& d, const T*) const {
  const bool shared = d.kind != DeltaKind::per_sample;
  d = materialized(cx, std::move(d), streams);
  const int64_t C = this->in_[0], HW = this->in_[1] * this->in_[2], rows = (shared ? 1 : batch) * streams * C;
  Delta<T> r{d.kind, cx.buffer()};
  r.rows.resize(rows * HW);
  cx.count(cx.ops().spread_positions(d.data(), rows, HW, T(1) / T(HW), r.rows.data()));
  return r;
}

template <class T>
AdaptiveAvgPoolLayer<T>::AdaptiveAvgPoolLayer(std::string path, const Shape& in, Size2 output_size)
    : Leaf<T>(in, {}, std::move(path)) {
  if (in.size() != 3)
    throw Error("layer " + this->path_ +
                " (adaptive_avgpool2d): expects a 3-D input (channels, height, width), got shape " + to_string(in));
  const int64_t H = in[1], W = in[2];
  const int64_t oh = output_size.h == 0 ? H : output_size.h, ow = output_size.w == 0 ? W : output_size.w;
  if (oh < 0 || ow < 0)
    throw Error("layer " + this->path_ + " (adaptive_avgpool2d): output_size must be positive, got " + hw(oh, ow));
  this->out_ = {in[0], oh, ow};
  positions_in_ = H * W;
  positions_out_ = oh * ow;
  constexpr int64_t limit = int64_t(1) << 26;  // 512 MB in double
  if (positions_out_ > limit / std::max<int64_t>(positions_in_, 1))
    throw Error("layer " + this->path_ + " (adaptive_avgpool2d): output " + hw(oh, ow) + " of input " + hw(H, W) +
                " needs an averaging map of more than 2^26 entries; expected an output size that divides the input "
                "size (an AvgPool2d) or a smaller input");
  map_.assign(static_cast<size_t>(positions_out_ * positions_in_), T(0));
  for (int64_t i = 0; i < oh; ++i) {
    const auto [r0, r1] = adaptive_window(i, H, oh);
    for (int64_t j = 0; j < ow; ++j) {
      const auto [c0, c1] = adaptive_window(j, W, ow);
      const T weight = T(1) / T((r1 - r0) * (c1 - c0));
      T* row = map_.data() + (i * ow + j) * positions_in_;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) row[r * W + c] = weight;
    }
  }
}

template <class T>
void AdaptiveAvgPoolLayer<T>::compute(Context<T>& cx, const T* in, T* out, int64_t batch) const {
  // all channels of all samples at once: Y (rows × OH·OW) = X (rows × H·W) Pᵀ
  const int64_t rows = batch * this->in_[0];
  cx.count(cx.ops().gemm(false, true, rows, positions_out_, positions_in_, T(1), in, positions_in_, map_.data(),
                         positions_in_, T(0), out, positions_out_));
}

template <class T>
Delta<T> AdaptiveAvgPoolLayer<T>::backward(Context<T>& cx, const T*, const T*, int64_t batch, int64_t streams,
                                           Delta<T>&& d, const T*) const {
  // a fixed linear map: shared deltas stay shared; δ_a (rows × H·W) = δ_y (rows × OH·OW) P
  const bool shared = d.kind != DeltaKind::per_sample;
  d = materialized(cx, std::move(d), streams);
  const int64_t rows = (shared ? 1 : batch) * streams * this->in_[0];
  Delta<T> r{d.kind, cx.buffer()};
  r.rows.resize(rows * positions_in_);
  cx.count(cx.ops().gemm(false, false, rows, positions_in_, positions_out_, T(1), d.data(), positions_out_, map_.data(),
                         positions_in_, T(0), r.rows.data(), positions_in_));
  return r;
}

template class Pool2dLayer<float>;
template class Pool2dLayer<double>;
template class GlobalAvgPoolLayer<float>;
template class GlobalAvgPoolLayer<double>;
template class AdaptiveAvgPoolLayer<float>;
template class AdaptiveAvgPoolLayer<double>;

}  // namespace xntk::nn
