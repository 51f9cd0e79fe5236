#include "layers/conv2d.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "autograd/tape.hpp"
#include "batch.hpp"
#include "cpu/backend.hpp"
#include "cpu/cache.hpp"
#include "cpu/conv_backward.hpp"
#include "cpu/grain.hpp"
#include "cpu/masked_product.hpp"

namespace xntk::detail {

namespace {

/// Sample i's O·C_out × P delta rows: its own, or the O rows every sample shares.
template <class T>
const T* deltas_of(const Side<T>& s, int64_t i, int64_t rows_per_sample) {
  return s.shared ? s.delta : s.delta + i * rows_per_sample;
}

std::string where(int index) { return "layer " + std::to_string(index) + " (conv2d)"; }
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

/// Adds s·⟨F_a(i, o), F_b(j, o')⟩ into dst (n1, n2, per) for samples i ∈ [i0, i0 + na) of side a and
/// j ∈ [j0, j0 + nb) of side b, where row (i, o) of a side's F (width values) lies at (i·O + o)·width and
/// fa, fb point at samples i0 and j0. On a symmetric block (t.same) a diagonal chunk (i0 == j0, fa == fb)
/// computes and reads one triangle, and an off-diagonal chunk also writes the mirrored entries from the
/// same values: either way Θ[i,j,o,o'] and Θ[j,i,o',o] are the same floating-point operations.
template <class T>
void add_row_gram(const T* fa, int64_t i0, int64_t na, const T* fb, int64_t j0, int64_t nb, int64_t width, T s,
                  const ComponentTarget<T>& t, int64_t n2, T* dst) {
  const int64_t O = t.outputs;
  const bool diag = t.same && i0 == j0, mirror = t.same && i0 != j0;
  const double sym = diag ? 0.5 : 1.0, writes = mirror ? 2.0 : 1.0;
  if (t.mode == Mode::full) {
    const int64_t r1 = na * O, r2 = nb * O;
    RowMat<T> D(r1, r2);
    if (diag)
      gram_lower(fa, r1, width, D.data());
    else
      gram(fa, r1, fb, r2, width, D.data());
    *t.flops += sym * 2.0 * static_cast<double>(r1 * r2 * width) + writes * static_cast<double>(r1 * r2);
    parallel_for_work(na, static_cast<double>(nb * O * O), [&](int64_t i) {
      for (int64_t j = 0; j < nb; ++j) {
        T* tij = dst + ((i0 + i) * n2 + j0 + j) * O * O;
        T* tji = mirror ? dst + ((j0 + j) * n2 + i0 + i) * O * O : nullptr;
        for (int64_t o = 0; o < O; ++o)
          for (int64_t p = 0; p < O; ++p) {
            const T v = s * (diag ? lower(D.data(), r2, i * O + o, j * O + p) : D(i * O + o, j * O + p));
            tij[o * O + p] += v;
            if (tji) tji[p * O + o] += v;
          }
      }
    });
    return;
  }
  // trace: Σ_o ⟨F(i,o), F(j,o)⟩ is one Gram over a sample's O·width contiguous values;
  // diagonal: one Gram per output over rows O·width apart
  const int64_t per = t.mode == Mode::trace ? 1 : O, inner = t.mode == Mode::trace ? O * width : width;
  RowMat<T> D(na, nb);
  for (int64_t o = 0; o < per; ++o) {
    if (diag)
      gram_lower(fa + o * width, na, inner, D.data(), O * width);
    else
      gram(fa + o * width, na, fb + o * width, nb, inner, D.data(), O * width, O * width);
    parallel_for_work(na, static_cast<double>(nb), [&](int64_t i) {
      for (int64_t j = 0; j < nb; ++j) {
        const T v = s * (diag ? lower(D.data(), nb, i, j) : D(i, j));
        dst[((i0 + i) * n2 + j0 + j) * per + o] += v;
        if (mirror) dst[((j0 + j) * n2 + i0 + i) * per + o] += v;
      }
    });
  }
  *t.flops += static_cast<double>(per) *
              (sym * 2.0 * static_cast<double>(na * nb * inner) + writes * static_cast<double>(na * nb));
}

}  // namespace

template <class T>
Conv2dLayer<T>::Conv2dLayer(int index, const Shape& in, const Conv2d& spec, Parameterization p, Rng& rng)
    : Layer<T>(index, in, {}), out_channels_(spec.out_channels), method_(spec.method), has_bias_(spec.bias) {
  if (in.size() != 3)
    throw Error(where(index) + ": expects a 3-D input (channels, height, width), got shape " + to_string(in));
  if (out_channels_ <= 0)
    throw Error(where(index) + ": out_channels must be positive, got " + std::to_string(out_channels_));
  if (spec.in_channels != 0 && spec.in_channels != in[0])
    throw Error(where(index) + ": in_channels is " + std::to_string(spec.in_channels) + " but the input " +
                to_string(in) + " has " + std::to_string(in[0]) + " channels");
  if (spec.kernel_h <= 0 || spec.kernel_w <= 0)
    throw Error(where(index) + ": kernel_size must be positive, got " + hw(spec.kernel_h, spec.kernel_w));
  if (spec.stride_h <= 0 || spec.stride_w <= 0)
    throw Error(where(index) + ": stride must be positive, got " + hw(spec.stride_h, spec.stride_w));
  if (spec.dilation_h <= 0 || spec.dilation_w <= 0)
    throw Error(where(index) + ": dilation must be positive, got " + hw(spec.dilation_h, spec.dilation_w));
  if (spec.padding_h < 0 || spec.padding_w < 0)
    throw Error(where(index) + ": padding must be non-negative, got " + hw(spec.padding_h, spec.padding_w));
  if (method_ != "auto" && method_ != "gradients" && method_ != "positions")
    throw Error(where(index) + ": method must be \"auto\", \"gradients\" or \"positions\", got \"" + method_ + "\"");
  if (!(spec.w_std > 0) || !(spec.b_std >= 0) || !std::isfinite(spec.w_std) || !std::isfinite(spec.b_std))
    throw Error(where(index) + ": w_std must be positive and b_std non-negative");
  g_ = {.channels = in[0],
        .height = in[1],
        .width = in[2],
        .kernel_h = spec.kernel_h,
        .kernel_w = spec.kernel_w,
        .stride_h = spec.stride_h,
        .stride_w = spec.stride_w,
        .pad_h = spec.padding_h,
        .pad_w = spec.padding_w,
        .dilation_h = spec.dilation_h,
        .dilation_w = spec.dilation_w};
  if (!g_.fits())
    throw Error(where(index) + ": kernel " + hw(spec.kernel_h, spec.kernel_w) + " with dilation " +
                hw(spec.dilation_h, spec.dilation_w) + " is larger than its padded input; expected a padded input of " +
                "at least " + hw(g_.span_h(), g_.span_w()) + ", got " +
                hw(g_.height + 2 * g_.pad_h, g_.width + 2 * g_.pad_w) + " (input " + to_string(in) + ", padding " +
                hw(g_.pad_h, g_.pad_w) + ")");
  this->out_ = {out_channels_, g_.out_h(), g_.out_w()};

  const int64_t K = g_.rows();
  weight_ = Tensor<T>({out_channels_, g_.channels, g_.kernel_h, g_.kernel_w});
  if (has_bias_) bias_ = Tensor<T>({out_channels_});
  const double fan_in = static_cast<double>(K);
  std::tie(cw_, cb_) = initialize(weight_, bias_, fan_in, p, spec.w_std, spec.b_std, rng);
}

template <class T>
void Conv2dLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  const int64_t K = g_.rows(), P = g_.positions(), C = out_channels_, n_in = this->in_size();
  auto add_bias = [&](int64_t s) {
    if (!has_bias_) return;
    auto y = view(out + s * C * P, C, P);
    for (int64_t c = 0; c < C; ++c) y.row(c).array() += T(cb_) * bias_[c];
  };
  if (kDirectConvBackward && g_.stride_h == 1 && g_.stride_w == 1 && g_.dilation_h == 1 && g_.dilation_w == 1 &&
      C >= 8 && g_.channels >= 8 && g_.pad_h < g_.kernel_h && g_.pad_w < g_.kernel_w) {
    // stride 1: the forward is the input derivative of the transposed convolution (input and output
    // channels swapped, the kernel flipped, padding kh − 1 − pad), which the direct kernel computes
    // without im2col. The tutorial CNN's conv2 and conv3 forwards (20 and 5 images, 2 threads, three
    // alternating runs): 1.7–1.8 and 1.5–1.6 ms against 2.6–3.2 and 1.9–2.5 ms through im2col and a GEMM
    // per image. With fewer than 8 input channels (conv1: 3) the GEMM over K = C_in·kh·kw stays faster:
    // 0.47–0.60 ms against 0.70–0.91.
    const ConvGeometry t{.channels = C,
                         .height = g_.out_h(),
                         .width = g_.out_w(),
                         .kernel_h = g_.kernel_h,
                         .kernel_w = g_.kernel_w,
                         .pad_h = g_.kernel_h - 1 - g_.pad_h,
                         .pad_w = g_.kernel_w - 1 - g_.pad_w};
    // the kernel's weight order [co'][i][j][ci'] (conv_backward_weight) with co' = ci, ci' = co, flipped
    const int64_t ci_count = g_.channels, kh = g_.kernel_h, kw = g_.kernel_w;
    Buffer<T> wr;
    wr.resize(ci_count * C * kh * kw);
    for (int64_t co = 0; co < C; ++co)
      for (int64_t ci = 0; ci < ci_count; ++ci)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            wr[((ci * kh + i) * kw + j) * C + co] = weight_[((co * ci_count + ci) * kh + kh - 1 - i) * kw + kw - 1 - j];
    parallel_for_work(batch, static_cast<double>(C * K * P), [&](int64_t s) {
      Buffer<T> scratch;
      scratch.resize(conv_backward_scratch<T>(t, ci_count));
      conv_backward_direct(t, ci_count, T(cw_), wr.data(), in + s * n_in, out + s * C * P, scratch.data());
      add_bias(s);
    });
    return;
  }
  parallel_for_work(batch, static_cast<double>(C * K * P), [&](int64_t s) {
    Buffer<T> U;  // from the block cache: no page faults after the first sample
    U.resize(K * P);
    im2col(in + s * n_in, g_, U.data());
    gemm(false, false, C, P, K, T(cw_), weight_.data(), K, U.data(), P, T(0), out + s * C * P, P);
    add_bias(s);
  });
}

