// din = alpha · dout · W for a few samples whose back-propagated rows are exactly zero at the same
// columns, as they are after a ReLU: sample s's R rows (one per output) only need the rows of W at the
// columns k where one of them is non-zero, about half of them at initialisation. A dense GEMM does all
// the work; this kernel skips the zero columns, sample by sample. The Conv2d per-sample weight
// gradients use it too, with a sample's channels as the groups: after a ReLU a channel's deltas are zero
// at the same positions in all O streams, and W is the sample's patch matrix (positions × K).
//
// Loop order (per thread, over its own 2V-column strips of W):
//   for each pair of strips: copy the two strips (all k rows, 2V columns each) into a buffer that stays
//   in L2, then for each sample and strip accumulate the sample's active rows of it into an R × 2V
//   register tile of din.
// Each output sums its terms in increasing k whatever the thread count, so results do not depend on it.
// Measured on workload 4's (16 samples × 8 outputs) · (2048 × 2048) with half the columns active
// (microbenchmark, 2 threads, caches flushed, medians of 15): 4.2–4.3 ms against 4.9–5.0 ms for the
// earlier loop order (64-row blocks of all the thread's strips, the tiles reloaded for every block),
// and OpenBLAS's dense 6.7–7.8 ms (its OpenMP build). The strip copies are about 1.6 ms of it.

// Included inside the ISA region by variant.inc; prelude.hpp provides the includes.

/// Whether masked_product is taken automatically: its register tiles need AVX-512's 32 vector registers
/// (elsewhere it computes the same, slower).
inline constexpr bool kMaskedProduct = kVectorRegisters >= 32;

/// The most rows per sample (outputs) and the most samples masked_product takes (a 12 × 2V tile is 24
/// accumulators, 2 vectors of W and a broadcast: 27 of the 32 registers).
inline constexpr int64_t kMaskedMaxRows = 12;
inline constexpr int64_t kMaskedMaxBatch = 32;

