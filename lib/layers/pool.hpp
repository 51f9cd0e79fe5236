#pragma once
// Pooling layers on (C, H, W) samples, as torch.nn.AvgPool2d, MaxPool2d and AdaptiveAvgPool2d(1).
/// NTK: no component; backward δ_a = Pᵀ δ_y with P the pooling's (sparse, linear or argmax-selecting) map.

#include "cpu/im2col.hpp"
#include "layer.hpp"

namespace xntk::detail {

/// AvgPool2d with count_include_pad = true and ceil_mode = false: every window divides by kh·kw.
template <class T>
class AvgPool2dLayer final : public Layer<T> {
 public:
  AvgPool2dLayer(int index, const Shape& in, const AvgPool2d& spec);

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  double forward_flops(int64_t batch) const override;
  double backward_flops(int64_t batch, int64_t streams) const override;
  bool input_independent_backward() const override { return true; }
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;

 private:
  ConvGeometry g_;
};

/// MaxPool2d: the gradient goes to the first maximum of each window (row-major scan), as PyTorch's CPU kernel.
template <class T>
class MaxPool2dLayer final : public Layer<T> {
 public:
  MaxPool2dLayer(int index, const Shape& in, const MaxPool2d& spec);

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  double forward_flops(int64_t batch) const override;
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;

 private:
  /// Index into the sample's (C, H, W) values of each output's maximum.
  void argmax(const T* sample, int64_t* index) const;

  ConvGeometry g_;
};

/// AdaptiveAvgPool2d(1): (C, H, W) -> (C, 1, 1), the mean of each channel.
template <class T>
class GlobalAvgPoolLayer final : public Layer<T> {
 public:
  GlobalAvgPoolLayer(int index, const Shape& in);

  void forward(const T* in, T* out, int64_t batch) const override;
  void backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const override;
  double forward_flops(int64_t batch) const override { return static_cast<double>(batch * this->in_size()); }
  bool input_independent_backward() const override { return true; }
  int record(autograd::Tape<T>& tape, int in, int first_slot) const override;
};

}  // namespace xntk::detail
