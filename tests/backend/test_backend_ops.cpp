// Every primitive of the CPU backend against the reference backend (ggml's test-backend-ops is the model),
// over a table of shapes, in float and double, for each instruction-set variant this CPU runs and with each
// fast path forced on in turn (then all off). A path forced on must be taken (the backend counts it), and
// one forced off must not. A variant this CPU cannot run is reported as skipped ("XNTK-SKIP", which CTest
// turns into a skipped test), never passed silently.

#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu.hpp"
#include "backend/reference/reference.hpp"

using namespace xntk;
using backend::ConvGeometry;
using backend::Ops;
using backend::cpu::Choice;
using backend::cpu::Isa;
using backend::cpu::Path;

namespace {

/// Seeded normal values.
template <class T>
std::vector<T> randn(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  std::vector<T> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<T>(d(g));
  return v;
}

/// Zeroes column k of every row of each group with probability ~1/2, as a ReLU's derivative does: group g's
/// rows are at g·group_stride + r·row_stride (k values each).
template <class T>
void relu_columns(T* v, int64_t groups, int64_t rows, int64_t k, int64_t group_stride, int64_t row_stride,
                  uint64_t seed) {
  std::mt19937_64 g(seed);
  for (int64_t grp = 0; grp < groups; ++grp)
    for (int64_t j = 0; j < k; ++j)
      if (g() % 2)
        for (int64_t r = 0; r < rows; ++r) v[grp * group_stride + r * row_stride + j] = T(0);
}

/// A gate: positive, negative, zero, −0 and NaN values (kept only where > 0).
template <class T>
std::vector<T> gate_values(int64_t n, uint64_t seed) {
  std::vector<T> v = randn<T>(n, seed);
  for (int64_t i = 0; i < n; i += 7) v[static_cast<size_t>(i)] = T(0);
  for (int64_t i = 3; i < n; i += 11) v[static_cast<size_t>(i)] = -T(0);
  for (int64_t i = 5; i < n; i += 13) v[static_cast<size_t>(i)] = std::numeric_limits<T>::quiet_NaN();
  return v;
}

/// What a case produced: its output values and the FLOPs the primitive reported. `either[i]`: value i may
/// be 0 instead of the reference's (a gated column).
template <class T>
struct Output {
  explicit Output(std::vector<T> v) : values(std::move(v)) {}
  std::vector<T> values;
  double flops = 0;
  std::vector<bool> either;
};

template <class T>
struct Case {
  std::string name;
  std::function<Output<T>(const Ops<T>&)> run;
  bool may_skip = false;  // the CPU may report fewer FLOPs than the dense reference (skipped zeros)
};

template <class T>
double tolerance() {
  // Sums of at most ~1000 products reordered (BLAS blocking, vector lanes, split k): the error relative to the
  // output's largest magnitude stays far below k·ε; these bounds leave a margin over the worst seen.
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T>
std::vector<Case<T>> cases() {
  std::vector<Case<T>> c;
  auto mat = [](int64_t n, uint64_t seed) { return randn<T>(n, seed); };

  // ---- dense products
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (T beta : {T(0), T(0.5)})
        c.push_back({"gemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta),
                     [=](const Ops<T>& ops) {
                       const int64_t m = 37, n = 29, k = 53;
                       const auto a = mat(m * k, 1), b = mat(k * n, 2);
                       Output<T> o{mat(m * n, 3)};
                       o.flops = ops.gemm(ta, tb, m, n, k, T(1.5), a.data(), ta ? m : k, b.data(), tb ? k : n, beta,
                                          o.values.data(), n);
                       return o;
                     }});
  for (const auto& mnk : {std::tuple<int64_t, int64_t, int64_t>{20, 30, 600}, {300, 40, 50}, {7, 9, 3}})
    c.push_back({"gram " + std::to_string(std::get<0>(mnk)) + "x" + std::to_string(std::get<1>(mnk)) + "x" +
                     std::to_string(std::get<2>(mnk)),
                 [=](const Ops<T>& ops) {
                   const auto [m, n, k] = mnk;
                   const auto a = mat(m * (k + 2), 4), b = mat(n * (k + 1), 5);
                   Output<T> o{mat(m * n, 6)};
                   o.flops = ops.gram(m, n, k, T(0.7), a.data(), k + 2, b.data(), k + 1, T(1), o.values.data(), n);
                   return o;
                 }});
  for (const auto& nk : {std::pair<int64_t, int64_t>{30, 600}, {300, 64}, {5, 1}})
    c.push_back({"syrk_lower " + std::to_string(nk.first) + "x" + std::to_string(nk.second), [=](const Ops<T>& ops) {
                   const auto [n, k] = nk;
                   const auto a = mat(n * (k + 3), 7);
                   Output<T> o{mat(n * n, 8)};
                   o.flops = ops.syrk_lower(n, k, T(2), a.data(), k + 3, T(0.25), o.values.data(), n);
                   return o;  // the strict upper triangle must come back untouched, as the reference leaves it
                 }});
  for (int64_t batch : {3, 8, 16, 33})
    c.push_back({"linear batch " + std::to_string(batch), [=](const Ops<T>& ops) {
                   const int64_t n = 70, k = 300;
                   const auto x = mat(batch * k, 9), w = mat(n * k, 10);
                   Output<T> o{std::vector<T>(static_cast<size_t>(batch * n))};
                   o.flops = ops.linear(batch, n, k, T(0.3), x.data(), w.data(), o.values.data());
                   return o;
                 }});

  // ---- products skipping zero columns: a Linear backward (groups = samples) and a conv layer's per-sample
  // layout (groups = channels, rows = outputs C·P apart); with and without a gate, sparse and dense
  for (bool gated : {false, true})
    for (bool sparse : {true, false})
      c.push_back({std::string("product_skipping_zeros linear") + (gated ? " gated" : "") + (sparse ? "" : " dense"),
                   [=](const Ops<T>& ops) {
                     const int64_t groups = 5, rows = 3, k = 300, n = 270;
                     auto dout = mat(groups * rows * k, 11);
                     if (sparse) relu_columns(dout.data(), groups, rows, k, rows * k, k, 12);
                     const auto w = mat(k * n, 13), gate = gate_values<T>(groups * n, 14);
                     const backend::Groups g{groups, rows, rows * k, k, rows * n, n};
                     Output<T> o{std::vector<T>(static_cast<size_t>(groups * rows * n))};
                     o.flops = ops.product_skipping_zeros(g, k, n, T(0.9), dout.data(), w.data(), o.values.data(),
                                                          gated ? gate.data() : nullptr, n);
                     o.either.assign(o.values.size(), false);
                     if (gated)
                       for (int64_t grp = 0; grp < groups; ++grp)
                         for (int64_t r = 0; r < rows; ++r)
                           for (int64_t j = 0; j < n; ++j)
                             o.either[static_cast<size_t>((grp * rows + r) * n + j)] =
                                 !(gate[static_cast<size_t>(grp * n + j)] > 0);
                     return o;
                   },
                   true});
  c.push_back({"product_skipping_zeros conv layout",
               [=](const Ops<T>& ops) {
                 const int64_t C = 4, O = 3, P = 40, K = 36;  // dout (O·C × P), rows (o, c) at (o·C + c)·P
                 auto dout = mat(O * C * P, 15);
                 relu_columns(dout.data(), C, O, P, P, C * P, 16);
                 const auto w = mat(P * K, 17);
                 const backend::Groups g{C, O, P, C * P, K, C * K};
                 Output<T> o{std::vector<T>(static_cast<size_t>(O * C * K))};
                 o.flops =
                     ops.product_skipping_zeros(g, P, K, T(1), dout.data(), w.data(), o.values.data(), nullptr, 0);
                 return o;
               },
               true});
  for (bool same : {false, true})
    for (int64_t R : {8, 3, 12})
      c.push_back({"delta_gram R=" + std::to_string(R) + (same ? " same" : ""),
                   [=](const Ops<T>& ops) {
                     const int64_t g1 = 6, g2 = same ? 6 : 5, k = 300, ld = k + 4;
                     auto a = mat(g1 * R * ld, 18), b = mat(g2 * R * ld, 19);
                     relu_columns(a.data(), g1, R, k, R * ld, ld, 20);
                     relu_columns(b.data(), g2, R, k, R * ld, ld, 21);
                     Output<T> o{std::vector<T>(static_cast<size_t>(g1 * R * g2 * R), T(0))};
                     o.flops = ops.delta_gram(g1, g2, R, k, a.data(), same ? a.data() : b.data(), ld, same, T(1.1),
                                              o.values.data(), g2 * R);
                     if (same)  // only the lower triangle is specified
                       for (int64_t r = 0; r < g1 * R; ++r)
                         for (int64_t q = r + 1; q < g2 * R; ++q) o.values[static_cast<size_t>(r * g2 * R + q)] = T(0);
                     return o;
                   },
                   true});

  // ---- convolutions: unit-stride geometries the direct kernels take (8 channels, 3 × 3, padding 1; 16 channels
  // without padding), one with wide padding, and a strided, dilated one they do not
  const std::vector<std::pair<std::string, ConvGeometry>> geometries = {
      {"8ch 3x3 pad1",
       {.channels = 8, .height = 10, .width = 12, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1}},
      // no padding: the direct kernels read the input in place (63 positions: not whole 16-position blocks)
      {"16ch 3x3 valid", {.channels = 16, .height = 9, .width = 11, .kernel_h = 3, .kernel_w = 3}},
      {"3ch 2x3 pad(2,3)",
       {.channels = 3, .height = 7, .width = 9, .kernel_h = 2, .kernel_w = 3, .pad_h = 2, .pad_w = 3}},
      // padding "same" of an even kernel: one more row and column of zeros at the bottom and the right
      {"8ch 4x2 same",
       {.channels = 8,
        .height = 6,
        .width = 7,
        .kernel_h = 4,
        .kernel_w = 2,
        .pad_h = 1,
        .pad_w = 0,
        .extra_h = 1,
        .extra_w = 1}},
      // stride 1 but dilated: conv_weight_gradient's tap products take it, the direct kernels do not
      {"9ch 3x2 dil(2,3) pad(2,1)",
       {.channels = 9,
        .height = 9,
        .width = 10,
        .kernel_h = 3,
        .kernel_w = 2,
        .pad_h = 2,
        .pad_w = 1,
        .dilation_h = 2,
        .dilation_w = 3}},
      {"5ch 3x2 stride2 dil2",
       {.channels = 5,
        .height = 11,
        .width = 10,
        .kernel_h = 3,
        .kernel_w = 2,
        .stride_h = 2,
        .stride_w = 2,
        .pad_h = 1,
        .dilation_h = 2,
        .dilation_w = 2}}};
  for (const auto& named : geometries) {
    const std::string gname = named.first;
    const ConvGeometry g = named.second;
    const int64_t n_in = g.channels * g.height * g.width, C = 9, K = g.rows(), P = g.positions();
    c.push_back({"conv_forward " + gname, [=](const Ops<T>& ops) {
                   const int64_t batch = 3;
                   const auto w = mat(C * K, 22), x = mat(batch * n_in, 23);
                   Output<T> o{std::vector<T>(static_cast<size_t>(batch * C * P))};
                   o.flops = ops.conv_forward(g, C, T(0.5), w.data(), x.data(), batch, o.values.data());
                   return o;
                 }});
    // the summed weight gradient accumulates (+=) into what dw holds; 5 samples over 2 threads split unevenly
    c.push_back({"conv_weight_gradient " + gname, [=](const Ops<T>& ops) {
                   const int64_t n = 5;
                   const auto x = mat(n * n_in, 35), d = mat(n * C * P, 36);
                   Output<T> o{mat(C * K, 37)};
                   o.flops = ops.conv_weight_gradient(g, C, x.data(), n, d.data(), T(0.7), o.values.data());
                   return o;
                 }});
    c.push_back({"conv_backward " + gname, [=](const Ops<T>& ops) {
                   const int64_t rows = 4;
                   const auto w = mat(C * K, 24), dout = mat(rows * C * P, 25);
                   Output<T> o{std::vector<T>(static_cast<size_t>(rows * n_in))};
                   o.flops = ops.conv_backward(g, C, T(1.5), w.data(), dout.data(), rows, o.values.data());
                   return o;
                 }});
  }
  // per-sample gradients: 256 positions (the masked product's automatic minimum), ReLU zeros per channel
  for (bool shared : {false, true})
    c.push_back({std::string("conv_gradients") + (shared ? " shared" : ""),
                 [=](const Ops<T>& ops) {
                   const ConvGeometry g{.channels = 4, .height = 18, .width = 18, .kernel_h = 3, .kernel_w = 3};
                   const int64_t C = 5, O = 3, n = 3, K = g.rows(), P = g.positions();
                   const auto x = mat(n * 4 * 18 * 18, 26);
                   auto d = mat((shared ? 1 : n) * O * C * P, 27);
                   for (int64_t s = 0; s < (shared ? 1 : n); ++s)  // each channel's O rows zero at the same positions
                     relu_columns(d.data() + s * O * C * P, C, O, P, P, C * P, 28 + static_cast<uint64_t>(s));
                   Output<T> o{std::vector<T>(static_cast<size_t>(n * O * C * K))};
                   o.flops = ops.conv_gradients(g, C, O, x.data(), n, d.data(), shared, o.values.data());
                   return o;
                 },
                 true});
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal})
    for (bool same : {false, true})
      for (bool shared : {false, true})
        c.push_back(
            {std::string("conv_positions ") + name(mode) + (same ? " same" : "") + (shared ? " shared" : ""),
             [=](const Ops<T>& ops) {
               const ConvGeometry g{
                   .channels = 2, .height = 5, .width = 4, .kernel_h = 2, .kernel_w = 2, .pad_h = 1, .dilation_w = 2};
               const int64_t C = 3, O = 2, n1 = 4, n2 = same ? 4 : 3, n_in = 2 * 5 * 4, P = g.positions();
               const int64_t per = mode == Mode::full ? O * O : mode == Mode::diagonal ? O : 1;
               const auto xa = mat(n1 * n_in, 30), xb = mat(n2 * n_in, 31);
               const auto da = mat((shared ? 1 : n1) * O * C * P, 32), db = mat((shared ? 1 : n2) * O * C * P, 33);
               Output<T> o{mat(n1 * n2 * per, 34)};
               o.flops = ops.conv_positions(g, C, O, mode, n1, n2, same, xa.data(), da.data(), shared, xb.data(),
                                            db.data(), shared, T(0.8), o.values.data());
               return o;
             }});

