// The input derivative of a stride-1, undilated convolution for one derivative row, computed directly:
//   din[ci, y, x] = alpha · Σ_(co, i, j) W[co, ci, i, j] · dout[co, y + pad_h − i, x + pad_w − j]
// (terms outside dout are zero). The GEMM route forms Wᵀ·dout as a (C_in·kh·kw × OH·OW) matrix, nine
// times the image for a 3 × 3 kernel, and scatters it back (col2im), with C_out as the GEMM's inner
// dimension. Here dout is copied once into a zero-bordered buffer, and each 8 input channels × 2 vectors
// of one image row accumulate in registers over (co, i, j), each weight broadcast into a vector of
// neighbouring columns. Microbenchmark, 250 derivative rows, 2 threads, OpenBLAS's OpenMP build (medians
// of 7): the tutorial CNN's conv2 (32 → 32 channels, 3 × 3, 30 × 30 input) 30–33 ms against 36–37 ms
// for GEMM + col2im; with padding 1, 34 against 44 ms; 16 channels at 16 × 16, 6.3 against 11.1 ms.
// 2026-12-05 on a 2-core Intel Xeon (Emerald Rapids), a microbenchmark of the backend's conv calls (what
// `train_bench conv_ops` now runs) and `train_bench sgd_step cnn`, old and new builds alternating: the weight in blocks
// of 8 input channels (one contiguous 9 KB block a row tile, not 8 of every 32 values of the whole 36 KB weight), the
// channel blocks outermost so that block stays in L1 while the rows of dout stream past, and a masked store for the
// last partial vector of a row (it had been a memcpy of variable length, compiled to `rep movsq`: 15% of the kernel's
// samples) took the conv2 and conv3 forwards and input derivatives at batch 32 from 2.1–2.5 ms to 1.6–1.9 ms each
// (165–235 GFLOP/s of the ~350 the two cores' FMA units give) and the CNN's SGD step from 17.1–17.4 to 15.3–15.5 ms.
// Each output sums its terms in one fixed order. Conv2d's stride-1 forward runs through it too, as the
// input derivative of the transposed convolution (Ops::conv_forward).

// Included inside the ISA region by variant.inc; prelude.hpp provides the includes.

/// Whether the direct kernel is taken automatically: its 8 × 2 register tile needs AVX-512's 32 registers
/// (elsewhere it computes the same, slower).
inline constexpr bool kDirectConvBackward = kVectorRegisters >= 32;

namespace convbwd {

/// The zero-bordered copy of dout: row pitch and plane size (values), for geometry g.
struct Padded {
  int64_t pitch = 0, height = 0;
  int64_t plane() const { return pitch * height; }
};

template <class T>
Padded padded(const ConvGeometry& g) {
  constexpr int64_t L = kLanes<T>;
  const int64_t chunks = (g.width + 2 * L - 1) / (2 * L) * 2;  // whole pairs of vectors per row
  // reads reach column x + pad_w − j + kw − 1 for x < chunks·L, and row y + pad_h − i + kh − 1 for y < H
  return {chunks * L + g.pad_w + g.kernel_w - 1, g.height + g.pad_h + g.kernel_h - 1};
}

/// The kernel's weight order: input channels in blocks of 8 (those beyond the last whole block one by
/// one), each block's weights [co][i][j][q] contiguous, so that a row tile reads one compact block (9 KB
/// for 32 output channels and 3 × 3) instead of 8 of every 32 values of the whole weight.
inline int64_t weight_index(int64_t co_count, int64_t kh, int64_t kw, int64_t ci_count, int64_t co, int64_t i,
                            int64_t j, int64_t ci) {
  const int64_t blocked = ci_count / 8 * 8;
  const int64_t size = ci < blocked ? 8 : 1, ci0 = ci < blocked ? ci / 8 * 8 : ci;
  return ci0 * co_count * kh * kw + ((co * kh + i) * kw + j) * size + (ci - ci0);
}

/// dst[0, n) = the first n ≤ kLanes<T> values of v (a masked store where AVX-512 has one).
template <class T, class V>
inline void store_first(T* __restrict dst, const V& v, int64_t n) {
#if XNTK_CPU_ISA >= 3
  if constexpr (sizeof(V) == 64) {
    if constexpr (std::is_same_v<T, float>)
      _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << n) - 1), (__m512)v);
    else
      _mm512_mask_storeu_pd(dst, static_cast<__mmask8>((1u << n) - 1), (__m512d)v);
    return;
  }
#endif
  if (n == static_cast<int64_t>(sizeof(V) / sizeof(T))) {
    std::memcpy(dst, &v, sizeof(V));
    return;
  }
  T out[sizeof(V) / sizeof(T)];
  std::memcpy(out, &v, sizeof(V));
  for (int64_t k = 0; k < n; ++k) dst[k] = out[k];
}

