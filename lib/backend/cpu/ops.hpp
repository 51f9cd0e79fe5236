// The CPU backend's primitives (backend/backend.hpp) for one instruction set. Included inside the ISA region
// by variant.inc, after the kernels; prelude.hpp provides the includes. Where a fast path is taken is decided
// here, by the Paths (cpu.hpp) and the thresholds measured on the development machines.

inline bool take(Choice c, bool automatic) { return c == Choice::on || (c == Choice::automatic && automatic); }
inline Split split_of(Choice c) {
  return c == Choice::on ? Split::on : c == Choice::off ? Split::off : Split::automatic;
}
inline double mnk(int64_t m, int64_t n, int64_t k) {
  return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}
inline int64_t per_pair(int64_t outputs, Mode mode) {
  return mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1;
}

/// Σ a[i]·b[i] in lanes (vectorised).
template <class T>
T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// C(i, j) of a Gram matrix of which only the lower triangle is valid.
template <class T>
inline T lower(const T* c, int64_t ld, int64_t i, int64_t j) {
  return i >= j ? c[i * ld + j] : c[j * ld + i];
}

/// d[i] = φ'(z[i], y[i]): a function of its own, with restrict arguments, so that the simple kinds vectorise
/// (written inline in the backward's loop, ReLU's ran as a scalar branch, 3.6× the time).
template <class T, class F>
void fill_derivative(F derivative, const T* __restrict z, const T* __restrict y, T* __restrict d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = derivative(z[i], y[i]);
}

/// The contiguous (one value per pair) rows of combine_values / combine_shared: functions of their own with
/// restrict arguments, so that they vectorise (the strided loops with a run-time stride of 1 ran scalar,
/// +12% of torchntk_mlp_1000's time against 05af704's contiguous loops).
template <class T>
void add_products(T* __restrict w, const T* __restrict a, const T* __restrict d, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] += a[j] * d[j];
}
template <class T>
void add_products_and_bias(T* __restrict w, const T* __restrict a, const T* __restrict d, T cb2, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] += a[j] * d[j] + cb2 * d[j];
}
template <class T>
void add_scaled(T* __restrict w, const T* __restrict d, T c, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] += c * d[j];
}
template <class T>
void add_scaled_and_constant(T* __restrict w, const T* __restrict d, T c, T e, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] += d[j] * c + e;
}
template <class T>
void add_constant(T* __restrict w, T c, int64_t n) {
  for (int64_t j = 0; j < n; ++j) w[j] += c;
}

template <class T>
class CpuOps final : public Ops<T> {
 public:
  CpuOps(const Paths& paths, const CpuBackend& owner) : p_(paths), owner_(owner) {}

  // ---- dense products