  // ---- pooling: windows with stride, padding and dilation; ties and a NaN for the maximum
  for (backend::Pool kind : {backend::Pool::average, backend::Pool::max})
    for (int64_t dil : {1, 2}) {
      if (kind == backend::Pool::average && dil == 2) continue;
      const ConvGeometry g{.channels = 3,
                           .height = 9,
                           .width = 8,
                           .kernel_h = 3,
                           .kernel_w = 2,
                           .stride_h = 2,
                           .stride_w = 1,
                           .pad_h = 1,
                           .pad_w = 1,
                           .dilation_h = dil,
                           .dilation_w = dil};
      const int64_t n_in = 3 * 9 * 8, n_out = 3 * g.out_h() * g.out_w(), batch = 2, streams = 3;
      auto x = mat(batch * n_in, 35);
      for (int64_t i = 0; i < batch * n_in; i += 5) x[static_cast<size_t>(i)] = T(1);  // ties
      x[17] = std::numeric_limits<T>::quiet_NaN();
      const std::string tag =
          std::string(kind == backend::Pool::max ? "max" : "average") + " dil " + std::to_string(dil);
      c.push_back({"pool_forward " + tag, [=](const Ops<T>& ops) {
                     Output<T> o{std::vector<T>(static_cast<size_t>(batch * n_out))};
                     o.flops = ops.pool_forward(kind, g, x.data(), batch, o.values.data());
                     return o;
                   }});
      c.push_back({"pool_tangent " + tag, [=](const Ops<T>& ops) {
                     const auto dx = mat(batch * n_in, 57);
                     Output<T> o{std::vector<T>(static_cast<size_t>(batch * n_out))};
                     o.flops = ops.pool_tangent(kind, g, x.data(), dx.data(), batch, o.values.data()) +
                               ops.add(1, dx.data(), o.values.data());  // (the case must count some arithmetic)
                     return o;
                   }});
      c.push_back({"pool_backward " + tag, [=](const Ops<T>& ops) {
                     const auto dout = mat(batch * streams * n_out, 36);
                     Output<T> o{std::vector<T>(static_cast<size_t>(batch * streams * n_in))};
                     o.flops = ops.pool_backward(kind, g, x.data(), dout.data(), batch, streams, o.values.data());
                     return o;
                   }});
    }