template <class T>
void Conv2dLayer<T>::backward(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  const int64_t K = g_.rows(), P = g_.positions(), C = out_channels_, n_in = this->in_size();
  if (kDirectConvBackward && g_.stride_h == 1 && g_.stride_w == 1 && g_.dilation_h == 1 && g_.dilation_w == 1 &&
      g_.channels >= 8) {
    // stride 1: accumulate each input row directly instead of GEMM + col2im (cpu/conv_backward.hpp)
    Buffer<T> wr;
    wr.resize(C * K);
    conv_backward_weight(g_, C, weight_.data(), wr.data());
    parallel_for_work(batch * streams, static_cast<double>(C * K * P), [&](int64_t r) {
      Buffer<T> scratch;
      scratch.resize(conv_backward_scratch<T>(g_, C));
      conv_backward_direct(g_, C, T(cw_), wr.data(), dout + r * C * P, din + r * n_in, scratch.data());
    });
    return;
  }
  parallel_for_work(batch * streams, static_cast<double>(C * K * P), [&](int64_t r) {
    Buffer<T> cols;
    cols.resize(K * P);
    gemm(true, false, K, P, C, T(cw_), weight_.data(), K, dout + r * C * P, P, T(0), cols.data(), P);
    std::fill(din + r * n_in, din + (r + 1) * n_in, T(0));
    col2im(cols.data(), g_, din + r * n_in);
  });
}

