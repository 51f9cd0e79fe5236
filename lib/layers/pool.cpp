#include "layers/pool.hpp"

#include <cmath>

#include "autograd/tape.hpp"
#include "cpu/backend.hpp"
#include "cpu/grain.hpp"

namespace xntk::detail {

namespace {

std::string hw(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

/// Checks a pooling window against a (C, H, W) input with PyTorch's rules; returns its geometry.
ConvGeometry pool_geometry(const std::string& where, const Shape& in, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  if (in.size() != 3)
    throw Error(where + ": expects a 3-D input (channels, height, width), got shape " + to_string(in));
  if (kh <= 0 || kw <= 0) throw Error(where + ": kernel_size must be positive, got " + hw(kh, kw));
  if (sh < 0 || sw < 0) throw Error(where + ": stride must be positive (or 0 for the kernel size), got " + hw(sh, sw));
  if (dh <= 0 || dw <= 0) throw Error(where + ": dilation must be positive, got " + hw(dh, dw));
  if (ph < 0 || pw < 0 || 2 * ph > kh || 2 * pw > kw)
    throw Error(where + ": padding must be between 0 and half the kernel size " + hw(kh, kw) + ", got " + hw(ph, pw));
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
                       .dilation_w = dw};
  if (!g.fits())
    throw Error(where + ": kernel " + hw(kh, kw) + " with dilation " + hw(dh, dw) +
                " is larger than its padded input; expected a padded input of at least " + hw(g.span_h(), g.span_w()) +
                ", got " + hw(g.height + 2 * ph, g.width + 2 * pw) + " (input " + to_string(in) + ", padding " +
                hw(ph, pw) + ")");
  return g;
}

Shape pooled(const ConvGeometry& g) { return {g.channels, g.out_h(), g.out_w()}; }

}  // namespace

// ---- AvgPool2d

template <class T>
AvgPool2dLayer<T>::AvgPool2dLayer(int index, const Shape& in, const AvgPool2d& s)
    : Layer<T>(index, in, {}),
      g_(pool_geometry("layer " + std::to_string(index) + " (avgpool2d)", in, s.kernel_h, s.kernel_w, s.stride_h,
                       s.stride_w, s.padding_h, s.padding_w, 1, 1)) {
  this->out_ = pooled(g_);
}

template <class T>
void AvgPool2dLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  const int64_t oh = g_.out_h(), ow = g_.out_w(), H = g_.height, W = g_.width;
  const T scale = T(1) / T(g_.kernel_h * g_.kernel_w);
  parallel_for_work(batch * g_.channels, static_cast<double>(oh * ow * g_.kernel_h * g_.kernel_w), [&](int64_t bc) {
    const T* src = in + bc * H * W;
    T* dst = out + bc * oh * ow;
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        T sum = T(0);
        for (int64_t iy = std::max<int64_t>(0, y * g_.stride_h - g_.pad_h);
             iy < std::min(H, y * g_.stride_h - g_.pad_h + g_.kernel_h); ++iy)
          for (int64_t ix = std::max<int64_t>(0, x * g_.stride_w - g_.pad_w);
               ix < std::min(W, x * g_.stride_w - g_.pad_w + g_.kernel_w); ++ix)
            sum += src[iy * W + ix];
        dst[y * ow + x] = sum * scale;
      }
  });
}

template <class T>
void AvgPool2dLayer<T>::backward(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  const int64_t oh = g_.out_h(), ow = g_.out_w(), H = g_.height, W = g_.width;
  const T scale = T(1) / T(g_.kernel_h * g_.kernel_w);
  // one task per (row, channel): every row of the O streams is a separate derivative
  parallel_for_work(batch * streams * g_.channels, static_cast<double>(H * W + oh * ow * g_.kernel_h * g_.kernel_w),
                    [&](int64_t rc) {
                      const T* src = dout + rc * oh * ow;
                      T* dst = din + rc * H * W;
                      std::fill(dst, dst + H * W, T(0));
                      for (int64_t y = 0; y < oh; ++y)
                        for (int64_t x = 0; x < ow; ++x) {
                          const T d = src[y * ow + x] * scale;
                          for (int64_t iy = std::max<int64_t>(0, y * g_.stride_h - g_.pad_h);
                               iy < std::min(H, y * g_.stride_h - g_.pad_h + g_.kernel_h); ++iy)
                            for (int64_t ix = std::max<int64_t>(0, x * g_.stride_w - g_.pad_w);
                                 ix < std::min(W, x * g_.stride_w - g_.pad_w + g_.kernel_w); ++ix)
                              dst[iy * W + ix] += d;
                        }
                    });
}