  // ---- elementwise: every activation, with zeros, −0, large values and NaN
  for (ActivationKind kind : all_activation_kinds()) {
    Activation a{kind};
    if (kind == ActivationKind::leaky_relu) a.negative_slope = 0.2;
    if (kind == ActivationKind::elu) a.alpha = 0.7;
    if (kind == ActivationKind::softplus) a.beta = 2;
    for (const std::string approximate : {"none", "tanh"}) {
      if (approximate == "tanh" && kind != ActivationKind::gelu) continue;
      a.approximate = approximate;
      const int64_t batch = 3, size = 250, streams = 2;
      auto z = mat(batch * size, 37);
      for (int64_t i = 0; i < batch * size; ++i) z[static_cast<size_t>(i)] *= T(3);
      z[0] = T(0), z[1] = -T(0), z[2] = T(40), z[3] = T(-40), z[4] = T(12.5);
      c.push_back({std::string("activation_forward ") + name(kind) + " " + approximate, [=](const Ops<T>& ops) {
                     Output<T> o{std::vector<T>(static_cast<size_t>(batch * size))};
                     o.flops = ops.activation_forward(a, z.data(), o.values.data(), batch, size);
                     return o;
                   }});
      c.push_back({std::string("activation_backward ") + name(kind) + " " + approximate, [=](const Ops<T>& ops) {
                     std::vector<T> y(static_cast<size_t>(batch * size));
                     backend::reference::instance().ops<T>().activation_forward(a, z.data(), y.data(), batch, size);
                     Output<T> o{mat(batch * streams * size, 38)};
                     o.flops = ops.activation_backward(a, z.data(), y.data(), o.values.data(), o.values.data(), batch,
                                                       streams, size);
                     return o;
                   }});
    }
  }
  c.push_back({"add_bias", [=](const Ops<T>& ops) {
                 const auto bias = mat(7, 39);
                 Output<T> o{mat(4 * 7 * 13, 40)};
                 o.flops = ops.add_bias(o.values.data(), 4, 7, 13, T(0.5), bias.data());
                 return o;
               }});
  for (bool with_shift : {true, false})
    for (bool in_place : {false, true})
      c.push_back({std::string("channel_affine") + (with_shift ? "" : " no shift") + (in_place ? " in place" : ""),
                   [=](const Ops<T>& ops) {
                     const int64_t rows = 5, C = 7, P = 19;
                     const auto x = mat(rows * C * P, 57), scale = mat(C, 58), shift = mat(C, 59);
                     Output<T> o{in_place ? x : std::vector<T>(static_cast<size_t>(rows * C * P))};
                     o.flops = ops.channel_affine(in_place ? o.values.data() : x.data(), rows, C, P, scale.data(),
                                                  with_shift ? shift.data() : nullptr, o.values.data());
                     return o;
                   }});
  for (bool over_inner : {true, false})
    for (bool shared : {false, true})
      for (bool with_x : {true, false})
        c.push_back({std::string("weighted_sums") + (over_inner ? " over inner" : " over outer") +
                         (shared ? " shared" : "") + (with_x ? "" : " no x"),
                     [=](const Ops<T>& ops) {
                       const int64_t batch = 3, streams = 4, outer = 6, inner = 45;
                       const auto d = mat((shared ? 1 : batch) * streams * outer * inner, 60);
                       const auto x = mat(batch * outer * inner, 61);
                       Output<T> o{std::vector<T>(static_cast<size_t>(batch * streams * (over_inner ? outer : inner)))};
                       o.flops = ops.weighted_sums(over_inner, batch, streams, outer, inner, d.data(), shared,
                                                   with_x ? x.data() : nullptr, o.values.data());
                       return o;
                     }});
  c.push_back({"normalize", [=](const Ops<T>& ops) {
                 const int64_t rows = 7, size = 37;
                 auto x = mat(rows * size, 62);
                 for (int64_t i = 0; i < size; ++i) x[static_cast<size_t>(size + i)] = T(3);  // a constant group
                 Output<T> o{std::vector<T>(static_cast<size_t>(rows * size + rows))};
                 o.flops = ops.normalize(x.data(), rows, size, 1e-5, o.values.data(), o.values.data() + rows * size);
                 return o;
               }});
  for (bool in_place : {false, true})
    c.push_back({std::string("normalize_derivative") + (in_place ? " in place" : ""), [=](const Ops<T>& ops) {
                   const int64_t batch = 3, streams = 2, groups = 4, size = 29;
                   const auto xhat = mat(batch * groups * size, 63), inv = mat(batch * groups, 64);
                   const auto d = mat(batch * streams * groups * size, 65);
                   Output<T> o{in_place ? d : std::vector<T>(d.size())};
                   o.flops = ops.normalize_derivative(xhat.data(), inv.data(), batch, streams, groups, size,
                                                      in_place ? o.values.data() : d.data(), o.values.data());
                   return o;
                 }});
  c.push_back({"sum_positions, spread_positions, sum_rows", [=](const Ops<T>& ops) {
                 const auto x = mat(50 * 31, 41);
                 Output<T> o{std::vector<T>(50 + 50 * 31 + 300, T(0.25))};
                 o.flops = ops.sum_positions(x.data(), 50, 31, T(0.5), o.values.data());
                 o.flops += ops.spread_positions(x.data(), 50, 31, T(2), o.values.data() + 50);
                 o.flops += ops.sum_rows(x.data(), 5, 300, T(3), o.values.data() + 50 + 50 * 31);
                 return o;
               }});
  c.push_back({"identity, pair_block", [=](const Ops<T>& ops) {
                 const int64_t O = 4;
                 const auto S = mat(O * O, 56);  // read in its lower triangle only
                 Output<T> o{std::vector<T>(O * O + O * O + O + 1, T(0))};
                 ops.identity(O, o.values.data());
                 ops.pair_block(Mode::full, O, S.data(), o.values.data() + O * O);
                 ops.pair_block(Mode::diagonal, O, S.data(), o.values.data() + 2 * O * O);
                 ops.pair_block(Mode::trace, O, S.data(), o.values.data() + 2 * O * O + O);
                 o.flops = ops.add(1, S.data(), o.values.data());  // (the case must count some arithmetic)
                 return o;
               }});
  c.push_back({"add, copy, repeat, fill", [=](const Ops<T>& ops) {
                 const auto x = mat(100000, 42);
                 Output<T> o{mat(4 * 100000 + 300, 43)};
                 T* y = o.values.data();
                 o.flops = ops.add(100000, x.data(), y);
                 ops.copy(100000, x.data(), y + 100000);
                 ops.repeat(x.data(), 50000, 3, y + 200000);
                 ops.fill(50000 + 300, T(-2), y + 350000);
                 o.flops += ops.scale(30000, T(1.5), y + 320000);
                 return o;
               }});

