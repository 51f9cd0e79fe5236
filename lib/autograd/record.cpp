#include "autograd/record.hpp"

#include <cmath>
#include <optional>

namespace xntk::autograd {

namespace {

/// Walks the specs in order, taking the model's parameters in state_dict order as layers claim them.
template <class T>
class Recorder {
 public:
  Recorder(Tape<T>& tape, const Sequential<T>& model)
      : tape_(tape), params_(model.named_parameters()), buffers_(model.named_buffers()) {
    ntk_ = model.spec().parameterization == Parameterization::ntk;
  }

  /// The layers in sequence from variable v of per-sample shape `shape` (updated).
  int sequence(const std::vector<LayerSpec>& layers, int v, Shape& shape) {
    for (const auto& l : layers)
      v = std::visit([&](const auto& s) { return layer(s, v, shape); }, static_cast<const LayerVariant&>(l));
    return v;
  }

  void finished() const {
    if (next_ != params_.size()) throw Error("autograd: the model has parameters no layer recorded");
    if (next_buffer_ != buffers_.size()) throw Error("autograd: the model has buffers no layer read");
  }

 private:
  /// The next parameter (as the tensor and its slot).
  int parameter() {
    if (next_ >= params_.size()) throw Error("autograd: more parameters recorded than the model has");
    const size_t slot = next_++;
    return tape_.parameter(*params_[slot].tensor, static_cast<int>(slot));
  }

  /// The next buffer's values.
  const Tensor<T>& buffer() {
    if (next_buffer_ >= buffers_.size()) throw Error("autograd: more buffers read than the model has");
    return *buffers_[next_buffer_++].tensor;
  }

  /// c · x, recorded only when c ≠ 1.
  int scaled(int x, double c) { return c == 1.0 ? x : tape_.scale(x, T(c)); }

  int layer(const Linear& s, int v, Shape& shape) {
    const int64_t in = shape.at(0);
    // ntk parameterisation: y = σ_w/√fan_in · W a + σ_b · b
    const double cw = ntk_ ? s.w_std / std::sqrt(static_cast<double>(in)) : 1.0, cb = ntk_ ? s.b_std : 1.0;
    int y = scaled(tape_.matmul(parameter(), v, s.out_features, in, 1), cw);
    if (s.bias) y = tape_.add(y, scaled(parameter(), cb));
    shape = {s.out_features};
    return y;
  }

  int layer(const Conv2d& s, int v, Shape& shape) {
    // The patch matrix over all C input channels as a gather from the sample's (C, H, W) values, −1 marking the
    // zero padding; with groups, the weight (C_out × K_g) spread into a block-diagonal C_out × C·kh·kw matrix
    // (zeros outside each output channel's group) by a gather too, so that one product does every group.
    const int64_t C = shape.at(0), H = shape.at(1), W = shape.at(2), kh = s.kernel_size.h, kw = s.kernel_size.w;
    const ConvPaddingSizes pad = padding_sizes(s);
    const int64_t oh = (H + pad.before.h + pad.after.h - s.dilation.h * (kh - 1) - 1) / s.stride.h + 1;
    const int64_t ow = (W + pad.before.w + pad.after.w - s.dilation.w * (kw - 1) - 1) / s.stride.w + 1;
    const int64_t P = oh * ow, K = C * kh * kw, Kg = K / s.groups, Og = s.out_channels / s.groups;
    std::vector<int64_t> index(static_cast<size_t>(K * P));
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t row = y * s.stride.h + i * s.dilation.h - pad.before.h;
              const int64_t col = x * s.stride.w + j * s.dilation.w - pad.before.w;
              const bool inside = row >= 0 && row < H && col >= 0 && col < W;
              index[static_cast<size_t>(((c * kh + i) * kw + j) * P + y * ow + x)] =
                  inside ? (c * H + row) * W + col : -1;
            }
    const double cw = ntk_ ? s.w_std / std::sqrt(static_cast<double>(Kg)) : 1.0, cb = ntk_ ? s.b_std : 1.0;
    const int cols = tape_.gather(v, std::move(index));
    int weight = parameter();
    if (s.groups != 1) {
      std::vector<int64_t> spread(static_cast<size_t>(s.out_channels * K), -1);
      for (int64_t co = 0; co < s.out_channels; ++co)
        for (int64_t k = 0; k < Kg; ++k) spread[static_cast<size_t>(co * K + co / Og * Kg + k)] = co * Kg + k;
      weight = tape_.gather(weight, std::move(spread));
    }
    int y = scaled(tape_.matmul(weight, cols, s.out_channels, K, P), cw);
    if (s.bias) y = tape_.add_bias(y, scaled(parameter(), cb), s.out_channels, P);
    shape = {s.out_channels, oh, ow};
    return y;
  }