/// Rows [ci0, ci0 + G) of din at image row y, columns [x0, x0 + NC·L) (stored up to the image width).
/// wb is the block of the weight for these channels (weight_index); dp the padded dout.
template <int G, int NC, int KH, int KW, class T>
inline void row_tile(const T* __restrict dp, const Padded& p, const T* __restrict wb, const ConvGeometry& g,
                     int64_t co_count, int64_t ci0, int64_t y, int64_t x0, T alpha, T* __restrict din) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>;
  // KH, KW > 0: the kernel size known at compile time (3 × 3), so the (i, j) loops unroll
  const int64_t kh = KH > 0 ? KH : g.kernel_h, kw = KW > 0 ? KW : g.kernel_w;
  V acc[G][NC];
  for (int q = 0; q < G; ++q)
    for (int c = 0; c < NC; ++c) acc[q][c] = V{};
  for (int64_t co = 0; co < co_count; ++co)
    for (int64_t i = 0; i < kh; ++i) {
      // column x + pad_w − j of dout sits at x + pad_w − j + kw − 1 in dp, row y + pad_h − i at + kh − 1
      const T* row = dp + co * p.plane() + (y + g.pad_h - i + kh - 1) * p.pitch + x0 + g.pad_w + kw - 1;
      const T* wt = wb + (co * kh + i) * kw * G;
      for (int64_t j = 0; j < kw; ++j) {
        V v[NC];
        for (int c = 0; c < NC; ++c) std::memcpy(&v[c], row - j + c * L, sizeof(V));
        for (int q = 0; q < G; ++q) {
          const T w = wt[j * G + q];
          for (int c = 0; c < NC; ++c) acc[q][c] += w * v[c];
        }
      }
    }
  for (int q = 0; q < G; ++q)
    for (int c = 0; c < NC; ++c) {
      const int64_t x = x0 + c * L;
      if (x >= g.width) break;
      store_first(din + ((ci0 + q) * g.height + y) * g.width + x, V(alpha * acc[q][c]), std::min(L, g.width - x));
    }
}

/// Every row tile of din: channel block by channel block (its weights stay in L1 while the rows of dout
/// stream past), then row by row.
template <int KH, int KW, class T>
void rows(const T* dp, const Padded& p, const T* wr, const ConvGeometry& g, int64_t co_count, T alpha, T* din) {
  constexpr int64_t L = kLanes<T>;
  const int64_t block = co_count * g.kernel_h * g.kernel_w;  // weights per input channel
  const auto each_row = [&]<int G>(int64_t ci) {
    for (int64_t y = 0; y < g.height; ++y)
      for (int64_t x0 = 0; x0 < g.width; x0 += 2 * L)
        x0 + L < g.width ? row_tile<G, 2, KH, KW>(dp, p, wr + ci * block, g, co_count, ci, y, x0, alpha, din)
                         : row_tile<G, 1, KH, KW>(dp, p, wr + ci * block, g, co_count, ci, y, x0, alpha, din);
  };
  int64_t ci = 0;
  for (; ci + 8 <= g.channels; ci += 8) each_row.template operator()<8>(ci);
  for (; ci < g.channels; ++ci) each_row.template operator()<1>(ci);
}

}  // namespace convbwd

/// Values of scratch conv_backward_direct needs for geometry g and co_count output channels.
template <class T>
int64_t conv_backward_scratch(const ConvGeometry& g, int64_t co_count) {
  return co_count * convbwd::padded<T>(g).plane();
}

/// The weight (co_count × C_in × kh × kw, PyTorch order) reordered for conv_backward_direct
/// (convbwd::weight_index).
template <class T>
void conv_backward_weight(const ConvGeometry& g, int64_t co_count, const T* w, T* wr) {
  const int64_t ci_count = g.channels, kh = g.kernel_h, kw = g.kernel_w;
  for (int64_t co = 0; co < co_count; ++co)
    for (int64_t ci = 0; ci < ci_count; ++ci)
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j)
          wr[convbwd::weight_index(co_count, kh, kw, ci_count, co, i, j, ci)] =
              w[((co * ci_count + ci) * kh + i) * kw + j];
}

/// din (C_in × H × W) = alpha · the input derivative of one derivative row dout (co_count × OH × OW) of
/// a convolution with stride 1 and dilation 1 (any kernel size and padding), weight wr from
/// conv_backward_weight; scratch holds conv_backward_scratch<T>(g, co_count) values.
template <class T>
void conv_backward_direct(const ConvGeometry& g, int64_t co_count, T alpha, const T* wr, const T* dout, T* din,
                          T* scratch) {
  const convbwd::Padded p = convbwd::padded<T>(g);
  const int64_t oh = g.out_h(), ow = g.out_w();
  // with padding as wide as the kernel, the last output rows and columns only ever see the padding:
  // they reach no input and are left out of the copy
  const int64_t copy_rows = std::min(oh, p.height - (g.kernel_h - 1)),
                copy_cols = std::min(ow, p.pitch - (g.kernel_w - 1));
  std::fill(scratch, scratch + co_count * p.plane(), T(0));
  for (int64_t co = 0; co < co_count; ++co)
    for (int64_t y = 0; y < copy_rows; ++y)
      std::memcpy(scratch + co * p.plane() + (y + g.kernel_h - 1) * p.pitch + g.kernel_w - 1, dout + (co * oh + y) * ow,
                  sizeof(T) * copy_cols);
  if (g.kernel_h == 3 && g.kernel_w == 3)
    convbwd::rows<3, 3>(scratch, p, wr, g, co_count, alpha, din);
  else
    convbwd::rows<0, 0>(scratch, p, wr, g, co_count, alpha, din);
}

