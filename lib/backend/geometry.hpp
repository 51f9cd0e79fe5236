#pragma once
// Shape arithmetic of a convolution or pooling window sliding over one (channels, height, width) image,
// shared by the layers (which validate it) and the backends (which compute with it).

#include <cstdint>

namespace xntk::backend {

struct ConvGeometry {
  int64_t channels = 0, height = 0, width = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  /// Padding beyond pad_h at the bottom and beyond pad_w at the right (PyTorch's padding="same" with an odd
  /// total pads the extra row or column there); the windows start at −pad_h, −pad_w all the same.
  int64_t extra_h = 0, extra_w = 0;

  /// Span of the dilated kernel.
  int64_t span_h() const { return dilation_h * (kernel_h - 1) + 1; }
  int64_t span_w() const { return dilation_w * (kernel_w - 1) + 1; }
  /// Output size with PyTorch's floor rounding (ceil_mode = false); ≤ 0 when the kernel does not fit.
  int64_t out_h() const { return (height + 2 * pad_h + extra_h - span_h()) / stride_h + 1; }
  int64_t out_w() const { return (width + 2 * pad_w + extra_w - span_w()) / stride_w + 1; }
  bool fits() const { return height + 2 * pad_h + extra_h >= span_h() && width + 2 * pad_w + extra_w >= span_w(); }
  /// K = C·kh·kw: the rows of the patch matrix.
  int64_t rows() const { return channels * kernel_h * kernel_w; }
  /// P = OH·OW: the output positions.
  int64_t positions() const { return out_h() * out_w(); }
  /// Stride 1, no dilation and symmetric padding: the shapes the direct convolution kernels take.
  bool unit_stride() const {
    return stride_h == 1 && stride_w == 1 && dilation_h == 1 && dilation_w == 1 && extra_h == 0 && extra_w == 0;
  }
};

}  // namespace xntk::backend