template <class T>
double Conv2dLayer<T>::forward_flops(int64_t batch) const {
  return 2.0 * static_cast<double>(batch) * static_cast<double>(out_channels_ * g_.rows() * g_.positions());
}

template <class T>
double Conv2dLayer<T>::backward_flops(int64_t batch, int64_t streams) const {
  return 2.0 * static_cast<double>(batch * streams) * static_cast<double>(out_channels_ * g_.rows() * g_.positions());
}

template <class T>
std::vector<NamedParameter<T>> Conv2dLayer<T>::parameters() const {
  std::vector<NamedParameter<T>> p{{std::to_string(this->index_) + ".weight", &weight_}};
  if (has_bias_) p.push_back({std::to_string(this->index_) + ".bias", &bias_});
  return p;
}

template <class T>
double Conv2dLayer<T>::order_flops(ConvOrder order, int64_t n1, int64_t n2, int64_t outputs) const {
  const double n = static_cast<double>(n1), m = static_cast<double>(n2), O = static_cast<double>(outputs);
  const double C = static_cast<double>(out_channels_), K = static_cast<double>(g_.rows()),
               P = static_cast<double>(g_.positions());
  if (order == ConvOrder::gradients) return 2.0 * (n + m) * O * C * P * K + 2.0 * n * m * O * O * C * K;
  return 2.0 * n * m * (P * P * K + O * C * P * P + O * O * C * P);
}