// The weight gradient of a stride-1 convolution (any kernel size, padding and dilation), summed over samples:
//   dW[co, ci, i, j] += Σ_(y, x) δ[co, y, x] · xp[ci, y + i·dh, x + j·dw]
// with xp the zero-padded input. Vectorised over the output channels: the deltas are transposed to
// position-major rows (C_out padded to whole vectors with zeros), and a tile of R (input channel, tap) pairs
// × NV vectors of output channels accumulates in registers over every position, each input value broadcast
// against a row of deltas. No im2col, no GEMM: for 32 → 32 channels every (ci, tap) pair's sum over the 784
// positions is one register chain. Each entry sums its positions in row-major order, then samples in turn.

namespace convwg {

/// out[r][co0, co0 + NV·L) += Σ_(y < oh, x < ow) dT[y·ow + x][co0 + ·] · src[r][y·wp + x], for r < R.
/// dT has rows of cp values; out rows of cp values.
template <int R, int NV, class T>
inline void tile(const T* __restrict dT, int64_t cp, int64_t co0, const T* const* src, int64_t oh, int64_t ow,
                 int64_t wp, T* __restrict out) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = V{};
  const T* s[R];
  for (int r = 0; r < R; ++r) s[r] = src[r];
  for (int64_t y = 0; y < oh; ++y) {
    const T* d = dT + y * ow * cp + co0;
    for (int64_t x = 0; x < ow; ++x, d += cp) {
      V dv[NV];
      for (int c = 0; c < NV; ++c) std::memcpy(&dv[c], d + c * L, sizeof(V));
      for (int r = 0; r < R; ++r) {
        const T v = s[r][x];
        for (int c = 0; c < NV; ++c) acc[r][c] += v * dv[c];
      }
    }
    for (int r = 0; r < R; ++r) s[r] += wp;
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) {
      V o;
      std::memcpy(&o, out + r * cp + co0 + c * L, sizeof(V));
      o += acc[r][c];
      std::memcpy(out + r * cp + co0 + c * L, &o, sizeof(V));
    }
}

/// Register tile: 12 (ci, tap) pairs × 2 vectors of output channels (24 accumulators of AVX-512's 32).
inline constexpr int kPairs = 12;

}  // namespace convwg

/// Output channels padded to whole vectors: the row length of conv_weight_direct's dT and acc.
template <class T>
int64_t conv_weight_pitch(int64_t co_count) {
  return (co_count + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
}

/// acc[(ci·taps + tap)·cp + co] += Σ_(y, x) δ[co, y, x] · xp[ci, y + i·dh, x + j·dw] for one sample (tap =
/// i·kw + j, cp = conv_weight_pitch<T>(co_count)): xp the zero-padded input (C_in planes of hp × wp), dT
/// the sample's deltas transposed to (OH·OW) rows of cp values, zero beyond co_count.
template <class T>
void conv_weight_direct(const ConvGeometry& g, int64_t co_count, const T* xp, int64_t hp, int64_t wp, const T* dT,
                        T* acc) {
  constexpr int64_t L = kLanes<T>;
  const int64_t cp = conv_weight_pitch<T>(co_count), kh = g.kernel_h, kw = g.kernel_w, taps = kh * kw;
  const int64_t pairs = g.channels * taps, oh = g.out_h(), ow = g.out_w();
  const T* src[convwg::kPairs];
  for (int64_t r0 = 0; r0 < pairs; r0 += convwg::kPairs) {
    const int64_t R = std::min<int64_t>(convwg::kPairs, pairs - r0);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t ci = (r0 + r) / taps, tap = (r0 + r) % taps;
      src[r] = xp + ci * hp * wp + (tap / kw) * g.dilation_h * wp + (tap % kw) * g.dilation_w;
    }
    T* out = acc + r0 * cp;
    with_rows<1, convwg::kPairs>(R, [&]<int Rc>() {
      int64_t co0 = 0;
      for (; co0 + 2 * L <= cp; co0 += 2 * L) convwg::tile<Rc, 2>(dT, cp, co0, src, oh, ow, wp, out);
      for (; co0 < cp; co0 += L) convwg::tile<Rc, 1>(dT, cp, co0, src, oh, ow, wp, out);
    });
  }
}