template <class T>
double AvgPool2dLayer<T>::forward_flops(int64_t batch) const {
  return static_cast<double>(batch * this->out_size() * g_.kernel_h * g_.kernel_w);
}

template <class T>
double AvgPool2dLayer<T>::backward_flops(int64_t batch, int64_t streams) const {
  return static_cast<double>(batch * streams * this->out_size() * g_.kernel_h * g_.kernel_w);
}

template <class T>
int AvgPool2dLayer<T>::record(autograd::Tape<T>& tape, int in, int) const {
  // y = P a with P's entries listed from a loop over every window offset (zero padding contributes nothing
  // but still counts in the divisor kh·kw: count_include_pad)
  const int64_t C = g_.channels, H = g_.height, W = g_.width, oh = this->out_[1], ow = this->out_[2];
  const T weight = T(1) / T(g_.kernel_h * g_.kernel_w);
  std::vector<autograd::SparseEntry<T>> entries;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t i = 0; i < g_.kernel_h; ++i)
          for (int64_t j = 0; j < g_.kernel_w; ++j) {
            const int64_t row = y * g_.stride_h + i - g_.pad_h, col = x * g_.stride_w + j - g_.pad_w;
            if (row >= 0 && row < H && col >= 0 && col < W)
              entries.push_back({(c * oh + y) * ow + x, (c * H + row) * W + col, weight});
          }
  return tape.sparse(in, C * oh * ow, std::move(entries));
}

// ---- MaxPool2d

template <class T>
MaxPool2dLayer<T>::MaxPool2dLayer(int index, const Shape& in, const MaxPool2d& s)
    : Layer<T>(index, in, {}),
      g_(pool_geometry("layer " + std::to_string(index) + " (maxpool2d)", in, s.kernel_h, s.kernel_w, s.stride_h,
                       s.stride_w, s.padding_h, s.padding_w, s.dilation_h, s.dilation_w)) {
  this->out_ = pooled(g_);
}

template <class T>
void MaxPool2dLayer<T>::argmax(const T* sample, int64_t* index) const {
  const int64_t oh = g_.out_h(), ow = g_.out_w(), H = g_.height, W = g_.width;
  for (int64_t c = 0; c < g_.channels; ++c)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        int64_t best = -1;
        for (int64_t i = 0; i < g_.kernel_h; ++i) {
          const int64_t iy = y * g_.stride_h - g_.pad_h + i * g_.dilation_h;
          if (iy < 0 || iy >= H) continue;
          for (int64_t j = 0; j < g_.kernel_w; ++j) {
            const int64_t ix = x * g_.stride_w - g_.pad_w + j * g_.dilation_w;
            if (ix < 0 || ix >= W) continue;
            const int64_t k = (c * H + iy) * W + ix;
            // strictly greater: ties keep the first; a NaN wins, as in PyTorch
            if (best < 0 || sample[k] > sample[best] || std::isnan(sample[k])) best = k;
          }
        }
        index[(c * oh + y) * ow + x] = best;  // ≥ 0: padding ≤ kernel/2 leaves every window a real input
      }
}

template <class T>
void MaxPool2dLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  const int64_t n_in = this->in_size(), n_out = this->out_size();
  parallel_for_work(batch, static_cast<double>(n_out * g_.kernel_h * g_.kernel_w), [&](int64_t b) {
    std::vector<int64_t> index(static_cast<size_t>(n_out));
    argmax(in + b * n_in, index.data());
    for (int64_t k = 0; k < n_out; ++k) out[b * n_out + k] = in[b * n_in + index[k]];
  });
}