template <class T>
ConvOrder Conv2dLayer<T>::order(int64_t n1, int64_t n2, int64_t outputs) const {
  if (method_ == "gradients") return ConvOrder::gradients;
  if (method_ == "positions") return ConvOrder::positions;
  return order_flops(ConvOrder::positions, n1, n2, outputs) < order_flops(ConvOrder::gradients, n1, n2, outputs)
             ? ConvOrder::positions
             : ConvOrder::gradients;
}

template <class T>
std::string Conv2dLayer<T>::method(int64_t n1, int64_t n2, int64_t outputs) const {
  return order(n1, n2, outputs) == ConvOrder::gradients ? "gradients" : "positions";
}

template <class T>
int64_t Conv2dLayer<T>::gradient_chunk(int64_t outputs) const {
  const double per_sample = static_cast<double>(sizeof(T)) * static_cast<double>(outputs * out_channels_ * g_.rows());
  return std::max<int64_t>(1, static_cast<int64_t>(kGradientChunkBytes / per_sample));
}

template <class T>
double Conv2dLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs) const {
  const double O = static_cast<double>(outputs), C = static_cast<double>(out_channels_),
               K = static_cast<double>(g_.rows()), P = static_cast<double>(g_.positions());
  const double n = static_cast<double>(n1), m = static_cast<double>(n2);
  // bias: the deltas' sums over positions per side, and their Gram (full mode is the largest)
  double values = has_bias_ ? (n + m) * O * C + n * m * O * O : 0.0;
  if (order(n1, n2, outputs) == ConvOrder::gradients) {
    const int64_t chunk = gradient_chunk(outputs);
    const double c1 = static_cast<double>(std::min(n1, chunk)), c2 = static_cast<double>(std::min(n2, chunk));
    values += (c1 + c2) * O * C * K + c1 * c2 * O * O + threads() * K * P;
  } else {
    values += (n + m) * K * P + threads() * (P * P + O * C * P + O * O);
  }
  return static_cast<double>(sizeof(T)) * values;
}

template <class T>
void Conv2dLayer<T>::gradients(const Side<T>& s, int64_t first, int64_t n, int64_t outputs, T* g, double* flops) const {
  const int64_t K = g_.rows(), P = g_.positions(), C = out_channels_, n_in = this->in_size(), rows = outputs * C;
  // After a ReLU a sample's deltas are zero at the positions where it zeroed the channel, in all O
  // streams alike: masked_product then skips those patches, channel by channel (its groups are the
  // channels, each with O rows C·P apart). Where it pays (xntk_bench, alternating with the GEMM-only
  // build): the tutorial CNN's 784 positions (K = 288), 20 × 5 images: 97.8–119 ms against 105–111,
  // 100 images: 0.48–0.53 s against 0.49–0.56; at 64 positions (workload 6's second conv, K = 144) it
  // was slower, 3.26–3.76 s against 2.69–2.90 for the workload, so it needs 256 positions, and most
  // of K in whole register strips (the rest of the columns are summed one by one).
  const int64_t strip = 2 * kLanes<T>, whole = K / strip * strip;
  // (masked_product itself declines more channels or outputs than it takes, and dense deltas)
  const bool masked = kMaskedProduct && !s.shared && P >= 256 && whole >= 2 * strip && 4 * (K - whole) <= K;
  std::vector<double> skipped(static_cast<size_t>(n), 0.0);
  parallel_for_work(n, static_cast<double>(rows * K * P), [&](int64_t i) {
    Buffer<T> U;
    U.resize(P * K);
    im2row(s.in + (first + i) * n_in, g_, U.data());
    const T* d = deltas_of(s, first + i, rows * P);
    T* gi = g + i * rows * K;
    const double before = masked_skipped_flops;
    if (masked && masked_product_strided(C, outputs, P, K, T(1), d, P, C * P, U.data(), gi, K, C * K)) {
      skipped[static_cast<size_t>(i)] = masked_skipped_flops - before;
      return;
    }
    // a sample's O·C_out delta rows (each over the P positions) are contiguous: one GEMM per sample
    gemm(false, false, rows, K, P, T(1), d, P, U.data(), K, T(0), gi, K);
  });
  double done = 2.0 * static_cast<double>(n * rows) * static_cast<double>(P * K);
  for (const double v : skipped) done -= v;
  *flops += done;
}

