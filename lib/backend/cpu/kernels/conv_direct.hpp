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

// A stride-1 convolution vectorised over its output's channels, for the forward and the input derivative alike:
//   out[o, y, x] = alpha · Σ_t A[t][o] · src[off[t] + y·sp + x]      (o < co, y < oh, x < ow)
// with t running over the (summed channel, i, j) terms, A[t] a row of the weight (cp values, zero beyond co) and
// off[t] where that term's window starts in src (planes of rows sp values apart). The forward: src the
// (zero-padded) input, A[(ci, i, j)][co] = W[co, ci, i, j]. The input derivative: src the deltas zero-bordered by
// the kernel size less one less the padding, A[(co, i, j)][ci] = W[co, ci, kh − 1 − i, kw − 1 − j]. A tile of up
// to kMaxPositions neighbouring positions of one row × 2 vectors of channels accumulates in registers over every
// term, each source value broadcast against a row of A: every lane is used whatever the image width (row_tile
// fills 28 of 32 lanes on a 28-wide row), at the price of writing the tile back transposed. Each output sums its
// terms in the order of t, then is scaled by alpha.

namespace convch {

/// Positions per register tile: 14 × 2 vectors = 28 accumulators of AVX-512's 32 registers.
inline constexpr int kMaxPositions = 14;
static_assert(kMaxPositions <= 16, "store_transposed holds 16 rows");

/// buf[r·NV·L + c·L + ·] = Σ_t a[t·cp + c·L + ·] · s[off[t] + r], for r < R, c < NV.
template <int R, int NV, class T>
inline void tile(const T* __restrict a, int64_t cp, const int64_t* __restrict off, int64_t terms, const T* __restrict s,
                 T* __restrict buf) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>;
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = V{};
  for (int64_t t = 0; t < terms; ++t, a += cp) {
    const T* st = s + off[t];
    V av[NV];
    for (int c = 0; c < NV; ++c) std::memcpy(&av[c], a + c * L, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T b = st[r];
      for (int c = 0; c < NV; ++c) acc[r][c] += b * av[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < NV; ++c) std::memcpy(buf + (r * NV + c) * L, &acc[r][c], sizeof(V));
}

#if XNTK_CPU_ISA >= 3
/// r[0..16) = the columns of the 16 × 16 matrix whose rows r[0..16) holds.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int k = 0; k < 8; ++k) {  // pairs of rows interleaved within each 128-bit block
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) {  // u[4k + e], block b: element 4b + e of rows 4k … 4k + 3
    u[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int e = 0; e < 4; ++e) {  // column 4b + e: block b of u[e], u[4 + e], u[8 + e], u[12 + e]
    const __m512 v = _mm512_shuffle_f32x4(u[e], u[4 + e], _MM_SHUFFLE(1, 0, 1, 0)),
                 v2 = _mm512_shuffle_f32x4(u[e], u[4 + e], _MM_SHUFFLE(3, 2, 3, 2)),
                 w = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(1, 0, 1, 0)),
                 w2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(3, 2, 3, 2));
    r[e] = _mm512_shuffle_f32x4(v, w, _MM_SHUFFLE(2, 0, 2, 0));
    r[4 + e] = _mm512_shuffle_f32x4(v, w, _MM_SHUFFLE(3, 1, 3, 1));
    r[8 + e] = _mm512_shuffle_f32x4(v2, w2, _MM_SHUFFLE(2, 0, 2, 0));
    r[12 + e] = _mm512_shuffle_f32x4(v2, w2, _MM_SHUFFLE(3, 1, 3, 1));
  }
}
#endif

/// out[o·plane + r] = alpha · buf[r·stride + o − o0] for o0 ≤ o < o_end, r < n: a tile's channels written back
/// as rows of positions. buf holds 16 rows (those from n on are never stored).
template <class T>
inline void store_transposed(const T* buf, int64_t stride, int64_t o0, int64_t o_end, int64_t n, T alpha, int64_t plane,
                             T* out) {
#if XNTK_CPU_ISA >= 3
  if constexpr (std::is_same_v<T, float>) {  // 16 × 16 blocks transposed in registers, masked stores
    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1);
    const __m512 a = _mm512_set1_ps(alpha);
    for (int64_t c = o0; c < o_end; c += 16) {
      __m512 r[16];
      for (int k = 0; k < 16; ++k) r[k] = _mm512_loadu_ps(buf + k * stride + (c - o0));
      transpose16(r);
      for (int64_t e = 0; e < std::min<int64_t>(16, o_end - c); ++e)
        _mm512_mask_storeu_ps(out + (c + e) * plane, mask, _mm512_mul_ps(a, r[e]));
    }
    return;
  }
#endif
  for (int64_t o = o0; o < o_end; ++o)
    for (int64_t r = 0; r < n; ++r) out[o * plane + r] = alpha * buf[r * stride + (o - o0)];
}

}  // namespace convch

