#pragma once
// Pooling layers on (C, H, W) samples, as torch.nn.AvgPool2d, MaxPool2d and AdaptiveAvgPool2d.
/// NTK: no component; backward δ_a = Pᵀ δ_y with P the pooling's (sparse, linear or argmax-selecting) map.

#include "backend/geometry.hpp"
#include "nn/layer.hpp"

namespace xntk::nn {

using backend::ConvGeometry;

/// Checks a pooling or convolution window against a (C, H, W) input with PyTorch's rules; `eh`, `ew`: padding
/// beyond ph at the bottom and beyond pw at the right (ConvGeometry::extra_h, extra_w).
ConvGeometry window_geometry(const std::string& where, const Shape& in, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t eh = 0, int64_t ew = 0);

/// AvgPool2d (count_include_pad = true, ceil_mode = false) or MaxPool2d (the gradient goes to the first
/// maximum of each window in row-major order, as PyTorch's CPU kernel).
template <class T>
class Pool2dLayer final : public Leaf<T> {
 public:
  Pool2dLayer(std::string path, const Shape& in, const AvgPool2d& spec);
  Pool2dLayer(std::string path, const Shape& in, const MaxPool2d& spec);

  std::string type() const override { return kind_ == backend::Pool::max ? "maxpool2d" : "avgpool2d"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void jvp(Context<T>& cx, const T* in, const T* din, const std::vector<const T*>&, const T*, T* dout,
           int64_t batch) const override {
    cx.count(cx.ops().pool_tangent(kind_, g_, in, din, batch, dout));
  }
  const ConvGeometry& geometry() const { return g_; }

 private:
  backend::Pool kind_;
  ConvGeometry g_;
};

/// AdaptiveAvgPool2d(1): (C, H, W) -> (C, 1, 1), the mean of each channel.
template <class T>
class GlobalAvgPoolLayer final : public Leaf<T> {
 public:
  GlobalAvgPoolLayer(std::string path, const Shape& in);

  std::string type() const override { return "global_avgpool"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void jvp(Context<T>& cx, const T*, const T* din, const std::vector<const T*>&, const T*, T* dout,
           int64_t batch) const override {
    const int64_t C = this->in_[0], HW = this->in_[1] * this->in_[2];
    cx.count(cx.ops().sum_positions(din, batch * C, HW, T(1) / T(HW), dout));
  }
};

/// AdaptiveAvgPool2d(OH, OW) whose windows do not tile the input evenly (an even tiling is an AvgPool2d and is
/// built as one): y_c = P x_c for each channel, P (OH·OW × H·W) holding 1/(window size) on each output's window.
template <class T>
class AdaptiveAvgPoolLayer final : public Leaf<T> {
 public:
  AdaptiveAvgPoolLayer(std::string path, const Shape& in, Size2 output_size);

  std::string type() const override { return "adaptive_avgpool2d"; }
  void compute(Context<T>& cx, const T* in, T* out, int64_t batch) const override;
  Delta<T> backward(Context<T>& cx, const T* in, const T* out, int64_t batch, int64_t streams, Delta<T>&& d,
                    const T* gate) const override;
  void jvp(Context<T>& cx, const T*, const T* din, const std::vector<const T*>&, const T*, T* dout,
           int64_t batch) const override {
    compute(cx, din, dout, batch);
  }

 private:
  int64_t positions_in_ = 0, positions_out_ = 0;
  std::vector<T> map_;  // P, row-major
};

/// The window [begin, end) of output index i of `out` along an axis of `in` values, as PyTorch's adaptive pooling.
inline std::pair<int64_t, int64_t> adaptive_window(int64_t i, int64_t in, int64_t out) {
  return {(i * in) / out, ((i + 1) * in + out - 1) / out};
}

}  // namespace xntk::nn