template <class T>
void MaxPool2dLayer<T>::backward(const T* in, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  const int64_t n_in = this->in_size(), n_out = this->out_size();
  parallel_for_work(batch, static_cast<double>(n_out * g_.kernel_h * g_.kernel_w + streams * (n_in + n_out)),
                    [&](int64_t b) {
                      std::vector<int64_t> index(static_cast<size_t>(n_out));
                      argmax(in + b * n_in, index.data());
                      for (int64_t s = 0; s < streams; ++s) {
                        const T* src = dout + (b * streams + s) * n_out;
                        T* dst = din + (b * streams + s) * n_in;
                        std::fill(dst, dst + n_in, T(0));
                        for (int64_t k = 0; k < n_out; ++k) dst[index[k]] += src[k];
                      }
                    });
}

template <class T>
double MaxPool2dLayer<T>::forward_flops(int64_t batch) const {
  return static_cast<double>(batch * this->out_size() * g_.kernel_h * g_.kernel_w);
}

template <class T>
int MaxPool2dLayer<T>::record(autograd::Tape<T>& tape, int in, int) const {
  // The maximum is picked here from the recorded input values, by a scan of its own (first maximum wins);
  // the gather then routes the derivative to it.
  const int64_t C = g_.channels, H = g_.height, W = g_.width, oh = this->out_[1], ow = this->out_[2];
  const T* a = tape.data(in);
  std::vector<int64_t> index;
  index.reserve(static_cast<size_t>(C * oh * ow));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        int64_t pick = -1;
        for (int64_t i = 0; i < g_.kernel_h; ++i)
          for (int64_t j = 0; j < g_.kernel_w; ++j) {
            const int64_t row = y * g_.stride_h + i * g_.dilation_h - g_.pad_h;
            const int64_t col = x * g_.stride_w + j * g_.dilation_w - g_.pad_w;
            if (row < 0 || row >= H || col < 0 || col >= W) continue;
            const int64_t k = (c * H + row) * W + col;
            if (pick < 0 || a[k] > a[pick] || std::isnan(a[k])) pick = k;
          }
        index.push_back(pick);
      }
  return tape.gather(in, std::move(index));
}

// ---- global average pooling

template <class T>
GlobalAvgPoolLayer<T>::GlobalAvgPoolLayer(int index, const Shape& in) : Layer<T>(index, in, {}) {
  if (in.size() != 3)
    throw Error("layer " + std::to_string(index) + " (global_avgpool): expects a 3-D input (channels, height, " +
                "width), got shape " + to_string(in));
  this->out_ = {in[0], 1, 1};
}

template <class T>
void GlobalAvgPoolLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  const int64_t C = this->in_[0], HW = this->in_[1] * this->in_[2];
  const auto means = view(in, batch * C, HW).rowwise().mean();
  view(out, batch * C, 1) = means;
}

template <class T>
void GlobalAvgPoolLayer<T>::backward(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  const int64_t rows = batch * streams * this->in_[0], HW = this->in_[1] * this->in_[2];
  const T scale = T(1) / T(HW);
  parallel_for_work(rows, static_cast<double>(HW),
                    [&](int64_t r) { std::fill(din + r * HW, din + (r + 1) * HW, dout[r] * scale); });
}

template <class T>
int GlobalAvgPoolLayer<T>::record(autograd::Tape<T>& tape, int in, int) const {
  const int64_t C = this->in_[0], HW = this->in_[1] * this->in_[2];
  std::vector<autograd::SparseEntry<T>> entries;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < HW; ++k) entries.push_back({c, c * HW + k, T(1) / T(HW)});
  return tape.sparse(in, C, std::move(entries));
}

template class AvgPool2dLayer<float>;
template class AvgPool2dLayer<double>;
template class MaxPool2dLayer<float>;
template class MaxPool2dLayer<double>;
template class GlobalAvgPoolLayer<float>;
template class GlobalAvgPoolLayer<double>;

}  // namespace xntk::detail