  // ---- NTK blocks
  for (bool same : {false, true})
    for (int bias_kind : {0, 1, 2}) {  // no bias, a bias block, the bias into the weight block
      const std::string tag = std::string(same ? " same" : "") + (bias_kind == 0   ? " no bias"
                                                                  : bias_kind == 1 ? " bias"
                                                                                   : " total");
      const int64_t n1 = 37, n2 = same ? 37 : 21, O = 3;       // rows longer than a vector: its body and its tail
      auto pairs_only = [=](std::vector<T>& v, int64_t per) {  // with `same`, only pairs j ≤ i are specified
        if (!same) return;
        for (int64_t i = 0; i < n1; ++i)
          for (int64_t j = i + 1; j < n2; ++j)
            for (int64_t e = 0; e < per; ++e) v[static_cast<size_t>((i * n2 + j) * per + e)] = T(0);
      };
      c.push_back({"combine_full" + tag, [=](const Ops<T>& ops) {
                     const auto A = mat(n1 * n2, 44), D = mat(n1 * O * n2 * O, 45);
                     Output<T> o{mat(2 * n1 * n2 * O * O, 46)};
                     T* w = o.values.data();
                     T* b = bias_kind == 0 ? nullptr : bias_kind == 1 ? w + n1 * n2 * O * O : w;
                     o.flops = ops.combine_full(n1, n2, O, same, A.data(), D.data(), T(0.3), w, b);
                     std::vector<T> first(o.values.begin(), o.values.begin() + n1 * n2 * O * O),
                         second(o.values.begin() + n1 * n2 * O * O, o.values.end());
                     pairs_only(first, O * O);
                     pairs_only(second, O * O);
                     std::copy(second.begin(), second.end(), std::copy(first.begin(), first.end(), o.values.begin()));
                     return o;
                   }});
      for (int64_t per : {1, 3})
        c.push_back({"combine_values per " + std::to_string(per) + tag, [=](const Ops<T>& ops) {
                       const auto A = mat(n1 * n2, 47), D = mat(n1 * n2, 48);
                       Output<T> o{mat(2 * n1 * n2 * per, 49)};
                       T* w = o.values.data();
                       T* b = bias_kind == 0 ? nullptr : bias_kind == 1 ? w + n1 * n2 * per : w;
                       o.flops = ops.combine_values(n1, n2, per, per - 1, same, A.data(), D.data(), T(0.3), w, b);
                       std::vector<T> first(o.values.begin(), o.values.begin() + n1 * n2 * per),
                           second(o.values.begin() + n1 * n2 * per, o.values.end());
                       pairs_only(first, per);
                       pairs_only(second, per);
                       std::copy(second.begin(), second.end(), std::copy(first.begin(), first.end(), o.values.begin()));
                       return o;
                     }});
      for (bool with_a : {true, false})
        for (int64_t per : {int64_t{1}, O * O}) {  // one value per pair (the contiguous rows) or an O × O block
          if (!with_a && bias_kind == 0) continue;
          c.push_back(
              {"combine_shared per " + std::to_string(per) + (with_a ? "" : " no A") + tag, [=](const Ops<T>& ops) {
                 const auto A = mat(n1 * n2, 50), s = mat(per, 51);
                 Output<T> o{mat(2 * n1 * n2 * per, 52)};
                 T* w = o.values.data();
                 T* b = bias_kind == 0 ? nullptr : bias_kind == 1 ? w + n1 * n2 * per : w;
                 o.flops = ops.combine_shared(n1, n2, per, same, with_a ? A.data() : nullptr, s.data(), T(0.3), w, b);
                 std::vector<T> first(o.values.begin(), o.values.begin() + n1 * n2 * per),
                     second(o.values.begin() + n1 * n2 * per, o.values.end());
                 pairs_only(first, per);
                 pairs_only(second, per);
                 std::copy(second.begin(), second.end(), std::copy(first.begin(), first.end(), o.values.begin()));
                 return o;
               }});
        }
    }
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal})
    for (int chunk : {0, 1, 2}) {  // 0: two sides; 1: a diagonal chunk of one side; 2: an off-diagonal chunk of it
      c.push_back(
          {std::string("feature_gram ") + name(mode) + " chunk " + std::to_string(chunk), [=](const Ops<T>& ops) {
             const int64_t O = 3, width = 600, n2 = 7;
             const int64_t i0 = chunk == 2 ? 4 : 1, na = chunk == 2 ? 3 : 3, j0 = chunk == 2 ? 1 : 1,
                           nb = chunk == 0 ? 5 : 3;
             const int64_t per = mode == Mode::full ? O * O : mode == Mode::diagonal ? O : 1;
             const auto fa = mat(na * O * width, 53), fb = mat(nb * O * width, 54);
             Output<T> o{mat(n2 * n2 * per, 55)};
             o.flops = ops.feature_gram(mode, O, fa.data(), i0, na, chunk == 1 ? fa.data() : fb.data(), j0, nb, width,
                                        T(0.6), chunk != 0, n2, o.values.data());
             return o;
           }});
    }
  return c;
}