namespace masked {

/// Above this fraction of active (sample, column) pairs the dense GEMM is used. Medians of 11 runs for
/// the product above against OpenBLAS's OpenMP build, at 80/90/100% active: 6.3/6.5/7.05 ms against
/// 7.2/6.8/7.0 ms in the quieter of two sessions; the two meet between 90 and 100%.
inline constexpr double kMaxActive = 0.9;

/// out (R × 2V, leading dimension ldo) = Σ_a d[a·R + r] · strip[rows[a] · 2V + c] over the active rows
/// a < na of one sample, in increasing a.
template <int R, class T>
inline void tile(const T* __restrict d, const int32_t* __restrict rows, int64_t na, const T* __restrict strip,
                 T* __restrict out, int64_t ldo) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>, C = 2 * L;
  V acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V{};
  for (int64_t a = 0; a < na; ++a) {
    const T* wr = strip + rows[a] * C;
    V w0, w1;
    std::memcpy(&w0, wr, sizeof(V));
    std::memcpy(&w1, wr + L, sizeof(V));
    const T* da = d + a * R;
    for (int r = 0; r < R; ++r) {
      acc[r][0] += da[r] * w0;
      acc[r][1] += da[r] * w1;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int h = 0; h < 2; ++h) std::memcpy(out + r * ldo + h * L, &acc[r][h], sizeof(V));
}

#if XNTK_CPU_ISA >= 3
/// The columns of the strip row (w0, w1) that idx names, in idx's order (one vpermt2ps / vpermt2pd).
inline Vec<float>::type select(Vec<float>::type w0, Vec<float>::type w1, __m512i idx) {
  return _mm512_permutex2var_ps(w0, idx, w1);
}
inline Vec<double>::type select(Vec<double>::type w0, Vec<double>::type w1, __m512i idx) {
  return _mm512_permutex2var_pd(w0, idx, w1);
}

/// Whether tile_selected is compiled in (it needs AVX-512's two-table permutes).
inline constexpr bool kSelectedTile = true;

/// The low half of a vector (its first V/2 values).
inline Vec<float, 32>::type low_half(Vec<float>::type v) { return _mm512_castps512_ps256(v); }
inline Vec<double, 32>::type low_half(Vec<double>::type v) { return _mm512_castpd512_pd256(v); }

/// out (R × W, contiguous) = Σ_a d[a·R + r] · strip row rows[a] at the columns idx names: with `Full`, the
/// V columns idx0 names (output columns 0 to V − 1), with `Half` the V/2 columns in idx1's low half (the
/// next V/2 output columns); W = V·Full + V/2·Half. When a later ReLU zeroes all but W of a strip's 2V
/// columns, tile's multiply-adds on the rest are skipped: a half vector costs half a vector's
/// multiply-add. Each output sums the same terms in the same order as tile does.
template <int R, bool Full, bool Half, class T>
inline void tile_selected(const T* __restrict d, const int32_t* __restrict rows, int64_t na, const T* __restrict strip,
                          __m512i idx0, __m512i idx1, T* __restrict out) {
  using V = typename Vec<T>::type;
  using H = typename Vec<T, 32>::type;
  constexpr int64_t L = kLanes<T>, C = 2 * L, W = (Full ? L : 0) + (Half ? L / 2 : 0);
  V acc[R];
  H half[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = V{};
    half[r] = H{};
  }
  for (int64_t a = 0; a < na; ++a) {
    const T* wr = strip + rows[a] * C;
    V w0, w1;
    std::memcpy(&w0, wr, sizeof(V));
    std::memcpy(&w1, wr + L, sizeof(V));
    const T* da = d + a * R;
    if constexpr (Full) {
      const V w = select(w0, w1, idx0);
      for (int r = 0; r < R; ++r) acc[r] += da[r] * w;
    }
    if constexpr (Half) {
      const H w = low_half(select(w0, w1, idx1));
      for (int r = 0; r < R; ++r) half[r] += da[r] * w;
    }
  }
  for (int r = 0; r < R; ++r) {
    if constexpr (Full) std::memcpy(out + r * W, &acc[r], sizeof(V));
    if constexpr (Half) std::memcpy(out + r * W + (Full ? L : 0), &half[r], sizeof(H));
  }
}
#else
inline constexpr bool kSelectedTile = false;
#endif

/// One sample's R × 2V block of din for one strip, when only the columns the gate keeps are needed
/// (`keep`: bit c for column c of the strip) and the others are written as 0. With `selected`, strips with
/// few kept columns compute only those (tile_selected, AVX-512). Returns the multiply-adds skipped (R per
/// active row for each column not computed).
template <int R, class T>
inline int64_t gated_tile(const T* d, const int32_t* rows, int64_t na, const T* strip, uint32_t keep, T* out,
                          int64_t ldo, bool selected, int64_t& picked) {
  constexpr int64_t L = kLanes<T>, C = 2 * L;
  const int kept = std::popcount(keep);
  if (kept == 0) {
    for (int r = 0; r < R; ++r) std::fill(out + r * ldo, out + r * ldo + C, T(0));
    return na * R * C;
  }
#if XNTK_CPU_ISA >= 3
  if (selected && kept <= L + L / 2) {
    ++picked;
    // the kept columns' positions as permute indices, one lane per value of T: the first V in idx0, the
    // rest (or all, when at most V/2 are kept) in idx1's low half
    using Index = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
    alignas(64) Index pos[2 * L] = {};
    int c = 0;
    for (uint32_t m = keep; m; m &= m - 1, ++c) pos[c] = std::countr_zero(m);
    alignas(64) T sel[R * (L + L / 2)];
    int64_t width = L + L / 2;
    if (kept <= L / 2) {
      width = L / 2;
      tile_selected<R, false, true>(d, rows, na, strip, __m512i{}, _mm512_load_si512(pos), sel);
    } else if (kept <= L) {
      width = L;
      tile_selected<R, true, false>(d, rows, na, strip, _mm512_load_si512(pos), __m512i{}, sel);
    } else {
      tile_selected<R, true, true>(d, rows, na, strip, _mm512_load_si512(pos), _mm512_load_si512(pos + L), sel);
    }
    for (int r = 0; r < R; ++r) {
      T* o = out + r * ldo;
      std::fill(o, o + C, T(0));
      for (int j = 0; j < kept; ++j) o[pos[j]] = sel[r * width + j];
    }
    return na * R * (C - width);
  }
#else
  (void)selected;
  (void)picked;
#endif
  tile<R>(d, rows, na, strip, out, ldo);
  for (uint32_t m = ~keep & ((uint32_t(1) << (C - 1) << 1) - 1); m; m &= m - 1)
    for (int r = 0; r < R; ++r) out[r * ldo + std::countr_zero(m)] = T(0);
  return 0;
}

/// Rows ahead that the strip copy prefetches: each row of a strip is two cache lines of a different
/// page, which the hardware prefetchers do not fetch ahead. The whole product (the case above, 2
/// threads, caches flushed, medians of 21 in four alternating sweeps): 3.52–3.77 ms at 8 rows ahead
/// against 3.66–4.35 without; 2 and 16 rows ahead measured between the two.
inline constexpr int64_t kCopyAhead = 8;

/// Strips copied together: each row of W gives 2 · 2V contiguous values (4 cache lines) at a time. The
/// copies alone (2048 × 2048 float, 2 threads, microbenchmark in /tmp, medians of 15): 0.49–0.51 ms one
/// strip at a time from L3 and 0.64–0.74 from memory; two at a time 0.33–0.35 and 0.50–0.55; four
/// (a 1 MB buffer, no longer in L2) 0.31–0.32 and 0.44–0.47, but workload 4 as a whole measured the same
/// with four as with two.
inline constexpr int64_t kCopyStrips = 2;

/// The strip loop; with a gate (group b's n values at gate + b·gate_sample), only din's columns where
/// gate > 0 are computed and the rest are written as 0. Returns the multiply-adds the gate skipped.
template <int R, class T>
int64_t run(int64_t batch, int64_t k, int64_t n, const T* packed, const int32_t* active, const int64_t* count,
            const T* w, T* din, int64_t din_sample, int64_t din_row, const T* gate, int64_t gate_sample, bool selected,
            int64_t& picked_tiles) {
  constexpr int64_t C = 2 * kLanes<T>;
  const int64_t strips = n / C;
  const int threads = loop_threads();
  Buffer<T> buffers;
  buffers.resize(static_cast<int64_t>(threads) * k * C * kCopyStrips);
  int64_t skipped_by[256] = {}, picked_by[256] = {};
  // scalars and pointers by value: the strip copy's memcpy may alias anything, so values read through a
  // reference capture would be reloaded from the closure for every row
  parallel_team(std::min(threads, 256), [&, batch, k, n, packed, active, count, w, din, din_sample, din_row, gate,
                                         gate_sample, selected](int t, int nt) {
    T* strips_buffer = buffers.data() + t * k * C * kCopyStrips;
    int64_t skipped = 0, picked = 0;
    const int64_t last = strips * (t + 1) / nt;
    for (int64_t s0 = strips * t / nt; s0 < last; s0 += kCopyStrips) {
      const int64_t width = std::min<int64_t>(kCopyStrips, last - s0);
      for (int64_t i = 0; i < k; ++i) {
        const T* row = w + i * n + s0 * C;
        if (i + kCopyAhead < k)
          for (int64_t c = 0; c < width * C; c += kLanes<T>) __builtin_prefetch(row + kCopyAhead * n + c);
        for (int64_t q = 0; q < width; ++q) std::memcpy(strips_buffer + (q * k + i) * C, row + q * C, C * sizeof(T));
      }
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t q = 0; q < width; ++q) {
          const int64_t s = s0 + q;
          const T* strip = strips_buffer + q * k * C;
          T* out = din + b * din_sample + s * C;
          if (!gate) {
            tile<R>(packed + b * k * R, active + b * k, count[b], strip, out, din_row);
            continue;
          }
          const T* g = gate + b * gate_sample + s * C;
          uint32_t keep = 0;
          for (int64_t c = 0; c < C; ++c) keep |= static_cast<uint32_t>(g[c] > T(0)) << c;
          skipped +=
              gated_tile<R>(packed + b * k * R, active + b * k, count[b], strip, keep, out, din_row, selected, picked);
        }
    }
    skipped_by[t] = skipped;
    picked_by[t] = picked;
  });
  int64_t skipped = 0;
  for (int t = 0; t < 256; ++t) {
    skipped += skipped_by[t];
    picked_tiles += picked_by[t];
  }
  // columns past the last whole strip
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = strips * C; j < n; ++j) {
      const bool kept = !gate || gate[b * gate_sample + j] > T(0);
      if (!kept) skipped += count[b] * R;
      for (int r = 0; r < R; ++r) {
        T sum = 0;
        if (kept)
          for (int64_t a = 0; a < count[b]; ++a) sum += packed[(b * k + a) * R + r] * w[active[b * k + a] * n + j];
        din[b * din_sample + r * din_row + j] = sum;
      }
    }
  return skipped;
}

}  // namespace masked