/// dT[p·cp + c] = d[c·P + p] for c < C, p < P (C ≤ cp): a sample's deltas as position-major rows for
/// conv_weight_direct; dT's values C ≤ c < cp are left as they are.
template <class T>
void deltas_by_position(const T* d, int64_t C, int64_t P, int64_t cp, T* dT) {
#if XNTK_CPU_ISA >= 3
  if constexpr (std::is_same_v<T, float>) {  // 16 × 16 blocks transposed in registers
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t nc = std::min<int64_t>(16, C - c0);
      const __mmask16 cmask = static_cast<__mmask16>((1u << nc) - 1);
      for (int64_t p0 = 0; p0 < P; p0 += 16) {
        const int64_t np = std::min<int64_t>(16, P - p0);
        const __mmask16 pmask = static_cast<__mmask16>((1u << np) - 1);
        __m512 r[16];
        for (int k = 0; k < 16; ++k)
          r[k] = k < nc ? _mm512_maskz_loadu_ps(pmask, d + (c0 + k) * P + p0) : _mm512_setzero_ps();
        convch::transpose16(r);
        for (int64_t e = 0; e < np; ++e) _mm512_mask_storeu_ps(dT + (p0 + e) * cp + c0, cmask, r[e]);
      }
    }
    return;
  }
#endif
  for (int64_t p0 = 0; p0 < P; p0 += 16)  // in 16-position strips, one cache line of d a row
    for (int64_t c = 0; c < C; ++c)
      for (int64_t p = p0; p < std::min(P, p0 + 16); ++p) dT[p * cp + c] = d[c * P + p];
}

/// dst (channels planes of hp × wp) = src (channels planes of h × w) placed at row top, column left, zeros
/// elsewhere: every value of dst written once.
template <class T>
void zero_bordered(const T* src, int64_t channels, int64_t h, int64_t w, int64_t top, int64_t left, int64_t hp,
                   int64_t wp, T* dst) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t row = 0; row < hp; ++row) {
      T* d = dst + (c * hp + row) * wp;
      const int64_t r = row - top;
      if (r < 0 || r >= h) {
        std::fill(d, d + wp, T(0));
        continue;
      }
      std::fill(d, d + left, T(0));
      std::copy(src + (c * h + r) * w, src + (c * h + r + 1) * w, d + left);
      std::fill(d + left + w, d + wp, T(0));
    }
}

/// Whether conv_channels fills more vector lanes than row_tile: `channels` the output's channels it vectorises
/// over, `width` the output rows row_tile would.
template <class T>
bool channels_fill_more(int64_t channels, int64_t width) {
  constexpr int64_t L = kLanes<T>;
  // channels / whole vectors of channels > width / whole vectors of the row, without division
  return channels * ((width + L - 1) / L) > width * ((channels + L - 1) / L);
}

/// Channels padded to whole vectors: the row length of conv_channels' A.
template <class T>
int64_t conv_channel_pitch(int64_t co_count) {
  return (co_count + kLanes<T> - 1) / kLanes<T> * kLanes<T>;
}

/// out (co planes of oh × ow) = alpha · Σ_t A[t][·] · src[off[t] + y·sp + x] (the comment above); A has `terms`
/// rows of conv_channel_pitch<T>(co) values.
template <class T>
void conv_channels(int64_t co, int64_t oh, int64_t ow, const T* A, const int64_t* off, int64_t terms, const T* src,
                   int64_t sp, T alpha, T* out) {
  constexpr int64_t L = kLanes<T>;
  constexpr int R = convch::kMaxPositions;
  const int64_t cp = conv_channel_pitch<T>(co), plane = oh * ow;
  // the row in tiles of equal size (28 → 14 + 14, 30 → 10 + 10 + 10), at most R each
  const int64_t tiles = (ow + R - 1) / R, size = (ow + tiles - 1) / tiles;
  alignas(64) T buf[16 * 2 * L] = {};  // 16 rows for store_transposed
  for (int64_t y = 0; y < oh; ++y)
    for (int64_t x0 = 0; x0 < ow; x0 += size) {
      const int64_t n = std::min(size, ow - x0);
      const T* s = src + y * sp + x0;
      for (int64_t o0 = 0; o0 < cp;) {
        const int NV = o0 + 2 * L <= cp ? 2 : 1;
        with_rows<1, R>(n, [&]<int Rc>() {
          NV == 2 ? convch::tile<Rc, 2>(A + o0, cp, off, terms, s, buf)
                  : convch::tile<Rc, 1>(A + o0, cp, off, terms, s, buf);
        });
        const int64_t stride = NV * L;
        convch::store_transposed(buf, stride, o0, std::min(co, o0 + stride), n, alpha, plane, out + y * ow + x0);
        o0 += stride;
      }
    }
}