template <class T>
void Conv2dLayer<T>::gradients_order(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t,
                                     int64_t chunk) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, CK = out_channels_ * g_.rows();
  const T cw2 = T(cw_ * cw_);
  // from the block cache, uninitialised (gradients() writes every value): a zero-filled vector cost
  // a fill, and page faults whenever malloc had given the pages back
  Buffer<T> ga, gb;
  ga.resize(std::min(n1, chunk) * O * CK);
  // the other side's gradients are formed once when they fit one chunk, otherwise again for each chunk of a
  const bool b_once = !t.same && n2 <= chunk;
  if (b_once) {
    gb.resize(n2 * O * CK);
    gradients(b, 0, n2, O, gb.data(), t.flops);
  }
  for (int64_t i0 = 0; i0 < n1; i0 += chunk) {
    const int64_t na = std::min(chunk, n1 - i0);
    gradients(a, i0, na, O, ga.data(), t.flops);
    // symmetric block: chunk pairs j0 ≤ i0 only, add_row_gram mirrors them
    const int64_t j_end = t.same ? i0 + 1 : n2;
    for (int64_t j0 = 0; j0 < j_end; j0 += chunk) {
      const int64_t nb = std::min(chunk, n2 - j0);
      if (!b_once && !(t.same && j0 == i0)) {
        gb.resize(nb * O * CK);
        gradients(b, j0, nb, O, gb.data(), t.flops);
      }
      const T* fb = t.same && j0 == i0 ? ga.data() : gb.data();
      add_row_gram(ga.data(), i0, na, fb, j0, nb, CK, cw2, t, n2, t.weight);
    }
  }
}

template <class T>
void Conv2dLayer<T>::positions_order(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, C = out_channels_, K = g_.rows(), P = g_.positions();
  const int64_t n_in = this->in_size(), per = per_pair(O, t.mode), CP = C * P;
  const T cw2 = T(cw_ * cw_);
  std::vector<T> ua(static_cast<size_t>(n1 * K * P)), ub(t.same ? 0 : static_cast<size_t>(n2 * K * P));
  parallel_for_work(n1, static_cast<double>(K * P),
                    [&](int64_t i) { im2col(a.in + i * n_in, g_, ua.data() + i * K * P); });
  if (!t.same)
    parallel_for_work(n2, static_cast<double>(K * P),
                      [&](int64_t j) { im2col(b.in + j * n_in, g_, ub.data() + j * K * P); });
  const T* ubp = t.same ? ua.data() : ub.data();

  // Σ_{p,q} Σ_c δ_o[c,p] (UᵀU')[p,q] δ'_o'[c,q] = ⟨δ_o (UᵀU'), δ'_o'⟩_F: per pair, the positions Gram UᵀU'
  // (P × P'), then M = Δ (UᵀU') for all O·C_out delta rows at once, then O × O dot products of length C_out·P'.
  // A symmetric block computes pairs j ≤ i only and writes each value to both places (exact symmetry);
  // thread i writes blocks (i, j ≤ i) and (j < i, i), which no other thread touches.
  parallel_for_work(n1, static_cast<double>(n2 * P * (P * K + O * C * P + O * O * C)), [&](int64_t i) {
    RowMat<T> UU(P, P), M(O * C, P), Th(O, O);
    const int64_t j_end = t.same ? i + 1 : n2;
    for (int64_t j = 0; j < j_end; ++j) {
      gemm(true, false, P, P, K, T(1), ua.data() + i * K * P, P, ubp + j * K * P, P, T(0), UU.data(), P);
      gemm(false, false, O * C, P, P, T(1), deltas_of(a, i, O * CP), P, UU.data(), P, T(0), M.data(), P);
      const auto m = view(M.data(), O, CP);
      const auto dj = view(deltas_of(b, j, O * CP), O, CP);
      T* tij = t.weight + (i * n2 + j) * per;
      T* tji = t.same && i != j ? t.weight + (j * n2 + i) * per : nullptr;
      switch (t.mode) {
        case Mode::full: {
          gemm(false, true, O, O, CP, T(1), M.data(), CP, dj.data(), CP, T(0), Th.data(), O);
          for (int64_t o = 0; o < O; ++o)
            for (int64_t q = 0; q < O; ++q) {
              // Θ(x, x) itself: its (o, o') and (o', o) must agree exactly, so read one triangle
              const T v = cw2 * (t.same && i == j && q > o ? Th(q, o) : Th(o, q));
              tij[o * O + q] += v;
              if (tji) tji[q * O + o] += v;
            }
          break;
        }
        case Mode::trace: {
          const T v = cw2 * m.cwiseProduct(dj).sum();
          tij[0] += v;
          if (tji) tji[0] += v;
          break;
        }
        case Mode::diagonal:
          for (int64_t o = 0; o < O; ++o) {
            const T v = cw2 * m.row(o).dot(dj.row(o));
            tij[o] += v;
            if (tji) tji[o] += v;
          }
          break;
      }
    }
  });
  const double pairs = t.same ? 0.5 * static_cast<double>(n1 * (n1 + 1)) : static_cast<double>(n1 * n2);
  const double contract = t.mode == Mode::full ? static_cast<double>(O * O * CP) : static_cast<double>(O * CP);
  *t.flops += pairs * 2.0 * (static_cast<double>(P * P * K) + static_cast<double>(O * CP * P) + contract);
}

