// im2col / col2im for 2-D cross-correlation on one C-order (C, H, W) image: the patch matrix U (K × P),
// K = C·kh·kw (rows ordered (c, i, j) as a PyTorch weight's trailing axes), P = OH·OW positions. With it
// a convolution is the GEMM W_mat U and its input gradient col2im(W_matᵀ δ).

// Included inside the ISA region by variant.inc; prelude.hpp provides the includes. ConvGeometry is
// backend/geometry.hpp's.

/// The output columns [lo, hi) whose input column x·stride + offset lies inside [0, width): the loops
/// below run branch-free (and, at stride 1, contiguous) over them.
inline void valid_range(int64_t offset, int64_t stride, int64_t width, int64_t out, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = width - 1 - offset < 0 ? 0 : (width - 1 - offset) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

/// columns (K × P) = im2col(image); zero where the window reaches into the padding.
template <class T>
void im2col(const T* image, const ConvGeometry& g, T* columns) {
  const int64_t oh = g.out_h(), ow = g.out_w(), P = oh * ow, sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t i = 0; i < g.kernel_h; ++i)
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        T* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * P;
        const int64_t off = j * g.dilation_w - g.pad_w;
        int64_t lo, hi;
        valid_range(off, sw, g.width, ow, lo, hi);
        for (int64_t y = 0; y < oh; ++y) {
          T* dst = row + y * ow;
          const int64_t iy = y * g.stride_h - g.pad_h + i * g.dilation_h;
          if (iy < 0 || iy >= g.height) {
            std::fill(dst, dst + ow, T(0));
            continue;
          }
          const T* src = image + (c * g.height + iy) * g.width;
          std::fill(dst, dst + lo, T(0));
          for (int64_t x = lo; x < hi; ++x) dst[x] = src[x * sw + off];
          std::fill(dst + hi, dst + ow, T(0));
        }
      }
}

/// rows (P × K) = im2col(image)ᵀ: row p holds the patch at output position p (K values ordered (c, i, j)),
/// zero where the window reaches into the padding.
template <class T>
void im2row(const T* image, const ConvGeometry& g, T* rows) {
  const int64_t oh = g.out_h(), ow = g.out_w(), K = g.rows(), sw = g.stride_w;
  for (int64_t y = 0; y < oh; ++y) {
    T* block = rows + y * ow * K;  // the rows of output row y: ow patches of K values
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t iy = y * g.stride_h - g.pad_h + i * g.dilation_h;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          T* dst = block + (c * g.kernel_h + i) * g.kernel_w + j;
          if (iy < 0 || iy >= g.height) {
            for (int64_t x = 0; x < ow; ++x) dst[x * K] = T(0);
            continue;
          }
          const T* src = image + (c * g.height + iy) * g.width;
          const int64_t off = j * g.dilation_w - g.pad_w;
          int64_t lo, hi;
          valid_range(off, sw, g.width, ow, lo, hi);
          for (int64_t x = 0; x < lo; ++x) dst[x * K] = T(0);
          for (int64_t x = lo; x < hi; ++x) dst[x * K] = src[x * sw + off];
          for (int64_t x = hi; x < ow; ++x) dst[x * K] = T(0);
        }
      }
  }
}

/// image (C, H, W) += col2im(columns): the adjoint of im2col (entries in the padding are dropped).
template <class T>
void col2im(const T* columns, const ConvGeometry& g, T* image) {
  const int64_t oh = g.out_h(), ow = g.out_w(), P = oh * ow, sw = g.stride_w;
  for (int64_t c = 0; c < g.channels; ++c)
    for (int64_t i = 0; i < g.kernel_h; ++i)
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const T* row = columns + ((c * g.kernel_h + i) * g.kernel_w + j) * P;
        const int64_t off = j * g.dilation_w - g.pad_w;
        int64_t lo, hi;
        valid_range(off, sw, g.width, ow, lo, hi);
        for (int64_t y = 0; y < oh; ++y) {
          const int64_t iy = y * g.stride_h - g.pad_h + i * g.dilation_h;
          if (iy < 0 || iy >= g.height) continue;
          const T* src = row + y * ow;
          T* dst = image + (c * g.height + iy) * g.width;
          if (sw == 1) {
            for (int64_t x = lo; x < hi; ++x) dst[x + off] += src[x];
          } else {
            for (int64_t x = lo; x < hi; ++x) dst[x * sw + off] += src[x];
          }
        }
      }
}