/// Runs every case on `cpu` and on the reference; returns the number of cases compared.
template <class T>
int compare_all(const backend::Backend& cpu) {
  const auto& ref = backend::reference::instance().ops<T>();
  int compared = 0;
  for (const auto& k : cases<T>()) {
    INFO(cpu.name() << ", " << (std::is_same_v<T, float> ? "float" : "double") << ": " << k.name);
    const Output<T> want = k.run(ref), got = k.run(cpu.ops<T>());
    REQUIRE(got.values.size() == want.values.size());
    double scale = 0, err = 0;
    for (size_t i = 0; i < want.values.size(); ++i) {
      const double w = static_cast<double>(want.values[i]), g = static_cast<double>(got.values[i]);
      if (std::isnan(w) || std::isnan(g)) {
        CHECK(std::isnan(w) == std::isnan(g));
        continue;
      }
      if (!want.either.empty() && want.either[i] && g == 0) continue;
      scale = std::max(scale, std::abs(w));
      err = std::max(err, std::abs(w - g));
    }
    CHECK(err <= tolerance<T>() * std::max(scale, 1e-30));
    // every case does arithmetic and counts it; a skipped zero is not counted as work done
    CHECK(got.flops > 0);
    if (k.may_skip) CHECK(got.flops <= want.flops);
    ++compared;
  }
  return compared;
}