  double gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
              int64_t ldb, T beta, T* c, int64_t ldc) const override {
    cpu::gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return mnk(m, n, k);
  }

  double gram(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c,
              int64_t ldc) const override {
    split(gram_product(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, split_of(p_.split_k)));
    return mnk(m, n, k);
  }

  double syrk_lower(int64_t n, int64_t k, T alpha, const T* a, int64_t lda, T beta, T* c, int64_t ldc) const override {
    split(cpu::syrk_lower(n, k, alpha, a, lda, beta, c, ldc, split_of(p_.split_k)));
    return static_cast<double>(n) * static_cast<double>(n + 1) * static_cast<double>(k);
  }

  double linear(int64_t batch, int64_t n, int64_t k, T alpha, const T* x, const T* w, T* y) const override {
    // few samples through a wide layer: our own kernel instead of a GEMM that packs all of W per call
    if (batch <= kSkinnyMaxBatch && take(p_.skinny, kSkinnyProduct && k >= 256)) {
      owner_.count(Path::skinny);
      skinny_product(batch, n, k, alpha, x, w, y);
    } else
      cpu::gemm(false, true, batch, n, k, alpha, x, k, w, k, T(0), y, n);
    return mnk(batch, n, k);
  }

  double product_skipping_zeros(const Groups& g, int64_t k, int64_t n, T alpha, const T* dout, const T* w, T* din,
                                const T* gate, int64_t gate_group) const override {
    // a few samples whose deltas are zero at the same columns (after a ReLU): skip those rows of W, and, with
    // a gate, the columns of din the ReLU below zeroes (masked_product declines dense deltas itself)
    if (masked_product_fits(g.groups, g.rows, k) && take(p_.masked_product, kMaskedProduct && k >= 256 && n >= 256)) {
      const bool selected = take(p_.gated_tiles, true) && masked::kSelectedTile;
      int64_t picked = 0;
      const double done =
          masked_product_strided(g.groups, g.rows, k, n, alpha, dout, g.in_group, g.in_row, w, din, g.out_group,
                                 g.out_row, gate, gate_group, p_.masked_product != Choice::on, selected, &picked);
      if (done >= 0) {
        owner_.count(Path::masked_product);
        if (picked > 0) owner_.count(Path::gated_tiles);
        return done;
      }
    }
    cpu::gemm(false, false, g.groups * g.rows, n, k, alpha, dout, k, w, n, T(0), din, n);
    return mnk(g.groups * g.rows, n, k);
  }

  double delta_gram(int64_t g1, int64_t g2, int64_t R, int64_t k, const T* a, const T* b, int64_t ld, bool same,
                    T alpha, T* d, int64_t ldd) const override {
    // after a ReLU a sample's R deltas are zero at the same units: sum each sample pair's block over the units
    // both have non-zero (the dense product where that is not faster)
    if (take(p_.masked_gram, kMaskedGram)) {
      const double done = masked_gram(g1, g2, R, k, a, b, ld, same, alpha, d, ldd, p_.masked_gram != Choice::on);
      if (done >= 0) {
        owner_.count(Path::masked_gram);
        return done;
      }
    }
    if (same) return syrk_lower(g1 * R, k, alpha, a, ld, T(0), d, ldd);
    return gram(g1 * R, g2 * R, k, alpha, a, ld, b, ld, T(0), d, ldd);
  }

  // ---- convolutions

  /// Whether conv_channels is taken automatically for an output of `channels` channels and rows `width` wide.
  bool channel_auto(int64_t channels, int64_t width) const {
    return p_.direct_conv == Choice::automatic && kDirectConvBackward && channels_fill_more<T>(channels, width);
  }

  double conv_forward(const ConvGeometry& g, int64_t C, T alpha, const T* w, const T* x, int64_t batch,
                      T* y) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    const bool direct_fits = g.unit_stride() && g.pad_h < g.kernel_h && g.pad_w < g.kernel_w;
    if (g.unit_stride() && take(p_.channel_conv, g.channels >= 8 && channel_auto(C, g.out_w()))) {
      owner_.count(Path::channel_conv);
      // vectorised over the output channels (kernels/conv_direct.hpp, conv_channels): A[(ci, i, j)][co] =
      // W[co, ci, i, j], each term's window in the zero-padded input (the input itself without padding)
      const int64_t cp = conv_channel_pitch<T>(C), Hp = g.height + 2 * g.pad_h, Wp = g.width + 2 * g.pad_w;
      const bool pad = g.pad_h > 0 || g.pad_w > 0;
      Buffer<T> A;
      A.resize(K * cp);
      std::fill(A.data(), A.data() + A.size(), T(0));
      for (int64_t co = 0; co < C; ++co)
        for (int64_t t = 0; t < K; ++t) A[t * cp + co] = w[co * K + t];
      std::vector<int64_t> off(static_cast<size_t>(K));
      for (int64_t t = 0; t < K; ++t) {
        const int64_t ci = t / (g.kernel_h * g.kernel_w), i = t / g.kernel_w % g.kernel_h, j = t % g.kernel_w;
        off[static_cast<size_t>(t)] = (ci * Hp + i) * Wp + j;
      }
      parallel_for_work(batch, static_cast<double>(C * K * P), [&](int64_t s) {
        Buffer<T> xp;
        const T* src = x + s * n_in;
        if (pad) {
          xp.resize(g.channels * Hp * Wp);
          zero_bordered(src, g.channels, g.height, g.width, g.pad_h, g.pad_w, Hp, Wp, xp.data());
          src = xp.data();
        }
        conv_channels(C, g.out_h(), g.out_w(), A.data(), off.data(), K, src, Wp, alpha, y + s * C * P);
      });
    } else if (direct_fits && take(p_.direct_conv, kDirectConvBackward && C >= 8 && g.channels >= 8)) {
      owner_.count(Path::direct_conv);
      // stride 1: the forward is the input derivative of the transposed convolution (input and output
      // channels swapped, the kernel flipped, padding kh − 1 − pad), which the direct kernel computes
      // without im2col. The tutorial CNN's conv2 and conv3 forwards (20 and 5 images, 2 threads, three
      // alternating runs): 1.7–1.8 and 1.5–1.6 ms against 2.6–3.2 and 1.9–2.5 ms through im2col and a GEMM
      // per image. With fewer than 8 input channels (conv1: 3) the GEMM over K = C_in·kh·kw stays faster:
      // 0.47–0.60 ms against 0.70–0.91.
      const ConvGeometry t{.channels = C,
                           .height = g.out_h(),
                           .width = g.out_w(),
                           .kernel_h = g.kernel_h,
                           .kernel_w = g.kernel_w,
                           .pad_h = g.kernel_h - 1 - g.pad_h,
                           .pad_w = g.kernel_w - 1 - g.pad_w};
      // the kernel's weight order (convbwd::weight_index) with co' = ci, ci' = co, flipped
      const int64_t ci_count = g.channels, kh = g.kernel_h, kw = g.kernel_w;
      Buffer<T> wr;
      wr.resize(ci_count * C * kh * kw);
      for (int64_t co = 0; co < C; ++co)
        for (int64_t ci = 0; ci < ci_count; ++ci)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j)
              wr[convbwd::weight_index(ci_count, kh, kw, C, ci, i, j, co)] =
                  w[((co * ci_count + ci) * kh + kh - 1 - i) * kw + kw - 1 - j];
      parallel_for_work(batch, static_cast<double>(C * K * P), [&](int64_t s) {
        Buffer<T> scratch;
        scratch.resize(conv_backward_scratch<T>(t, ci_count));
        conv_backward_direct(t, ci_count, alpha, wr.data(), x + s * n_in, y + s * C * P, scratch.data());
      });
    } else {
      parallel_for_work(batch, static_cast<double>(C * K * P), [&](int64_t s) {
        Buffer<T> U;  // from the block cache: no page faults after the first sample
        U.resize(K * P);
        im2col(x + s * n_in, g, U.data());
        cpu::gemm(false, false, C, P, K, alpha, w, K, U.data(), P, T(0), y + s * C * P, P);
      });
    }
    return mnk(batch * C, K, P);
  }

  double conv_backward(const ConvGeometry& g, int64_t C, T alpha, const T* w, const T* dout, int64_t rows,
                       T* din) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    const int64_t kh = g.kernel_h, kw = g.kernel_w;
    if (g.unit_stride() && g.pad_h < kh && g.pad_w < kw &&
        take(p_.channel_conv, C >= 8 && channel_auto(g.channels, g.width))) {
      owner_.count(Path::channel_conv);
      // vectorised over the input channels (kernels/conv_direct.hpp, conv_channels): A[(co, i, j)][ci] =
      // W[co, ci, kh − 1 − i, kw − 1 − j] over dout bordered by kh − 1 − pad_h rows and kw − 1 − pad_w columns
      const int64_t ci_count = g.channels, terms = C * kh * kw, cp = conv_channel_pitch<T>(ci_count);
      const int64_t Hp = g.height + kh - 1, Wp = g.width + kw - 1, oh = g.out_h(), ow = g.out_w();
      Buffer<T> A;
      A.resize(terms * cp);
      std::fill(A.data(), A.data() + A.size(), T(0));
      for (int64_t co = 0; co < C; ++co)
        for (int64_t ci = 0; ci < ci_count; ++ci)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j)
              A[((co * kh + i) * kw + j) * cp + ci] = w[((co * ci_count + ci) * kh + kh - 1 - i) * kw + kw - 1 - j];
      std::vector<int64_t> off(static_cast<size_t>(terms));
      for (int64_t t = 0; t < terms; ++t)
        off[static_cast<size_t>(t)] = (t / (kh * kw) * Hp + t / kw % kh) * Wp + t % kw;
      parallel_for_work(rows, static_cast<double>(C * K * P), [&](int64_t r) {
        Buffer<T> dp;
        dp.resize(C * Hp * Wp);
        zero_bordered(dout + r * C * P, C, oh, ow, kh - 1 - g.pad_h, kw - 1 - g.pad_w, Hp, Wp, dp.data());
        conv_channels(ci_count, g.height, g.width, A.data(), off.data(), terms, dp.data(), Wp, alpha, din + r * n_in);
      });
    } else if (g.unit_stride() && take(p_.direct_conv, kDirectConvBackward && g.channels >= 8)) {
      owner_.count(Path::direct_conv);
      // stride 1: accumulate each input row directly instead of GEMM + col2im (kernels/conv_direct.hpp)
      Buffer<T> wr;
      wr.resize(C * K);
      conv_backward_weight(g, C, w, wr.data());
      parallel_for_work(rows, static_cast<double>(C * K * P), [&](int64_t r) {
        Buffer<T> scratch;
        scratch.resize(conv_backward_scratch<T>(g, C));
        conv_backward_direct(g, C, alpha, wr.data(), dout + r * C * P, din + r * n_in, scratch.data());
      });
    } else {
      parallel_for_work(rows, static_cast<double>(C * K * P), [&](int64_t r) {
        Buffer<T> cols;
        cols.resize(K * P);
        cpu::gemm(true, false, K, P, C, alpha, w, K, dout + r * C * P, P, T(0), cols.data(), P);
        std::fill(din + r * n_in, din + (r + 1) * n_in, T(0));
        col2im(cols.data(), g, din + r * n_in);
      });
    }
    return mnk(rows * C, K, P);
  }

  double conv_gradients(const ConvGeometry& g, int64_t C, int64_t streams, const T* x, int64_t n, const T* delta,
                        bool shared, T* G) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width, rows = streams * C;
    // After a ReLU a sample's deltas are zero at the positions where it zeroed the channel, in all O
    // streams alike: masked_product then skips those patches, channel by channel (its groups are the
    // channels, each with O rows C·P apart). Where it pays (xntk_bench, alternating with the GEMM-only
    // build): the tutorial CNN's 784 positions (K = 288), 20 × 5 images: 97.8–119 ms against 105–111,
    // 100 images: 0.48–0.53 s against 0.49–0.56; at 64 positions (workload 6's second conv, K = 144) it
    // was slower, 3.26–3.76 s against 2.69–2.90 for the workload, so it needs 256 positions, and most
    // of K in whole register strips (the rest of the columns are summed one by one). And more than one stream:
    // a training gradient's single stream (C rows) saves too little to pay for im2row's scattered stores, and
    // im2col with the GEMM reading it transposed is faster: the tutorial CNN's SGD step (batch 32, farm-bench,
    // 10 alternating runs) 0.88× the wall time of the im2row path with masking, which was 0.98×.
    const int64_t strip = 2 * kLanes<T>, whole = K / strip * strip;
    const bool masked = !shared && masked_product_fits(C, streams, P) &&
                        take(p_.masked_product,
                             kMaskedProduct && streams > 1 && P >= 256 && whole >= 2 * strip && 4 * (K - whole) <= K);
    const bool dense_check = p_.masked_product != Choice::on;
    std::vector<double> done(static_cast<size_t>(n), 0.0);
    std::vector<char> skipped(static_cast<size_t>(n), 0);
    parallel_for_work(n, static_cast<double>(rows * K * P), [&](int64_t i) {
      Buffer<T> U;
      U.resize(P * K);
      const T* d = shared ? delta : delta + i * rows * P;
      T* gi = G + i * rows * K;
      if (!masked) {  // U = im2col (K × P, written row by row), G_s = δ_s Uᵀ
        im2col(x + i * n_in, g, U.data());
        cpu::gemm(false, true, rows, K, P, T(1), d, P, U.data(), P, T(0), gi, K);
        done[static_cast<size_t>(i)] = mnk(rows, K, P);
        return;
      }
      im2row(x + i * n_in, g, U.data());
      const double f = masked_product_strided(C, streams, P, K, T(1), d, P, C * P, U.data(), gi, K, C * K,
                                              static_cast<const T*>(nullptr), 0, dense_check, false, nullptr);
      if (f >= 0) {
        done[static_cast<size_t>(i)] = f;
        skipped[static_cast<size_t>(i)] = 1;
        return;
      }
      // dense deltas after all: a sample's O·C_out delta rows (each over the P positions) times its im2row rows
      cpu::gemm(false, false, rows, K, P, T(1), d, P, U.data(), K, T(0), gi, K);
      done[static_cast<size_t>(i)] = mnk(rows, K, P);
    });
    double total = 0;
    for (const double v : done) total += v;
    if (std::find(skipped.begin(), skipped.end(), 1) != skipped.end()) owner_.count(Path::masked_product);
    return total;
  }

  double conv_weight_gradient(const ConvGeometry& g, int64_t C, const T* x, int64_t n, const T* delta, T alpha,
                              T* dw) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    const int threads = static_cast<int>(std::min<int64_t>(loop_threads(), std::max<int64_t>(n, 1)));
    // each thread sums its share of the samples into its own C × K block; the blocks are added in thread order
    std::vector<Buffer<T>> acc(static_cast<size_t>(threads));
    const bool stride1 = g.stride_h == 1 && g.stride_w == 1;
    if (stride1 && take(p_.direct_conv, kDirectConvBackward && g.channels >= 8)) {
      owner_.count(Path::direct_conv);
      // vectorised over the output channels, every (input channel, tap) pair's sum over the positions in
      // registers (kernels/conv_direct.hpp, conv_weight_direct): no im2col and no GEMM
      const int64_t ci_count = g.channels, taps = g.kernel_h * g.kernel_w, cp = conv_weight_pitch<T>(C);
      const int64_t Hp = g.height + 2 * g.pad_h + g.extra_h, Wp = g.width + 2 * g.pad_w + g.extra_w;
      const int64_t plane = Hp * Wp;
      const bool pad = Hp != g.height || Wp != g.width;
      parallel_team(threads, [&](int t, int team) {
        Buffer<T>& a = acc[static_cast<size_t>(t)];
        a.resize(ci_count * taps * cp);
        std::fill(a.data(), a.data() + a.size(), T(0));
        Buffer<T> xp, dT;
        if (pad) {
          xp.resize(ci_count * plane);
          std::fill(xp.data(), xp.data() + xp.size(), T(0));  // the padding stays zero
        }
        dT.resize(P * cp);
        std::fill(dT.data(), dT.data() + dT.size(), T(0));  // the channels C ≤ c < cp stay zero
        for (int64_t s = n * t / team; s < n * (t + 1) / team; ++s) {
          const T* xs = x + s * n_in;
          if (pad)  // without padding the kernel reads the input in place
            for (int64_t ci = 0; ci < ci_count; ++ci)
              for (int64_t r = 0; r < g.height; ++r)
                std::copy(xs + (ci * g.height + r) * g.width, xs + (ci * g.height + r + 1) * g.width,
                          xp.data() + ci * plane + (r + g.pad_h) * Wp + g.pad_w);
          deltas_by_position(delta + s * C * P, C, P, cp, dT.data());
          conv_weight_direct(g, C, pad ? xp.data() : xs, Hp, Wp, dT.data(), a.data());
        }
      });
      for (const auto& a : acc)
        for (int64_t co = 0; co < C; ++co)
          for (int64_t ci = 0; ci < ci_count; ++ci)
            for (int64_t tap = 0; tap < taps; ++tap)
              dw[(co * ci_count + ci) * taps + tap] += alpha * a[(ci * taps + tap) * cp + co];
      return mnk(n * C, K, P);
    }
    parallel_team(threads, [&](int t, int team) {
      Buffer<T>& a = acc[static_cast<size_t>(t)];
      a.resize(C * K);
      std::fill(a.data(), a.data() + a.size(), T(0));
      Buffer<T> U;
      U.resize(K * P);
      for (int64_t s = n * t / team; s < n * (t + 1) / team; ++s) {
        im2col(x + s * n_in, g, U.data());
        cpu::gemm(false, true, C, K, P, T(1), delta + s * C * P, P, U.data(), P, T(1), a.data(), K);
      }
    });
    for (const auto& a : acc)
      for (int64_t e = 0; e < C * K; ++e) dw[e] += alpha * a[e];
    return mnk(n * C, K, P);
  }

  double conv_positions(const ConvGeometry& g, int64_t C, int64_t O, Mode mode, int64_t n1, int64_t n2, bool same,
                        const T* xa, const T* da, bool shared_a, const T* xb, const T* db, bool shared_b, T alpha,
                        T* out) const override {
    const int64_t K = g.rows(), P = g.positions(), n_in = g.channels * g.height * g.width;
    const int64_t per = per_pair(O, mode), CP = C * P;
    Buffer<T> ua, ub;
    ua.resize(n1 * K * P);
    if (!same) ub.resize(n2 * K * P);
    parallel_for_work(n1, static_cast<double>(K * P),
                      [&](int64_t i) { im2col(xa + i * n_in, g, ua.data() + i * K * P); });
    if (!same)
      parallel_for_work(n2, static_cast<double>(K * P),
                        [&](int64_t j) { im2col(xb + j * n_in, g, ub.data() + j * K * P); });
    const T* ubp = same ? ua.data() : ub.data();
    if (same) {
      db = da;
      shared_b = shared_a;
    }
    // Σ_{p,q} Σ_c δ_o[c,p] (UᵀU')[p,q] δ'_o'[c,q] = ⟨δ_o (UᵀU'), δ'_o'⟩_F: per pair, the positions Gram UᵀU'
    // (P × P'), then M = Δ (UᵀU') for all O·C_out delta rows at once, then O × O dot products of length C_out·P'.
    // A symmetric block computes pairs j ≤ i only and writes each value to both places (exact symmetry);
    // thread i writes blocks (i, j ≤ i) and (j < i, i), which no other thread touches.
    parallel_for_work(n1, static_cast<double>(n2 * P * (P * K + O * C * P + O * O * C)), [&](int64_t i) {
      Buffer<T> UU, M, Th;
      UU.resize(P * P);
      M.resize(O * CP);
      Th.resize(O * O);
      const T* dai = shared_a ? da : da + i * O * CP;
      const int64_t j_end = same ? i + 1 : n2;
      for (int64_t j = 0; j < j_end; ++j) {
        cpu::gemm(true, false, P, P, K, T(1), ua.data() + i * K * P, P, ubp + j * K * P, P, T(0), UU.data(), P);
        cpu::gemm(false, false, O * C, P, P, T(1), dai, P, UU.data(), P, T(0), M.data(), P);
        const T* dbj = shared_b ? db : db + j * O * CP;
        T* tij = out + (i * n2 + j) * per;
        T* tji = same && i != j ? out + (j * n2 + i) * per : nullptr;
        switch (mode) {
          case Mode::full: {
            cpu::gemm(false, true, O, O, CP, T(1), M.data(), CP, dbj, CP, T(0), Th.data(), O);
            for (int64_t o = 0; o < O; ++o)
              for (int64_t q = 0; q < O; ++q) {
                // Θ(x, x) itself: its (o, o') and (o', o) must agree exactly, so read one triangle
                const T v = alpha * (same && i == j && q > o ? Th[q * O + o] : Th[o * O + q]);
                tij[o * O + q] += v;
                if (tji) tji[q * O + o] += v;
              }
            break;
          }
          case Mode::trace: {
            const T v = alpha * dot(M.data(), dbj, O * CP);
            tij[0] += v;
            if (tji) tji[0] += v;
            break;
          }
          case Mode::diagonal:
            for (int64_t o = 0; o < O; ++o) {
              const T v = alpha * dot(M.data() + o * CP, dbj + o * CP, CP);
              tij[o] += v;
              if (tji) tji[o] += v;
            }
            break;
        }
      }
    });
    const double pairs = same ? 0.5 * static_cast<double>(n1 * (n1 + 1)) : static_cast<double>(n1 * n2);
    const double contract = mode == Mode::full ? static_cast<double>(O * O * CP) : static_cast<double>(O * CP);
    return pairs * 2.0 * (static_cast<double>(P * P * K) + static_cast<double>(O * CP * P) + contract);
  }

  // ---- window reductions

  double pool_forward(Pool kind, const ConvGeometry& g, const T* x, int64_t batch, T* y) const override {
    const int64_t oh = g.out_h(), ow = g.out_w(), H = g.height, W = g.width, window = g.kernel_h * g.kernel_w;
    if (kind == Pool::average) {
      const T scale = T(1) / T(window);
      parallel_for_work(batch * g.channels, static_cast<double>(oh * ow * window), [&](int64_t bc) {
        const T* src = x + bc * H * W;
        T* dst = y + bc * oh * ow;
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t c = 0; c < ow; ++c) {
            T sum = T(0);
            for (int64_t iy = std::max<int64_t>(0, r * g.stride_h - g.pad_h);
                 iy < std::min(H, r * g.stride_h - g.pad_h + g.kernel_h); ++iy)
              for (int64_t ix = std::max<int64_t>(0, c * g.stride_w - g.pad_w);
                   ix < std::min(W, c * g.stride_w - g.pad_w + g.kernel_w); ++ix)
                sum += src[iy * W + ix];
            dst[r * ow + c] = sum * scale;
          }
      });
    } else {
      const int64_t n_in = g.channels * H * W, n_out = g.channels * oh * ow;
      parallel_for_work(batch, static_cast<double>(n_out * window), [&](int64_t b) {
        std::vector<int64_t> index(static_cast<size_t>(n_out));
        argmax(g, x + b * n_in, index.data());
        for (int64_t k = 0; k < n_out; ++k) y[b * n_out + k] = x[b * n_in + index[static_cast<size_t>(k)]];
      });
    }
    return static_cast<double>(batch * g.channels * oh * ow * window);
  }

  double pool_backward(Pool kind, const ConvGeometry& g, const T* x, const T* dout, int64_t batch, int64_t streams,
                       T* din) const override {
    const int64_t oh = g.out_h(), ow = g.out_w(), H = g.height, W = g.width, window = g.kernel_h * g.kernel_w;
    if (kind == Pool::average) {
      const T scale = T(1) / T(window);
      // one task per (row, channel): every row of the O streams is a separate derivative
      parallel_for_work(batch * streams * g.channels, static_cast<double>(H * W + oh * ow * window), [&](int64_t rc) {
        const T* src = dout + rc * oh * ow;
        T* dst = din + rc * H * W;
        std::fill(dst, dst + H * W, T(0));
        for (int64_t r = 0; r < oh; ++r)
          for (int64_t c = 0; c < ow; ++c) {
            const T d = src[r * ow + c] * scale;
            for (int64_t iy = std::max<int64_t>(0, r * g.stride_h - g.pad_h);
                 iy < std::min(H, r * g.stride_h - g.pad_h + g.kernel_h); ++iy)
              for (int64_t ix = std::max<int64_t>(0, c * g.stride_w - g.pad_w);
                   ix < std::min(W, c * g.stride_w - g.pad_w + g.kernel_w); ++ix)
                dst[iy * W + ix] += d;
          }
      });
      return static_cast<double>(batch * streams * g.channels * oh * ow * window);
    }
    const int64_t n_in = g.channels * H * W, n_out = g.channels * oh * ow;
    parallel_for_work(batch, static_cast<double>(n_out * window + streams * (n_in + n_out)), [&](int64_t b) {
      std::vector<int64_t> index(static_cast<size_t>(n_out));
      argmax(g, x + b * n_in, index.data());
      for (int64_t s = 0; s < streams; ++s) {
        const T* src = dout + (b * streams + s) * n_out;
        T* dst = din + (b * streams + s) * n_in;
        std::fill(dst, dst + n_in, T(0));
        for (int64_t k = 0; k < n_out; ++k) dst[index[static_cast<size_t>(k)]] += src[k];
      }
    });
    return static_cast<double>(batch * streams * n_in);
  }

  double pool_tangent(Pool kind, const ConvGeometry& g, const T* x, const T* dx, int64_t batch, T* dy) const override {
    if (kind == Pool::average) return pool_forward(kind, g, dx, batch, dy);
    const int64_t n_in = g.channels * g.height * g.width, n_out = g.channels * g.out_h() * g.out_w();
    parallel_for_work(batch, static_cast<double>(n_out * g.kernel_h * g.kernel_w), [&](int64_t b) {
      std::vector<int64_t> index(static_cast<size_t>(n_out));
      argmax(g, x + b * n_in, index.data());
      for (int64_t k = 0; k < n_out; ++k) dy[b * n_out + k] = dx[b * n_in + index[static_cast<size_t>(k)]];
    });
    return 0;
  }

  // ---- elementwise and reductions

  double activation_forward(const Activation& a, const T* z, T* y, int64_t batch, int64_t size) const override {
    const int64_t n = size;
    if constexpr (std::is_same_v<T, float>) {
      if (a.kind == ActivationKind::tanh && take(p_.fast_tanh, true)) {  // vectorised, rounded once from double
        owner_.count(Path::fast_tanh);
        parallel_for_work(batch, 8.0 * static_cast<double>(n), [&](int64_t b) {
          const float* __restrict src = z + b * n;
          float* __restrict dst = y + b * n;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) dst[i] = tanh_float(src[i]);
        });
        return static_cast<double>(batch * n);
      }
    }
    if (a.kind == ActivationKind::relu || a.kind == ActivationKind::leaky_relu) {
      // A branch-free loop that vectorises (given -fno-trapping-math, CMakeLists.txt: under GCC's default the
      // selection stays a scalar branch): the per-element switch below mispredicted on about every other sign. The same
      // expression as activation_value (slope 0 for ReLU, so NaN stays NaN), so the explicit and autograd paths still
      // agree bit for bit.
      const T slope = a.kind == ActivationKind::relu ? T(0) : T(a.negative_slope);
      parallel_for_work(batch, 2.0 * static_cast<double>(n), [&](int64_t b) {
        const T* __restrict src = z + b * n;
        T* __restrict dst = y + b * n;
        const T s = slope;  // a local: read through the closure, GCC reloaded it per element and did not vectorise
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) dst[i] = src[i] > T(0) ? src[i] : src[i] * s;
      });
      return static_cast<double>(batch * n);
    }
    parallel_for_work(batch, 8.0 * static_cast<double>(n), [&](int64_t b) {
      for (int64_t i = b * n; i < (b + 1) * n; ++i) y[i] = detail::activation_value<T>(a, z[i]);
    });
    return static_cast<double>(batch * n);
  }

  double activation_backward(const Activation& a, const T* z, const T* y, const T* dout, T* din, int64_t batch,
                             int64_t streams, int64_t size) const override {
    const int64_t n = size;
    // one loop per kind (with_derivative chooses it outside the loop), so that the simple kinds vectorise
    detail::with_derivative<T>(a, [&](auto derivative) {
      parallel_for_work(batch, static_cast<double>(n * (8 + streams)), [&](int64_t b) {
        thread_local std::vector<T> buffer;
        buffer.resize(static_cast<size_t>(n));
        const T* d = buffer.data();
        fill_derivative(derivative, z + b * n, y + b * n, buffer.data(), n);
        for (int64_t s = 0; s < streams; ++s) {
          const int64_t row = (b * streams + s) * n;
          for (int64_t i = 0; i < n; ++i) din[row + i] = d[i] * dout[row + i];
        }
      });
    });
    return static_cast<double>(batch * streams * n);
  }

  double add_bias(T* y, int64_t batch, int64_t channels, int64_t positions, T alpha, const T* bias) const override {
    parallel_for_work(batch, static_cast<double>(channels * positions), [&](int64_t b) {
      if (positions == 1) {  // a Linear layer's: one loop over the features, which vectorises
        T* __restrict row = y + b * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; ++c) row[c] += alpha * bias[c];
        return;
      }
      for (int64_t c = 0; c < channels; ++c) {
        const T v = alpha * bias[c];
        T* __restrict row = y + (b * channels + c) * positions;
        for (int64_t p = 0; p < positions; ++p) row[p] += v;
      }
    });
    return static_cast<double>(batch * channels * positions);
  }

  double channel_affine(const T* x, int64_t rows, int64_t channels, int64_t positions, const T* scale, const T* shift,
                        T* y) const override {
    parallel_for_work(rows * channels, static_cast<double>(positions), [&](int64_t rc) {
      const int64_t c = rc % channels;
      const T a = scale[c], b = shift ? shift[c] : T(0);
      const T* src = x + rc * positions;
      T* dst = y + rc * positions;  // may be src: each element is read before it is written
#pragma omp simd
      for (int64_t p = 0; p < positions; ++p) dst[p] = a * src[p] + b;
    });
    return 2.0 * static_cast<double>(rows * channels * positions);
  }

  double weighted_sums(bool over_inner, int64_t batch, int64_t streams, int64_t outer, int64_t inner, const T* d,
                       bool shared, const T* x, T* y) const override {
    const int64_t n = outer * inner;
    parallel_for_work(batch * streams, static_cast<double>(2 * n), [&](int64_t bs) {
      const int64_t b = bs / streams, s = bs % streams;
      const T* ds = d + (shared ? s : bs) * n;
      const T* xb = x ? x + b * n : nullptr;
      if (over_inner) {
        T* out = y + bs * outer;
        for (int64_t r = 0; r < outer; ++r) {
          const T* dr = ds + r * inner;
          T sum = 0;
          if (xb) {
            const T* xr = xb + r * inner;
            for (int64_t e = 0; e < inner; ++e) sum += dr[e] * xr[e];
          } else {
            for (int64_t e = 0; e < inner; ++e) sum += dr[e];
          }
          out[r] = sum;
        }
        return;
      }
      // down the columns: rows in increasing r, each added across the row (vectorises over e)
      T* __restrict out = y + bs * inner;
      std::fill(out, out + inner, T(0));
      for (int64_t r = 0; r < outer; ++r) {
        const T* __restrict dr = ds + r * inner;
        if (xb) {
          const T* __restrict xr = xb + r * inner;
#pragma omp simd
          for (int64_t e = 0; e < inner; ++e) out[e] += dr[e] * xr[e];
        } else {
#pragma omp simd
          for (int64_t e = 0; e < inner; ++e) out[e] += dr[e];
        }
      }
    });
    return (x ? 2.0 : 1.0) * static_cast<double>(batch * streams * n);
  }

  double normalize(const T* x, int64_t rows, int64_t size, double eps, T* xhat, T* inv) const override {
    parallel_for_work(rows, 5.0 * static_cast<double>(size), [&](int64_t r) {
      const T* __restrict v = x + r * size;
      T* __restrict out = xhat + r * size;
      double mean = 0, var = 0;
#pragma omp simd reduction(+ : mean)
      for (int64_t i = 0; i < size; ++i) mean += static_cast<double>(v[i]);
      mean /= static_cast<double>(size);
#pragma omp simd reduction(+ : var)
      for (int64_t i = 0; i < size; ++i) {
        const double c = static_cast<double>(v[i]) - mean;
        var += c * c;
      }
      var /= static_cast<double>(size);
      const double s = 1.0 / std::sqrt(var + eps);
      inv[r] = T(s);
#pragma omp simd
      for (int64_t i = 0; i < size; ++i) out[i] = T((static_cast<double>(v[i]) - mean) * s);
    });
    return 5.0 * static_cast<double>(rows * size);
  }

  double normalize_derivative(const T* xhat, const T* inv, int64_t batch, int64_t streams, int64_t groups, int64_t size,
                              const T* d, T* din) const override {
    parallel_for_work(batch * streams * groups, 6.0 * static_cast<double>(size), [&](int64_t row) {
      const int64_t g = row % groups, b = row / (streams * groups), grp = b * groups + g;
      const T* u = d + row * size;  // din may be d: each element is read before it is written
      const T* __restrict xh = xhat + grp * size;
      T* out = din + row * size;
      double m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
      for (int64_t i = 0; i < size; ++i) {
        m1 += static_cast<double>(u[i]);
        m2 += static_cast<double>(u[i]) * static_cast<double>(xh[i]);
      }
      m1 /= static_cast<double>(size);
      m2 /= static_cast<double>(size);
      const double s = static_cast<double>(inv[grp]);
#pragma omp simd
      for (int64_t i = 0; i < size; ++i)
        out[i] = T(s * (static_cast<double>(u[i]) - m1 - static_cast<double>(xh[i]) * m2));
    });
    return 6.0 * static_cast<double>(batch * streams * groups * size);
  }

  double sum_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const override {
    parallel_for_work(rows, static_cast<double>(positions), [&](int64_t r) {
      const T* row = x + r * positions;
      T s = 0;
      // in lanes (a sequential sum does not vectorise: it took 3.4% of the tutorial CNN, Eigen's 0.9%)
#pragma omp simd reduction(+ : s)
      for (int64_t p = 0; p < positions; ++p) s += row[p];
      y[r] = alpha * s;
    });
    return static_cast<double>(rows * positions);
  }

  double spread_positions(const T* x, int64_t rows, int64_t positions, T alpha, T* y) const override {
    parallel_for_work(rows, static_cast<double>(positions),
                      [&](int64_t r) { std::fill(y + r * positions, y + (r + 1) * positions, x[r] * alpha); });
    return static_cast<double>(rows);
  }

  double sum_rows(const T* x, int64_t rows, int64_t cols, T alpha, T* y) const override {
    // by column blocks over the threads, each summing its columns in increasing r
    constexpr int64_t block = 256;
    parallel_for_work((cols + block - 1) / block, static_cast<double>(rows * block), [&](int64_t cb) {
      const int64_t c0 = cb * block, c1 = std::min(cols, c0 + block);
      T acc[block] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = x + r * cols;
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += row[c];
      }
      for (int64_t c = c0; c < c1; ++c) y[c] += alpha * acc[c - c0];
    });
    return static_cast<double>(rows * cols + cols);
  }

  double add(int64_t n, const T* x, T* y) const override {
    constexpr int64_t chunk = 1 << 14;
    parallel_for_work((n + chunk - 1) / chunk, static_cast<double>(chunk), [&](int64_t c) {
      const int64_t e0 = c * chunk, e1 = std::min(n, e0 + chunk);
      for (int64_t e = e0; e < e1; ++e) y[e] += x[e];
    });
    return static_cast<double>(n);
  }

  void copy(int64_t n, const T* x, T* y) const override {
    constexpr int64_t chunk = 1 << 16;
    parallel_for_work((n + chunk - 1) / chunk, static_cast<double>(chunk) / 4, [&](int64_t c) {
      const int64_t e0 = c * chunk, e1 = std::min(n, e0 + chunk);
      std::copy(x + e0, x + e1, y + e0);
    });
  }

  void repeat(const T* x, int64_t n, int64_t times, T* y) const override {
    parallel_for_work(times, static_cast<double>(n), [&](int64_t t) { std::copy(x, x + n, y + t * n); });
  }

  void fill(int64_t n, T value, T* y) const override {
    constexpr int64_t chunk = 1 << 16;
    parallel_for_work((n + chunk - 1) / chunk, static_cast<double>(chunk) / 4, [&](int64_t c) {
      const int64_t e0 = c * chunk, e1 = std::min(n, e0 + chunk);
      std::fill(y + e0, y + e1, value);
    });
  }

  double scale(int64_t n, T alpha, T* y) const override {
    constexpr int64_t chunk = 1 << 14;
    parallel_for_work((n + chunk - 1) / chunk, static_cast<double>(chunk), [&](int64_t c) {
      const int64_t e0 = c * chunk, e1 = std::min(n, e0 + chunk);
      for (int64_t e = e0; e < e1; ++e) y[e] *= alpha;
    });
    return static_cast<double>(n);
  }

  void identity(int64_t n, T* y) const override {
    std::fill(y, y + n * n, T(0));
    for (int64_t i = 0; i < n; ++i) y[i * n + i] = T(1);
  }

  void pair_block(Mode mode, int64_t O, const T* S, T* s) const override {
    if (mode == Mode::full) {
      for (int64_t o = 0; o < O; ++o)
        for (int64_t p = 0; p < O; ++p) s[o * O + p] = lower(S, O, o, p);
      return;
    }
    T sum = 0;
    for (int64_t o = 0; o < O; ++o) {
      if (mode == Mode::diagonal) s[o] = S[o * O + o];
      sum += S[o * O + o];
    }
    if (mode == Mode::trace) s[0] = sum;
  }

  // ---- NTK blocks

  double combine_full(int64_t n1, int64_t n2, int64_t O, bool same, const T* A, const T* D, T cb2, T* w,
                      T* bias) const override {
    const int64_t r1 = n1 * O, r2 = n2 * O;
    parallel_rows(n1, n2, same, static_cast<double>(O * O * 2), [&](int64_t i) {
      const int64_t cols = same ? i + 1 : n2;
      for (int64_t o = 0; o < O; ++o) {
        const T* d = D + (i * O + o) * r2;
        for (int64_t j = 0; j < cols; ++j) {
          const T s = A[i * n2 + j];
          T* wij = w + ((i * n2 + j) * O + o) * O;
          T* bij = bias ? bias + ((i * n2 + j) * O + o) * O : nullptr;
          for (int64_t p = 0; p < O; ++p) {
            // Θ(x_i, x_i)'s (o, o') block reads one triangle of D, so it is symmetric too
            const T dv = same && j == i && p > o ? D[(i * O + p) * r2 + i * O + o] : d[j * O + p];
            if (bij == wij) {
              wij[p] += s * dv + cb2 * dv;
            } else {
              wij[p] += s * dv;
              if (bij) bij[p] += cb2 * dv;
            }
          }
        }
      }
    });
    return (bias ? 4.0 : 2.0) * static_cast<double>(r1 * r2);
  }

  double combine_values(int64_t n1, int64_t n2, int64_t per, int64_t slot, bool same, const T* A, const T* D, T cb2,
                        T* w, T* bias) const override {
    parallel_rows(n1, n2, same, 2.0, [&](int64_t i) {
      const int64_t cols = same ? i + 1 : n2;
      const T* ai = A + i * n2;
      const T* di = D + i * n2;
      T* wi = w + i * n2 * per + slot;
      if (per == 1) {
        if (bias == w) return add_products_and_bias(wi, ai, di, cb2, cols);
        add_products(wi, ai, di, cols);
        if (bias) add_scaled(bias + i * n2, di, cb2, cols);
        return;
      }
      if (bias == w) {
        for (int64_t j = 0; j < cols; ++j) wi[j * per] += ai[j] * di[j] + cb2 * di[j];
        return;
      }
      for (int64_t j = 0; j < cols; ++j) wi[j * per] += ai[j] * di[j];
      if (bias) {
        T* bi = bias + i * n2 * per + slot;
        for (int64_t j = 0; j < cols; ++j) bi[j * per] += cb2 * di[j];
      }
    });
    return (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2);
  }

  double combine_shared(int64_t n1, int64_t n2, int64_t per, bool same, const T* A, const T* s, T cb2, T* w,
                        T* bias) const override {
    parallel_rows(n1, n2, same, static_cast<double>(per * 2), [&](int64_t i) {
      const int64_t cols = same ? i + 1 : n2;
      if (per == 1) {
        const T s0 = s[0], b0 = cb2 * s0;
        if (!A) return add_constant(bias + i * n2, b0, cols);
        if (bias == w) return add_scaled_and_constant(w + i * n2, A + i * n2, s0, b0, cols);
        add_scaled(w + i * n2, A + i * n2, s0, cols);
        if (bias) add_constant(bias + i * n2, b0, cols);
        return;
      }
      for (int64_t j = 0; j < cols; ++j) {
        T* wij = w + (i * n2 + j) * per;
        T* bij = bias ? bias + (i * n2 + j) * per : nullptr;
        if (!A) {
          for (int64_t e = 0; e < per; ++e) bij[e] += cb2 * s[e];
          continue;
        }
        const T aij = A[i * n2 + j];
        if (bij == wij) {  // total only: one pass, no aliasing
          for (int64_t e = 0; e < per; ++e) wij[e] += aij * s[e] + cb2 * s[e];
          continue;
        }
        for (int64_t e = 0; e < per; ++e) wij[e] += aij * s[e];
        if (bij)
          for (int64_t e = 0; e < per; ++e) bij[e] += cb2 * s[e];
      }
    });
    return ((A ? 2.0 : 0.0) + (bias ? 2.0 : 0.0)) * static_cast<double>(n1 * n2 * per);
  }

  double feature_gram(Mode mode, int64_t O, const T* fa, int64_t i0, int64_t na, const T* fb, int64_t j0, int64_t nb,
                      int64_t width, T s, bool same, int64_t n2, T* dst) const override {
    // On a symmetric block a diagonal chunk (i0 == j0, fa == fb) computes and reads one triangle, and an
    // off-diagonal chunk also writes the mirrored entries from the same values: either way Θ[i,j,o,o'] and
    // Θ[j,i,o',o] are the same floating-point operations.
    const bool diag = same && i0 == j0, mirror = same && i0 != j0;
    const double sym = diag ? 0.5 : 1.0, writes = mirror ? 2.0 : 1.0;
    double flops = 0;
    if (mode == Mode::full) {
      const int64_t r1 = na * O, r2 = nb * O;
      Buffer<T> D;
      D.resize(r1 * r2);
      split(diag ? cpu::syrk_lower(r1, width, T(1), fa, width, T(0), D.data(), r1, split_of(p_.split_k))
                 : gram_product(r1, r2, width, T(1), fa, width, fb, width, T(0), D.data(), r2, split_of(p_.split_k)));
      flops += sym * mnk(r1, r2, width) + writes * static_cast<double>(r1 * r2);
      const T* Dp = D.data();
      parallel_for_work(na, static_cast<double>(nb * O * O), [&](int64_t i) {
        for (int64_t j = 0; j < nb; ++j) {
          T* tij = dst + ((i0 + i) * n2 + j0 + j) * O * O;
          T* tji = mirror ? dst + ((j0 + j) * n2 + i0 + i) * O * O : nullptr;
          for (int64_t o = 0; o < O; ++o)
            for (int64_t p = 0; p < O; ++p) {
              const T v = s * (diag ? lower(Dp, r2, i * O + o, j * O + p) : Dp[(i * O + o) * r2 + j * O + p]);
              tij[o * O + p] += v;
              if (tji) tji[p * O + o] += v;
            }
        }
      });
      return flops;
    }
    // trace: Σ_o ⟨F(i,o), F(j,o)⟩ is one Gram over a sample's O·width contiguous values;
    // diagonal: one Gram per output over rows O·width apart
    const int64_t per = mode == Mode::trace ? 1 : O, inner = mode == Mode::trace ? O * width : width;
    Buffer<T> D;
    D.resize(na * nb);
    const T* Dp = D.data();
    for (int64_t o = 0; o < per; ++o) {
      split(diag ? cpu::syrk_lower(na, inner, T(1), fa + o * width, O * width, T(0), D.data(), nb, split_of(p_.split_k))
                 : gram_product(na, nb, inner, T(1), fa + o * width, O * width, fb + o * width, O * width, T(0),
                                D.data(), nb, split_of(p_.split_k)));
      parallel_for_work(na, static_cast<double>(nb), [&](int64_t i) {
        for (int64_t j = 0; j < nb; ++j) {
          const T v = s * (diag ? lower(Dp, nb, i, j) : Dp[i * nb + j]);
          dst[((i0 + i) * n2 + j0 + j) * per + o] += v;
          if (mirror) dst[((j0 + j) * n2 + i0 + i) * per + o] += v;
        }
      });
    }
    return static_cast<double>(per) * (sym * mnk(na, nb, inner) + writes * static_cast<double>(na * nb));
  }

 private:
  void split(bool taken) const {
    if (taken) owner_.count(Path::split_k);
  }

  /// Index into the sample's (C, H, W) values of each output's maximum (first in row-major order; NaN wins).
  static void argmax(const ConvGeometry& g, const T* sample, int64_t* index) {
    const int64_t oh = g.out_h(), ow = g.out_w(), H = g.height, W = g.width;
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t x = 0; x < ow; ++x) {
          int64_t best = -1;
          for (int64_t i = 0; i < g.kernel_h; ++i) {
            const int64_t iy = y * g.stride_h - g.pad_h + i * g.dilation_h;
            if (iy < 0 || iy >= H) continue;
            for (int64_t j = 0; j < g.kernel_w; ++j) {
              const int64_t ix = x * g.stride_w - g.pad_w + j * g.dilation_w;
              if (ix < 0 || ix >= W) continue;
              const int64_t k = (c * H + iy) * W + ix;
              // strictly greater: ties keep the first; a NaN wins, as in PyTorch
              if (best < 0 || sample[k] > sample[best] || std::isnan(sample[k])) best = k;
            }
          }
          index[(c * oh + y) * ow + x] = best;  // ≥ 0: padding ≤ kernel/2 leaves every window a real input
        }
  }

  Paths p_;
  const CpuBackend& owner_;
};

class Variant final : public CpuBackend {
 public:
  explicit Variant(const Paths& paths) : CpuBackend(paths), f32_(paths, *this), f64_(paths, *this) {}
  std::string name() const override { return std::string("cpu (") + cpu::name(paths().isa) + ")"; }
  const Ops<float>& f32() const override { return f32_; }
  const Ops<double>& f64() const override { return f64_; }
  const Memory& memory() const override { return host_memory(); }

 private:
  CpuOps<float> f32_;
  CpuOps<double> f64_;
};

std::unique_ptr<CpuBackend> make_variant(const Paths& paths) { return std::make_unique<Variant>(paths); }
