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

template class Pool2dLayer<float>;
template class Pool2dLayer<double>;
template class GlobalAvgPoolLayer<float>;
template class GlobalAvgPoolLayer<double>;

}  // namespace xntk::nn