/// The whole table on variant `isa`: all paths automatic, each forced on in turn, all off.
void run_variant(Isa isa) {
  if (!backend::cpu::supported(isa)) {
    WARN("XNTK-SKIP: this CPU does not run the " << backend::cpu::name(isa)
                                                 << " variant: its fast paths were not tested here");
    return;
  }
  const auto names = backend::cpu::path_names();
  // configuration -1: automatic; 0…kPaths-1: that path on; kPaths: all off
  for (int config = -1; config <= static_cast<int>(backend::cpu::kPaths); ++config) {
    backend::cpu::Paths paths{.isa = isa};
    std::string label = "automatic";
    if (config >= 0 && config < static_cast<int>(backend::cpu::kPaths)) {
      paths.*names[static_cast<size_t>(config)].second = Choice::on;
      label = names[static_cast<size_t>(config)].first + " on";
    } else if (config == static_cast<int>(backend::cpu::kPaths)) {
      for (const auto& [n, member] : names) paths.*member = Choice::off;
      label = "all off";
    }
    INFO("paths: " << label);
    const auto cpu = backend::cpu::make(paths);
    CHECK(compare_all<float>(*cpu) > 0);
    CHECK(compare_all<double>(*cpu) > 0);
    if (config >= 0 && config < static_cast<int>(backend::cpu::kPaths)) {
      const auto path = static_cast<Path>(config);
      if (backend::cpu::compiled_in(isa, path))
        CHECK(cpu->taken(path) > 0);  // the table reaches every path it forces
      else
        WARN(names[static_cast<size_t>(config)].first << " is not compiled into the " << backend::cpu::name(isa)
                                                      << " variant (it needs AVX-512); the avx512 test covers it");
    }
    if (config == static_cast<int>(backend::cpu::kPaths))
      for (size_t p = 0; p < backend::cpu::kPaths; ++p) CHECK(cpu->taken(static_cast<Path>(p)) == 0);
  }
}

}  // namespace

TEST_CASE("cross-backend: every CPU primitive and fast path of the generic variant equals the reference", "[backend]") {
  run_variant(Isa::generic);
}

TEST_CASE("cross-backend: every CPU primitive and fast path of the avx2 variant equals the reference", "[backend]") {
  run_variant(Isa::avx2);
}

TEST_CASE("cross-backend: every CPU primitive and fast path of the avx512 variant equals the reference", "[backend]") {
  run_variant(Isa::avx512);
}