  int layer(const AvgPool2d& s, int v, Shape& shape) {
    // y = P a with P's entries listed from a loop over every window offset (zero padding contributes nothing
    // but still counts in the divisor kh·kw: count_include_pad)
    const int64_t C = shape.at(0), H = shape.at(1), W = shape.at(2);
    const int64_t sh = s.stride.h == 0 ? s.kernel_size.h : s.stride.h,
                  sw = s.stride.w == 0 ? s.kernel_size.w : s.stride.w;
    const int64_t oh = (H + 2 * s.padding.h - s.kernel_size.h) / sh + 1,
                  ow = (W + 2 * s.padding.w - s.kernel_size.w) / sw + 1;
    const T weight = T(1) / T(s.kernel_size.h * s.kernel_size.w);
    std::vector<SparseEntry<T>> entries;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x)
          for (int64_t i = 0; i < s.kernel_size.h; ++i)
            for (int64_t j = 0; j < s.kernel_size.w; ++j) {
              const int64_t row = y * sh + i - s.padding.h, col = x * sw + j - s.padding.w;
              if (row >= 0 && row < H && col >= 0 && col < W)
                entries.push_back({(c * oh + y) * ow + x, (c * H + row) * W + col, weight});
            }
    shape = {C, oh, ow};
    return tape_.sparse(v, C * oh * ow, std::move(entries));
  }