template <class T>
void Conv2dLayer<T>::weight_component(ConvOrder order, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t,
                                      int64_t chunk) const {
  if (a.delta == nullptr || b.delta == nullptr)
    throw Error(where(this->index_) + ": components need materialised output derivatives");
  if (order == ConvOrder::gradients)
    gradients_order(a, b, t, chunk > 0 ? chunk : gradient_chunk(t.outputs));
  else
    positions_order(a, b, t);
}

template <class T>
void Conv2dLayer<T>::components(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  weight_component(order(a.batch, b.batch, t.outputs), a, b, t);
  if (!has_bias_) return;
  // δ_o 1: each delta row summed over the positions, (batch·O × C_out) per side (shared deltas are summed
  // once and repeated: these rows are small next to the weight component's)
  const int64_t O = t.outputs, C = out_channels_, P = g_.positions();
  auto sums = [&](const Side<T>& s) {
    RowMat<T> r(s.batch * O * C, 1);
    if (s.shared) {
      r.topRows(O * C) = view(s.delta, O * C, P).rowwise().sum();
      for (int64_t i = 1; i < s.batch; ++i) r.middleRows(i * O * C, O * C) = r.topRows(O * C);
    } else {  // by sample over the threads: serial, these sums took ~1 ms of the tutorial CNN's 60
      parallel_for_work(s.batch, static_cast<double>(O * C * P), [&](int64_t i) {
        r.middleRows(i * O * C, O * C) = view(s.delta + i * O * C * P, O * C, P).rowwise().sum();
      });
    }
    *t.flops += static_cast<double>((s.shared ? 1 : s.batch) * O * C * P);
    return r;
  };
  const RowMat<T> sa = sums(a), sb = t.same ? RowMat<T>() : sums(b);
  add_row_gram(sa.data(), 0, a.batch, t.same ? sa.data() : sb.data(), 0, b.batch, C, T(cb_ * cb_), t, b.batch, t.bias);
}

template <class T>
int Conv2dLayer<T>::record(autograd::Tape<T>& tape, int in, int first_slot) const {
  // The patch matrix as a gather from the sample's (C, H, W) values, from a loop of its own (the explicit
  // path's im2col is not used here, so a mistake in it cannot cancel out), −1 marking the zero padding.
  const int64_t C_in = g_.channels, H = g_.height, W = g_.width, kh = g_.kernel_h, kw = g_.kernel_w;
  const int64_t oh = this->out_[1], ow = this->out_[2], P = oh * ow, K = C_in * kh * kw;
  std::vector<int64_t> index(static_cast<size_t>(K * P));
  for (int64_t y = 0; y < oh; ++y)
    for (int64_t x = 0; x < ow; ++x)
      for (int64_t c = 0; c < C_in; ++c)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t row = y * g_.stride_h + i * g_.dilation_h - g_.pad_h;
            const int64_t col = x * g_.stride_w + j * g_.dilation_w - g_.pad_w;
            const bool inside = row >= 0 && row < H && col >= 0 && col < W;
            index[static_cast<size_t>(((c * kh + i) * kw + j) * P + y * ow + x)] =
                inside ? (c * H + row) * W + col : -1;
          }
  const int cols = tape.gather(in, std::move(index));
  int y = tape.matmul(tape.parameter(weight_, first_slot), cols, out_channels_, K, P);
  if (cw_ != 1.0) y = tape.scale(y, T(cw_));
  if (has_bias_) {
    int b = tape.parameter(bias_, first_slot + 1);
    if (cb_ != 1.0) b = tape.scale(b, T(cb_));
    y = tape.add_bias(y, b, out_channels_, P);
  }
  return y;
}

template class Conv2dLayer<float>;
template class Conv2dLayer<double>;

}  // namespace xntk::detail