/// Whether masked_product_strided may take a shape at all: 1 ≤ rows ≤ kMaskedMaxRows, 1 ≤ batch ≤
/// kMaskedMaxBatch, k ≥ 1.
inline bool masked_product_fits(int64_t batch, int64_t rows, int64_t k) {
  return batch >= 1 && batch <= kMaskedMaxBatch && rows >= 1 && rows <= kMaskedMaxRows && k >= 1;
}

/// din = alpha · dout · w (k × n, row-major) for `batch` groups of `rows` rows, where group b's row r is
/// dout + b·dout_sample + r·dout_row (k values) and din + b·din_sample + r·din_row (n values), and terms
/// whose column of dout is zero in all of the group's rows are skipped (so a NaN or infinite weight met
/// only by zeros does not reach din). With a `gate` (group b's n values at gate + b·gate_sample), din is
/// only computed at the columns where gate > 0 and is 0 elsewhere: the input of a ReLU below, which
/// multiplies the rest by an exact zero (`selected`: strips with few kept columns through tile_selected).
/// `picked_tiles` (may be null) counts the strips computed through tile_selected.
/// Returns the FLOPs done (2 per multiply-add), or a negative value, computing nothing, when `dense_check`
/// finds more than kMaxActive of the (group, column) pairs active (a dense GEMM is faster there); the shape
/// must fit (masked_product_fits).
template <class T>
double masked_product_strided(int64_t batch, int64_t rows, int64_t k, int64_t n, T alpha, const T* dout,
                              int64_t dout_sample, int64_t dout_row, const T* w, T* din, int64_t din_sample,
                              int64_t din_row, const T* gate, int64_t gate_sample, bool dense_check, bool selected,
                              int64_t* picked_tiles) {
  // which columns are active, per group: a byte per column, OR-ed along the group's rows (vectorised;
  // reading a column's R values at a time made counting and packing three times slower)
  Buffer<uint8_t> flags;
  flags.resize(batch * k);
  int64_t count[kMaskedMaxBatch];
  uint8_t* const flag_data = flags.data();
  parallel_blocks(batch, [&count, flag_data, k, rows, dout, dout_sample, dout_row](int64_t b) {
    uint8_t* f = flag_data + b * k;
    const T* d = dout + b * dout_sample;
    for (int64_t j = 0; j < k; ++j) f[j] = d[j] != T(0);
    for (int64_t r = 1; r < rows; ++r)
      for (int64_t j = 0; j < k; ++j) f[j] |= d[r * dout_row + j] != T(0);
    int64_t c = 0;
    for (int64_t j = 0; j < k; ++j) c += f[j];
    count[b] = c;
  });
  int64_t total = 0;
  for (int64_t b = 0; b < batch; ++b) total += count[b];
  if (dense_check && static_cast<double>(total) > masked::kMaxActive * static_cast<double>(batch * k)) return -1;

  Buffer<T> packed;
  Buffer<int32_t> active;
  packed.resize(batch * k * rows);
  active.resize(batch * k);
  T* const packed_data = packed.data();
  int32_t* const active_data = active.data();
  parallel_blocks(batch, [flag_data, packed_data, active_data, k, rows, alpha, dout, dout_sample, dout_row](int64_t b) {
    const uint8_t* f = flag_data + b * k;
    const T* d = dout + b * dout_sample;
    int64_t c = 0;
    for (int64_t j = 0; j < k; ++j) {
      if (!f[j]) continue;
      active_data[b * k + c] = static_cast<int32_t>(j);
      for (int64_t r = 0; r < rows; ++r) packed_data[(b * k + c) * rows + r] = alpha * d[r * dout_row + j];
      ++c;
    }
  });
  int64_t gated = 0, picked = 0;
  with_rows<1, kMaskedMaxRows>(rows, [&]<int R>() {
    gated = masked::run<R>(batch, k, n, packed.data(), active.data(), count, w, din, din_sample, din_row, gate,
                           gate_sample, selected, picked);
  });
  if (picked_tiles) *picked_tiles += picked;
  return 2.0 * (static_cast<double>(rows * n) * static_cast<double>(total) - static_cast<double>(gated));
}