  int layer(const MaxPool2d& s, int v, Shape& shape) {
    // The maximum is picked here from the recorded input values, by a scan of its own (first maximum wins,
    // a NaN wins); the gather then routes the derivative to it.
    const int64_t C = shape.at(0), H = shape.at(1), W = shape.at(2);
    const int64_t sh = s.stride.h == 0 ? s.kernel_size.h : s.stride.h,
                  sw = s.stride.w == 0 ? s.kernel_size.w : s.stride.w;
    const int64_t oh = (H + 2 * s.padding.h - s.dilation.h * (s.kernel_size.h - 1) - 1) / sh + 1;
    const int64_t ow = (W + 2 * s.padding.w - s.dilation.w * (s.kernel_size.w - 1) - 1) / sw + 1;
    const T* a = tape_.data(v);
    std::vector<int64_t> index;
    index.reserve(static_cast<size_t>(C * oh * ow));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x) {
          int64_t pick = -1;
          for (int64_t i = 0; i < s.kernel_size.h; ++i)
            for (int64_t j = 0; j < s.kernel_size.w; ++j) {
              const int64_t row = y * sh + i * s.dilation.h - s.padding.h;
              const int64_t col = x * sw + j * s.dilation.w - s.padding.w;
              if (row < 0 || row >= H || col < 0 || col >= W) continue;
              const int64_t k = (c * H + row) * W + col;
              if (pick < 0 || a[k] > a[pick] || std::isnan(a[k])) pick = k;
            }
          index.push_back(pick);
        }
    shape = {C, oh, ow};
    return tape_.gather(v, std::move(index));
  }

  int layer(const GlobalAvgPool&, int v, Shape& shape) {
    const int64_t C = shape.at(0), HW = shape.at(1) * shape.at(2);
    std::vector<SparseEntry<T>> entries;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < HW; ++k) entries.push_back({c, c * HW + k, T(1) / T(HW)});
    shape = {C, 1, 1};
    return tape_.sparse(v, C, std::move(entries));
  }

  int layer(const AdaptiveAvgPool2d& s, int v, Shape& shape) {
    // PyTorch's windows, rows [⌊i·H/OH⌋, ⌈(i+1)·H/OH⌉) and columns likewise, each averaged
    const int64_t C = shape.at(0), H = shape.at(1), W = shape.at(2);
    const int64_t oh = s.output_size.h == 0 ? H : s.output_size.h, ow = s.output_size.w == 0 ? W : s.output_size.w;
    std::vector<SparseEntry<T>> entries;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const int64_t r0 = i * H / oh, r1 = ((i + 1) * H + oh - 1) / oh;
          const int64_t c0 = j * W / ow, c1 = ((j + 1) * W + ow - 1) / ow;
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t k = c0; k < c1; ++k)
              entries.push_back({(c * oh + i) * ow + j, (c * H + r) * W + k, T(1) / T((r1 - r0) * (c1 - c0))});
        }
    shape = {C, oh, ow};
    return tape_.sparse(v, C * oh * ow, std::move(entries));
  }

  int layer(const LayerNorm& s, int v, Shape& shape) {
    // PyTorch's definition from primitives: per group of the D trailing values, μ = mean(x), c = x − μ,
    // σ² = mean(c ⊙ c), x̂ = c / √(σ² + ε), then y = γ ⊙ x̂ + β broadcast over the groups by gathers
    const int64_t n = numel(shape);
    const size_t k = s.normalized_shape.size();
    int64_t D = 1;
    for (size_t i = shape.size() - k; i < shape.size(); ++i) D *= shape[i];
    const int64_t G = n / D;
    std::optional<int> weight, bias;
    if (s.elementwise_affine) {
      weight = parameter();
      if (s.bias) bias = parameter();
    }
    std::vector<SparseEntry<T>> mean_of;
    std::vector<int64_t> group(static_cast<size_t>(n)), element(static_cast<size_t>(n));
    for (int64_t g = 0; g < G; ++g)
      for (int64_t d = 0; d < D; ++d) {
        mean_of.push_back({g, g * D + d, T(1) / T(D)});
        group[static_cast<size_t>(g * D + d)] = g;
        element[static_cast<size_t>(g * D + d)] = d;
      }
    const int mean = tape_.sparse(v, G, mean_of);
    const int centred = tape_.add(v, tape_.scale(tape_.gather(mean, group), T(-1)));
    const int var = tape_.sparse(tape_.mul(centred, centred), G, std::move(mean_of));
    const T e = T(s.eps);
    const int inv = tape_.map(var, [e](T x) {
      const T y = T(1) / std::sqrt(x + e);
      return std::pair<T, T>{y, T(-0.5) * y * y * y};
    });
    int y = tape_.mul(centred, tape_.gather(inv, std::move(group)));
    if (weight) y = tape_.mul(y, tape_.gather(*weight, element));
    if (bias) y = tape_.add(y, tape_.gather(*bias, std::move(element)));
    return y;
  }

  int layer(const BatchNorm2d& s, int v, Shape& shape) { return batch_norm(s.affine, s.eps, v, shape); }
  int layer(const BatchNorm1d& s, int v, Shape& shape) { return batch_norm(s.affine, s.eps, v, shape); }

  int batch_norm(bool affine, double eps, int v, Shape& shape) {
    // PyTorch's eval-mode definition, (x − running_mean) / sqrt(running_var + eps) * weight + bias, with the
    // running statistics broadcast over the positions as constants and weight broadcast by a gather
    const int64_t C = shape.at(0), P = numel(shape) / C;
    std::optional<int> weight, bias;
    if (affine) {
      weight = parameter();
      bias = parameter();
    }
    const Tensor<T>& mean = buffer();
    const Tensor<T>& var = buffer();
    buffer();  // num_batches_tracked: no part of eval mode
    std::vector<T> minus_mean(static_cast<size_t>(C * P)), inv_std(static_cast<size_t>(C * P));
    std::vector<int64_t> channel(static_cast<size_t>(C * P));
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = 0; p < P; ++p) {
        minus_mean[static_cast<size_t>(c * P + p)] = -mean[c];
        inv_std[static_cast<size_t>(c * P + p)] = T(1) / std::sqrt(var[c] + T(eps));
        channel[static_cast<size_t>(c * P + p)] = c;
      }
    const int centred = tape_.add(v, tape_.input(minus_mean.data(), C * P));
    int y = tape_.mul(centred, tape_.input(inv_std.data(), C * P));
    if (!affine) return y;
    y = tape_.mul(y, tape_.gather(*weight, std::move(channel)));
    return tape_.add_bias(y, *bias, C, P);
  }

  int layer(const Flatten&, int v, Shape& shape) {
    shape = {numel(shape)};
    return v;
  }

  int layer(const Activation& s, int v, Shape&) { return tape_.activation(v, s); }

  int layer(const SequentialBlock& s, int v, Shape& shape) { return sequence(s.layers, v, shape); }

  int layer(const Residual& s, int v, Shape& shape) {
    // body(x) + shortcut(x): the body's parameters come first in state_dict order, then the shortcut's
    Shape body_shape = shape, shortcut_shape = shape;
    const int b = sequence(s.body, v, body_shape);
    const int c = s.shortcut.empty() ? v : sequence(s.shortcut, v, shortcut_shape);
    if (body_shape != shortcut_shape) throw Error("autograd: a residual block's branches give different shapes");
    shape = body_shape;
    return tape_.add(b, c);
  }

  Tape<T>& tape_;
  std::vector<NamedParameter<T>> params_, buffers_;
  size_t next_ = 0, next_buffer_ = 0;
  bool ntk_ = false;
};

}  // namespace

template <class T>
int record(Tape<T>& tape, const Sequential<T>& model, int in) {
  Recorder<T> r(tape, model);
  Shape shape = model.input_shape();
  const int out = r.sequence(model.spec().layers, in, shape);
  r.finished();
  return out;
}

template int record(Tape<float>&, const Sequential<float>&, int);
template int record(Tape<double>&, const Sequential<double>&, int);

}  // namespace xntk::autograd
