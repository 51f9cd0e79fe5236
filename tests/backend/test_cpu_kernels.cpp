// The CPU backend's own kernels, each forced on through the backend (cpu.hpp's Paths) and checked against
// long-double sums of every term (Higham's bounds), for thread-count invariance, and for what they must
// leave alone: the masked product and the masked deltas Gram (zero-skipping), the split Grams and SYRKs,
// the direct stride-1 conv backward, the skinny Linear forward, and Kernel::flops counting only the work done.
// (Every primitive is also compared with the reference backend on every variant in test_backend_ops.cpp.)

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <type_traits>
#include <vector>
#include <xntk/xntk.hpp>

#include "../helpers.hpp"
#include "backend/cpu/blas.hpp"
#include "backend/cpu/cpu.hpp"
#include "ntk/driver.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace xntk;
using backend::cpu::Choice;
using backend::cpu::CpuBackend;
using backend::cpu::Path;
using backend::cpu::Paths;

namespace {

// The masked kernels' limits (kernels/masked_product.hpp, kernels/masked_gram.hpp): rows (outputs) and
// groups (samples) per call, and the rows per sample of the deltas Gram.
constexpr int64_t kMaskedMaxRows = 12, kMaskedMaxBatch = 32, kMaskedGramMinRows = 4, kMaskedGramMaxRows = 12;
/// Values per 64-byte vector: the masked product's strips are two of them wide.
template <class T>
constexpr int64_t kLanes = 64 / sizeof(T);

/// A CPU backend on this CPU's best variant with one path chosen (the others automatic).
std::unique_ptr<CpuBackend> with(Choice Paths::*member, Choice choice = Choice::on) {
  Paths p;
  p.*member = choice;
  return backend::cpu::make(p);
}

/// din = alpha · dout · w for contiguous groups of `rows` rows (a Linear backward) through `be`; whether the
/// masked product took it.
template <class T>
bool masked_product(const CpuBackend& be, int64_t batch, int64_t rows, int64_t k, int64_t n, T alpha, const T* dout,
                    const T* w, T* din, const T* gate = nullptr) {
  const int64_t before = be.taken(Path::masked_product);
  const backend::Groups g{batch, rows, rows * k, k, rows * n, n};
  be.ops<T>().product_skipping_zeros(g, k, n, alpha, dout, w, din, gate, n);
  return be.taken(Path::masked_product) > before;
}

}  // namespace

TEMPLATE_TEST_CASE("a Linear forward on a few wide samples matches direct dot products", "[backend]", float, double) {
  // batches up to 32 through ≥ 256 inputs take the skinny product (on the AVX2 and AVX-512 variants): the
  // dot-product form for 1-4 float / 1-2 double samples, the sample-vectorised form above. Batches that
  // fill no whole vector, and row counts with and without a partial block of 8 (7 = 0·8 + 7, 37 = 4·8 + 5)
  using T = TestType;
  const int64_t in = 301;
  const CpuBackend& cpu = backend::cpu::instance();  // what Sequential::forward runs on
  // each output is a sum of in + 1 terms (and one scaling): recursive summation stays within
  // (in + 2)·u·Σ|terms| of the exact sum (Higham, Accuracy and Stability, §4.2), u = ε/2
  const double tolerance = (in + 2) * std::numeric_limits<T>::epsilon() / 2;
  // the ntk parameterisation scales W by c_w = 1/√in inside the product
  for (const auto& shape : {std::pair{int64_t{7}, Parameterization::standard}, {int64_t{37}, Parameterization::ntk}}) {
    const int64_t out = shape.first;  // (structured bindings cannot be captured by Clang 14's lambdas)
    const Parameterization p = shape.second;
    const Sequential<T> net({.input = {in}, .parameterization = p, .layers = {Linear{.out_features = out}}}, 3);
    const Tensor<T>& w = net.parameter("0.weight");
    const Tensor<T>& b = net.parameter("0.bias");
    for (const int64_t batch : {1, 2, 3, 4, 5, 9, 16, 17, 31, 32, 33}) {
      Tensor<T> x({batch, in});
      for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<T>(std::sin(0.37 * static_cast<double>(i)));
      // the largest error of y's outputs, relative to the sum of their terms' magnitudes
      auto worst = [&](const Tensor<T>& y) {
        double e = 0;
        for (int64_t s = 0; s < batch; ++s)
          for (int64_t j = 0; j < out; ++j) {
            long double exact = 0, scale = 0;
            // the multipliers as the layer applies them, rounded to T
            const auto cw = static_cast<long double>(static_cast<T>(net.multipliers(0).first));
            const auto cb = static_cast<long double>(static_cast<T>(net.multipliers(0).second));
            for (int64_t k = 0; k < in; ++k) {
              const long double term = cw * w[j * in + k] * x[s * in + k];
              exact += term;
              scale += std::fabs(term);
            }
            exact += cb * b[j];
            scale += std::fabs(cb * b[j]);
            e = std::max(e, static_cast<double>(std::fabs(static_cast<long double>(y[s * out + j]) - exact) / scale));
          }
        return e;
      };
      const int64_t skinny_before = cpu.taken(Path::skinny);
      const Tensor<T> y = net.forward(x);
      const bool ours = cpu.taken(Path::skinny) > skinny_before;
      CAPTURE(out, batch);
      CHECK(worst(y) <= tolerance);
#ifdef _OPENMP
      // our own kernel sums each output's terms in one order, whatever the thread count; a BLAS GEMM (more
      // samples, or no skinny kernel taken on this variant) need not (OpenBLAS's Haswell SGEMM, chosen by
      // OPENBLAS_CORETYPE=Haswell, rounds 33 × 37 × 301 differently at 1 and 3 threads), only as accurately
      const int threads = omp_get_max_threads();
      for (const int t : {1, 3}) {
        omp_set_num_threads(t);
        const Tensor<T> again = net.forward(x);
        CAPTURE(t);
        if (ours)
          CHECK(std::equal(again.data(), again.data() + again.size(), y.data()));
        else
          CHECK(worst(again) <= tolerance);
      }
      omp_set_num_threads(threads);
#endif
    }
  }
}

TEMPLATE_TEST_CASE("masked_product skips zero columns and matches direct sums", "[backend]", float, double) {
  // din = alpha · dout · W over sample row groups, against long-double sums of every term. n = 77 leaves
  // columns past the last whole strip (2 vectors wide), computed apart.
  using T = TestType;
  const int64_t k = 300, n = 77;
  const T alpha = T(0.75);
  const auto be = with(&Paths::masked_product);
  std::mt19937_64 g(5);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  // each term is rounded twice (alpha · dout, then · w) and at most k are summed in turn: within
  // (k + 2)·u·Σ|terms| of the exact sum (Higham, Accuracy and Stability, §4.2), u = ε/2
  const double tolerance = (k + 2) * std::numeric_limits<T>::epsilon() / 2;
  for (const int64_t batch : {1, 5, 32})
    for (int64_t rows = 1; rows <= kMaskedMaxRows; ++rows) {
      INFO("batch " << batch << ", rows " << rows);
      std::vector<T> dout(static_cast<size_t>(batch * rows * k), T(0));
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < k; ++j) {
          // a column on for all of the sample's rows (as after a ReLU), on for one of them only (it must
          // count as active too), or off for all of them
          const auto kind = g() % 4;
          for (int64_t r = 0; r < rows; ++r)
            if (kind < 2 || (kind == 2 && r == j % rows))
              dout[static_cast<size_t>((b * rows + r) * k + j)] = static_cast<T>(normal(g));
        }
      std::vector<T> din(static_cast<size_t>(batch * rows * n), T(-1));
      REQUIRE(masked_product(*be, batch, rows, k, n, alpha, dout.data(), w.data(), din.data()));
      double worst = 0;
      for (int64_t i = 0; i < batch * rows; ++i)
        for (int64_t j = 0; j < n; ++j) {
          long double exact = 0, scale = 0;
          for (int64_t q = 0; q < k; ++q) {
            const long double term = static_cast<long double>(alpha) * dout[static_cast<size_t>(i * k + q)] *
                                     w[static_cast<size_t>(q * n + j)];
            exact += term;
            scale += std::fabs(term);
          }
          const long double err = std::fabs(static_cast<long double>(din[static_cast<size_t>(i * n + j)]) - exact);
          worst = std::max(worst, static_cast<double>(scale > 0 ? err / scale : err));
        }
      CHECK(worst <= tolerance);
#ifdef _OPENMP
      // each output sums its terms in one order, whatever the thread count
      const int threads = omp_get_max_threads();
      for (const int t : {1, 3}) {
        omp_set_num_threads(t);
        std::vector<T> again(din.size());
        REQUIRE(masked_product(*be, batch, rows, k, n, alpha, dout.data(), w.data(), again.data()));
        CHECK(again == din);
      }
      omp_set_num_threads(threads);
#endif
    }
  // a weight row met only by zero deltas is never read: a NaN there stays out of din
  std::vector<T> dout(static_cast<size_t>(2 * k), T(0));
  for (int64_t j = 1; j < k; j += 2) dout[static_cast<size_t>(j)] = dout[static_cast<size_t>(k + j)] = T(1);
  std::vector<T> wn = w;
  wn[static_cast<size_t>(4 * n + 3)] = std::numeric_limits<T>::quiet_NaN();  // row 4: zero in both rows
  std::vector<T> din(static_cast<size_t>(2 * n));
  REQUIRE(masked_product<T>(*be, 1, 2, k, n, T(1), dout.data(), wn.data(), din.data()));
  for (const T v : din) CHECK(std::isfinite(v));
  // automatically (n below 256, and mostly non-zero columns) the dense GEMM computes the same
  std::fill(dout.begin(), dout.end(), T(1));
  std::vector<T> dense(din.size()), gemm(din.size());
  const auto automatic = backend::cpu::make();
  CHECK_FALSE(masked_product<T>(*automatic, 1, 2, k, n, T(1), dout.data(), w.data(), dense.data()));
  backend::cpu::gemm(false, false, 2, n, k, T(1), dout.data(), k, w.data(), n, T(0), gemm.data(), n);
  CHECK(dense == gemm);
  // more rows or samples than its tiles take: not taken even when forced (the GEMM computes them)
  std::vector<T> big(static_cast<size_t>((kMaskedMaxBatch + 1) * (kMaskedMaxRows + 1)), T(1)), out(big.size());
  const std::vector<T> one{T(2)};
  CHECK_FALSE(masked_product<T>(*be, 1, kMaskedMaxRows + 1, 1, 1, T(1), big.data(), one.data(), out.data()));
  CHECK(out[0] == T(2));
  CHECK_FALSE(masked_product<T>(*be, kMaskedMaxBatch + 1, 1, 1, 1, T(1), big.data(), one.data(), out.data()));
}

TEMPLATE_TEST_CASE("masked_product with a gate computes the kept columns only, as without it", "[backend]", float,
                   double) {
  // A gate (the input of a ReLU below) keeps din's column j of sample b where gate > 0: those must equal
  // the ungated product exactly (the same terms in the same order), the others must be 0, whatever the
  // thread count. Strips (2 vectors of columns) with no column kept, at most half a vector's worth, at
  // most one, at most one and a half, more, and all (each a tile of its own); n leaves columns past the
  // last strip; a NaN or −0 in the gate is not kept.
  using T = TestType;
  constexpr int64_t L = kLanes<T>, C = 2 * L;
  const auto be = with(&Paths::masked_product);
  const int64_t k = 290, n = 6 * C + 7;
  std::mt19937_64 g(21);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  for (const int64_t batch : {1, 6, 32})
    for (const int64_t rows : {int64_t{1}, int64_t{5}, int64_t{8}, kMaskedMaxRows}) {
      INFO("batch " << batch << ", rows " << rows);
      std::vector<T> dout(static_cast<size_t>(batch * rows * k), T(0));
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t j = 0; j < k; ++j)
          if (g() % 2)
            for (int64_t r = 0; r < rows; ++r) dout[static_cast<size_t>((b * rows + r) * k + j)] = T(normal(g));
      std::vector<T> gate(static_cast<size_t>(batch * n));
      const T off[] = {T(-1), T(0), T(-0.0), std::numeric_limits<T>::quiet_NaN()};
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t s = 0; s * C < n; ++s) {
          // none; 1 to L/2; L/2 + 1 to L; L + 1 to 3L/2; 3L/2 + 1 to 2L; all kept
          const auto kind = static_cast<int64_t>((b + s) % 6);
          std::vector<int> keep(static_cast<size_t>(C), kind == 5 ? 1 : 0);
          const int64_t want =
              kind >= 1 && kind <= 4 ? (kind - 1) * L / 2 + 1 + static_cast<int64_t>(g() % (L / 2)) : 0;
          for (int64_t c = 0; c < want; ++c) keep[static_cast<size_t>(c)] = 1;
          std::shuffle(keep.begin(), keep.end(), g);
          for (int64_t c = 0; c < C && s * C + c < n; ++c)
            gate[static_cast<size_t>(b * n + s * C + c)] =
                keep[static_cast<size_t>(c)] ? T(0.5 + std::fabs(normal(g))) : off[g() % 4];
        }
      std::vector<T> plain(static_cast<size_t>(batch * rows * n)), gated(plain.size(), T(-1));
      REQUIRE(masked_product(*be, batch, rows, k, n, T(0.75), dout.data(), w.data(), plain.data()));
      REQUIRE(masked_product(*be, batch, rows, k, n, T(0.75), dout.data(), w.data(), gated.data(), gate.data()));
      int64_t wrong = 0, kept = 0;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < n; ++j) {
            const size_t i = static_cast<size_t>((b * rows + r) * n + j);
            const bool on = gate[static_cast<size_t>(b * n + j)] > T(0);
            kept += on;
            wrong += on ? gated[i] != plain[i] : gated[i] != T(0);
          }
      REQUIRE(kept > 0);
      CHECK(wrong == 0);
#ifdef _OPENMP
      const int threads = omp_get_max_threads();
      for (const int t : {1, 3}) {
        omp_set_num_threads(t);
        std::vector<T> again(gated.size());
        REQUIRE(masked_product(*be, batch, rows, k, n, T(0.75), dout.data(), w.data(), again.data(), gate.data()));
        CHECK(again == gated);
      }
      omp_set_num_threads(threads);
#endif
    }
}

TEMPLATE_TEST_CASE("masked_gram sums each sample pair's block over the columns both have non-zero", "[backend]", float,
                   double) {
  // D = a bᵀ for sample row groups of R rows, against long-double sums of every term (the skipped ones are
  // exact zeros). n = 300 leaves a partial mask word. A column of a group is on for all of its rows, on for
  // one row only (it must count as non-zero too), or off; a quarter of them are on, as the deltas of two
  // layers of ReLUs, so that every R is sparse enough to be taken.
  using T = TestType;
  const int64_t n = 300;
  const auto be = with(&Paths::masked_gram);
  const auto& ops = be->ops<T>();
  std::mt19937_64 g(21);
  std::normal_distribution<double> normal;
  // each term is one product, and at most n are summed in turn: within (n + 1)·u·Σ|terms| (Higham §3.1)
  const double tolerance = (n + 1) * std::numeric_limits<T>::epsilon() / 2;
  auto fill = [&](int64_t groups, int64_t R, std::vector<T>& m, std::vector<uint8_t>& on) {
    m.assign(static_cast<size_t>(groups * R * n), T(0));
    on.assign(static_cast<size_t>(groups * n), 0);
    for (int64_t i = 0; i < groups; ++i)
      for (int64_t k = 0; k < n; ++k) {
        const auto kind = g() % 8;  // 0: all rows, 1: one row, else off
        if (kind > 1) continue;
        on[static_cast<size_t>(i * n + k)] = 1;
        for (int64_t r = 0; r < R; ++r)
          if (kind == 0 || r == k % R) m[static_cast<size_t>((i * R + r) * n + k)] = static_cast<T>(normal(g));
      }
  };
  for (int64_t R = kMaskedGramMinRows; R <= kMaskedGramMaxRows; ++R)
    for (const bool same : {true, false}) {
      const int64_t g1 = 9, g2 = same ? g1 : 5, r1 = g1 * R, r2 = g2 * R;
      INFO("R " << R << (same ? ", same" : ", two batches"));
      std::vector<T> a, b;
      std::vector<uint8_t> on_a, on_b;
      fill(g1, R, a, on_a);
      if (same) {
        b = a;
        on_b = on_a;
      } else {
        fill(g2, R, b, on_b);
      }
      const T alpha = T(0.5);
      std::vector<T> out(static_cast<size_t>(r1 * r2), T(-7));
      const int64_t before = be->taken(Path::masked_gram);
      const double flops = ops.delta_gram(g1, g2, R, n, a.data(), b.data(), n, same, alpha, out.data(), r2);
      REQUIRE(be->taken(Path::masked_gram) == before + 1);
      // the FLOPs: 2·R² per column both samples of a formed pair have on
      double shared = 0;
      for (int64_t i = 0; i < g1; ++i)
        for (int64_t j = 0; j < (same ? i + 1 : g2); ++j)
          for (int64_t k = 0; k < n; ++k)
            shared += on_a[static_cast<size_t>(i * n + k)] & on_b[static_cast<size_t>(j * n + k)];
      REQUIRE(flops == 2.0 * static_cast<double>(R * R) * shared);
      double worst = 0;
      for (int64_t p = 0; p < r1; ++p)
        for (int64_t q = 0; q < r2; ++q) {
          const T got = out[static_cast<size_t>(p * r2 + q)];
          if (same && q / R > p / R) {  // blocks above the diagonal are not touched
            CHECK(got == T(-7));
            continue;
          }
          long double exact = 0, scale = 0;
          for (int64_t k = 0; k < n; ++k) {
            const long double term =
                static_cast<long double>(alpha) * a[static_cast<size_t>(p * n + k)] * b[static_cast<size_t>(q * n + k)];
            exact += term;
            scale += std::fabs(term);
          }
          worst = std::max(worst, static_cast<double>(scale > 0 ? std::fabs(got - exact) / scale : std::fabs(got)));
        }
      CHECK(worst <= tolerance);
#ifdef _OPENMP
      // each block sums its terms in one order, whatever the thread count
      const int threads = omp_get_max_threads();
      for (const int t : {1, 3}) {
        omp_set_num_threads(t);
        std::vector<T> again(out.size(), T(-7));
        ops.delta_gram(g1, g2, R, n, a.data(), b.data(), n, same, alpha, again.data(), r2);
        CHECK(again == out);
      }
      omp_set_num_threads(threads);
#endif
    }
  const int64_t R = 8;
  std::vector<T> a(static_cast<size_t>(2 * R * n), T(0)), out(static_cast<size_t>(4 * R * R), T(3));
  // a value met only by the other sample's zero rows is never multiplied: a NaN there stays out of D's
  // off-diagonal block (and a column shared by both still counts)
  for (int64_t k = 0; k < n; k += 4) a[static_cast<size_t>(k)] = T(1);                // sample 0, row 0
  for (int64_t k = 0; k < n; k += 8) a[static_cast<size_t>((R + 1) * n + k)] = T(2);  // sample 1, row 1
  a[static_cast<size_t>(4)] = std::numeric_limits<T>::quiet_NaN();                    // column 4: sample 1 off
  ops.delta_gram(2, 2, R, n, a.data(), a.data(), n, true, T(1), out.data(), 2 * R);
  CHECK(out[static_cast<size_t>((R + 1) * 2 * R + 0)] == T(2 * ((n + 7) / 8)));  // row 1 of sample 1 · row 0
  for (int64_t q = 0; q < R; ++q)
    for (int64_t p = R; p < 2 * R; ++p) CHECK(std::isfinite(out[static_cast<size_t>(p * 2 * R + q)]));
  // every column on: automatically the dense SYRK (faster there) forms it; on a variant that takes the masked
  // Gram automatically (AVX-512), that is its own cost rule declining
  std::fill(a.begin(), a.end(), T(1));
  const auto automatic = backend::cpu::make();
  automatic->ops<T>().delta_gram(2, 2, R, n, a.data(), a.data(), n, true, T(1), out.data(), 2 * R);
  CHECK(automatic->taken(Path::masked_gram) == 0);
  CHECK(out[static_cast<size_t>(2 * R * 2 * R - 1)] == T(n));
  // fewer or more rows per sample than it takes: not taken even when forced
  const int64_t before = be->taken(Path::masked_gram);
  for (const int64_t rows : {kMaskedGramMinRows - 1, kMaskedGramMaxRows + 1}) {
    std::vector<T> one(static_cast<size_t>(rows), T(1)), d(static_cast<size_t>(rows * rows));
    ops.delta_gram(1, 1, rows, 1, one.data(), one.data(), 1, true, T(1), d.data(), rows);
    CHECK(d[static_cast<size_t>(rows * rows - 1)] == T(1));
  }
  CHECK(be->taken(Path::masked_gram) == before);
}

TEMPLATE_TEST_CASE("masked_product reads and writes interleaved groups (the conv layout)", "[backend]", float, double) {
  // the conv layout: group (channel) b's row (stream) r at b·k + r·batch·k in dout and b·n + r·batch·n in
  // din, as a sample's O · C_out delta rows are stored. Against long-double sums; up to kMaskedMaxRows.
  using T = TestType;
  const int64_t k = 260, n = 2 * kLanes<T> * 3 + 5, batch = 7;
  const auto be = with(&Paths::masked_product);
  std::mt19937_64 g(13);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  const double tolerance = (k + 2) * std::numeric_limits<T>::epsilon() / 2;
  for (const int64_t rows : {int64_t{3}, kMaskedMaxRows}) {
    INFO("rows " << rows);
    std::vector<T> dout(static_cast<size_t>(rows * batch * k), T(0));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < k; ++j)
        if (g() % 2)
          for (int64_t r = 0; r < rows; ++r)
            dout[static_cast<size_t>(b * k + r * batch * k + j)] = static_cast<T>(normal(g));
    std::vector<T> din(static_cast<size_t>(rows * batch * n), T(-1));
    const int64_t before = be->taken(Path::masked_product);
    be->ops<T>().product_skipping_zeros(backend::Groups{batch, rows, k, batch * k, n, batch * n}, k, n, T(0.5),
                                        dout.data(), w.data(), din.data(), nullptr, 0);
    REQUIRE(be->taken(Path::masked_product) == before + 1);
    double worst = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) {
          long double exact = 0, scale = 0;
          for (int64_t q = 0; q < k; ++q) {
            const long double term =
                0.5L * dout[static_cast<size_t>(b * k + r * batch * k + q)] * w[static_cast<size_t>(q * n + j)];
            exact += term;
            scale += std::fabs(term);
          }
          const long double got = din[static_cast<size_t>(b * n + r * batch * n + j)];
          worst = std::max(worst, static_cast<double>(scale > 0 ? std::fabs(got - exact) / scale : std::fabs(got)));
        }
    CHECK(worst <= tolerance);
  }
}

namespace {

/// f() with OpenMP's thread count set to `threads`, restored afterwards.
template <class F>
auto at_threads(int threads, F&& f) {
#ifdef _OPENMP
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
#endif
  auto r = f();
#ifdef _OPENMP
  omp_set_num_threads(before);
#endif
  return r;
}

/// Checks c (rows × cols, leading dimension ldc; only its lower triangle with `lower`) against
/// alpha·A·Bᵀ + beta·c0, A and B row-major with leading dimensions lda and ldb: within (k + 3)·u·Σ|terms|
/// of long-double sums (k products and k + 1 sums, the beta term included, in some order, then α). Every
/// other cell up to ldc must equal c0.
template <class T>
void check_product(const std::vector<T>& c, const std::vector<T>& c0, int64_t rows, int64_t cols, bool lower,
                   int64_t ldc, const std::vector<T>& a, int64_t lda, const std::vector<T>& b, int64_t ldb, int64_t k,
                   T alpha, T beta) {
  const double tolerance = static_cast<double>(k + 3) * std::numeric_limits<T>::epsilon() / 2;
  double worst = 0;
  bool others_kept = true;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const size_t at = static_cast<size_t>(i * ldc + j);
      if (j >= (lower ? i + 1 : cols)) {
        others_kept &= c[at] == c0[at];
        continue;
      }
      long double exact = static_cast<long double>(beta) * c0[at], scale = std::fabs(exact);
      for (int64_t q = 0; q < k; ++q) {
        const long double term =
            static_cast<long double>(alpha) * a[static_cast<size_t>(i * lda + q)] * b[static_cast<size_t>(j * ldb + q)];
        exact += term;
        scale += std::fabs(term);
      }
      worst = std::max(worst, static_cast<double>(std::fabs(c[at] - exact) / scale));
    }
  CHECK(others_kept);
  CHECK(worst <= tolerance);
}

}  // namespace

TEMPLATE_TEST_CASE("syrk_lower forms the lower triangle of alpha·A·Aᵀ + beta·C and nothing else", "[backend]", float,
                   double) {
  // every path: one BLAS call (at most 255 rows and k < 512, or 3 threads and more), two halves of k
  // summed (at most 255 rows, k ≥ 512), and from 256 rows at 1 or 2 threads a SYRK of the first n/√2
  // rows plus a GEMM and a SYRK of the rest (side by side at 2 threads). Leading dimensions wider than
  // the matrices; the strict upper triangle must stay as it was.
  using T = TestType;
  std::mt19937_64 g(11);
  std::normal_distribution<double> normal;
  for (const auto& shape : {std::pair<int64_t, int64_t>{5, 40},
                            {5, 700},
                            {128, 513},
                            {255, 600},
                            {256, 520},
                            {37, 1024},
                            {300, 90},
                            {800, 30},
                            {1601, 6}})
    for (const T beta : {T(0), T(1), T(-0.5)}) {
      const int64_t n = shape.first, k = shape.second;
      CAPTURE(n, k, beta);
      const int64_t lda = k + 3, ldc = n + 2;
      const T alpha = T(0.75);
      std::vector<T> a(static_cast<size_t>(n * lda)), c0(static_cast<size_t>(n * ldc));
      for (auto& v : a) v = static_cast<T>(normal(g));
      for (auto& v : c0) v = static_cast<T>(normal(g));
      // the lower triangle is computed; the strict upper triangle and the padding must stay as they were
      auto check = [&](const std::vector<T>& c) {
        check_product(c, c0, n, n, true, ldc, a, lda, a, lda, k, alpha, beta);
      };
      for (const Choice split : {Choice::automatic, Choice::on, Choice::off}) {
        CAPTURE(static_cast<int>(split));
        const auto be = with(&Paths::split_k, split);
        auto run = [&](int threads) {
          return at_threads(threads, [&] {
            std::vector<T> c = c0;
            be->ops<T>().syrk_lower(n, k, alpha, a.data(), lda, beta, c.data(), ldc);
            return c;
          });
        };
        const std::vector<T> one = run(1);
        check(one);
        check(run(3));
        if (split == Choice::off) continue;
        // split or not, 1 and 2 threads make the same calls (single-threaded BLAS), so the results are identical;
        // from 3 threads OpenBLAS threads one call, which agrees to rounding
        const std::vector<T> two = run(2);
        CHECK(std::equal(two.begin(), two.end(), one.begin()));  // (not two == one: Catch would print both)
      }
    }
}

TEMPLATE_TEST_CASE("gram_product forms alpha·A·Bᵀ + beta·C, the same at every thread count", "[backend]", float,
                   double) {
  // both paths: one BLAS call (an output side over 255, or k < 512) and two halves of k summed (up to
  // 255 × 255 from 512 columns, odd k included); leading dimensions wider than the matrices. The halves
  // are the same two single-threaded calls at any thread count, so the results must be identical.
  using T = TestType;
  std::mt19937_64 g(23);
  std::normal_distribution<double> normal;
  for (const auto& shape : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {200, 50, 1025}, {255, 255, 512}, {3, 7, 600}, {256, 40, 700}, {40, 300, 520}, {30, 20, 511}})
    for (const T beta : {T(0), T(-0.5)}) {
      const int64_t m = std::get<0>(shape), n = std::get<1>(shape), k = std::get<2>(shape);
      CAPTURE(m, n, k, beta);
      const int64_t lda = k + 3, ldb = k + 1, ldc = n + 2;
      const T alpha = T(0.75);
      std::vector<T> a(static_cast<size_t>(m * lda)), b(static_cast<size_t>(n * ldb)), c0(static_cast<size_t>(m * ldc));
      for (auto& v : a) v = static_cast<T>(normal(g));
      for (auto& v : b) v = static_cast<T>(normal(g));
      for (auto& v : c0) v = static_cast<T>(normal(g));
      for (const Choice split : {Choice::automatic, Choice::on, Choice::off}) {
        CAPTURE(static_cast<int>(split));
        const auto be = with(&Paths::split_k, split);
        auto run = [&](int threads) {
          return at_threads(threads, [&] {
            std::vector<T> c = c0;
            be->ops<T>().gram(m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
            return c;
          });
        };
        const std::vector<T> c = run(2);
        check_product(c, c0, m, n, false, ldc, a, lda, b, ldb, k, alpha, beta);
        const bool halves = split == Choice::on || (split == Choice::automatic && m <= 255 && n <= 255 && k >= 512);
        CHECK((be->taken(Path::split_k) > 0) == halves);
        if (halves) {  // the halves: identical at 1 and 3 threads
          const std::vector<T> one = run(1), three = run(3);
          CHECK(std::equal(one.begin(), one.end(), c.begin()));
          CHECK(std::equal(three.begin(), three.end(), c.begin()));
        }
      }
    }
}

TEMPLATE_TEST_CASE("the direct stride-1 conv backward matches direct sums", "[backend]", float, double) {
  // din[ci, y, x] = alpha · Σ W[co, ci, i, j] · dout[co, y + pad_h − i, x + pad_w − j] against long-double
  // sums. Geometries: widths below, at and past one and two vector pairs, channel counts with and
  // without a partial group of 8, rectangular kernels, and padding up to and past the kernel size.
  using T = TestType;
  struct Geometry {
    int64_t ci, co, h, w, kh, kw, ph, pw;
  };
  std::mt19937_64 g(17);
  std::normal_distribution<double> normal;
  const T alpha = T(0.625);
  const auto be = with(&Paths::direct_conv);
  for (const Geometry& s :
       {Geometry{8, 3, 5, 5, 3, 3, 0, 0}, Geometry{11, 4, 6, 37, 3, 3, 1, 1}, Geometry{9, 2, 4, 16, 2, 5, 2, 5},
        Geometry{16, 5, 3, 33, 1, 1, 0, 0}, Geometry{8, 1, 7, 70, 3, 2, 4, 0}}) {
    CAPTURE(s.ci, s.co, s.h, s.w, s.kh, s.kw, s.ph, s.pw);
    backend::ConvGeometry geo{.channels = s.ci,
                              .height = s.h,
                              .width = s.w,
                              .kernel_h = s.kh,
                              .kernel_w = s.kw,
                              .pad_h = s.ph,
                              .pad_w = s.pw};
    const int64_t oh = geo.out_h(), ow = geo.out_w();
    std::vector<T> w(static_cast<size_t>(s.co * s.ci * s.kh * s.kw)), dout(static_cast<size_t>(s.co * oh * ow)),
        din(static_cast<size_t>(s.ci * s.h * s.w), T(-7));
    for (auto& v : w) v = static_cast<T>(normal(g));
    for (auto& v : dout) v = static_cast<T>(normal(g));
    const int64_t before = be->taken(Path::direct_conv);
    be->ops<T>().conv_backward(geo, s.co, alpha, w.data(), dout.data(), 1, din.data());
    REQUIRE(be->taken(Path::direct_conv) == before + 1);
    // at most co·kh·kw products summed in turn, then scaled by alpha: (co·kh·kw + 2)·u·Σ|terms|
    const double tolerance = static_cast<double>(s.co * s.kh * s.kw + 2) * std::numeric_limits<T>::epsilon() / 2;
    double worst = 0;
    for (int64_t ci = 0; ci < s.ci; ++ci)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x = 0; x < s.w; ++x) {
          long double exact = 0, scale = 0;
          for (int64_t co = 0; co < s.co; ++co)
            for (int64_t i = 0; i < s.kh; ++i)
              for (int64_t j = 0; j < s.kw; ++j) {
                const int64_t oy = y + s.ph - i, ox = x + s.pw - j;
                if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                const long double term = static_cast<long double>(alpha) *
                                         w[static_cast<size_t>(((co * s.ci + ci) * s.kh + i) * s.kw + j)] *
                                         dout[static_cast<size_t>((co * oh + oy) * ow + ox)];
                exact += term;
                scale += std::fabs(term);
              }
          const long double got = din[static_cast<size_t>((ci * s.h + y) * s.w + x)];
          worst = std::max(worst, static_cast<double>(std::fabs(got - exact) / std::max(scale, 1e-300L)));
        }
    CHECK(worst <= tolerance);
  }
}

TEMPLATE_TEST_CASE("the channel-vectorised stride-1 conv forward and backward match direct sums", "[backend]", float,
                   double) {
  // y[co, y, x] = alpha · Σ W[co, ci, i, j] · x[ci, y − pad_h + i, x − pad_w + j] and the input derivative
  // din[ci, y, x] = alpha · Σ W[co, ci, i, j] · dout[co, y + pad_h − i, x + pad_w − j], both through
  // conv_channels (forced on), against long-double sums. Geometries: channel counts below, at and past one and
  // two vectors (float and double lanes), row widths split into one, two and three tiles and a width of 1,
  // rectangular kernels, 1 × 1, padding 0 (the forward reads the input in place) and padding up to the kernel
  // size less one (the backward's limit); the forward also with padding past the kernel.
  using T = TestType;
  struct Geometry {
    int64_t ci, co, h, w, kh, kw, ph, pw;
  };
  std::mt19937_64 g(29);
  std::normal_distribution<double> normal;
  const T alpha = T(0.625);
  const auto be = with(&Paths::channel_conv);
  for (const Geometry& s :
       {Geometry{8, 3, 5, 5, 3, 3, 0, 0}, Geometry{11, 40, 6, 37, 3, 3, 1, 1}, Geometry{33, 16, 4, 16, 2, 5, 1, 2},
        Geometry{16, 32, 3, 29, 1, 1, 0, 0}, Geometry{5, 17, 7, 1, 3, 1, 1, 0}, Geometry{4, 9, 5, 6, 2, 2, 3, 2}}) {
    CAPTURE(s.ci, s.co, s.h, s.w, s.kh, s.kw, s.ph, s.pw);
    const backend::ConvGeometry geo{.channels = s.ci,
                                    .height = s.h,
                                    .width = s.w,
                                    .kernel_h = s.kh,
                                    .kernel_w = s.kw,
                                    .pad_h = s.ph,
                                    .pad_w = s.pw};
    const int64_t oh = geo.out_h(), ow = geo.out_w();
    std::vector<T> w(static_cast<size_t>(s.co * s.ci * s.kh * s.kw)), x(static_cast<size_t>(s.ci * s.h * s.w)),
        dout(static_cast<size_t>(s.co * oh * ow)), y(dout.size(), T(-7)), din(x.size(), T(-7));
    for (auto& v : w) v = static_cast<T>(normal(g));
    for (auto& v : x) v = static_cast<T>(normal(g));
    for (auto& v : dout) v = static_cast<T>(normal(g));
    const auto W = [&](int64_t co, int64_t ci, int64_t i, int64_t j) {
      return static_cast<long double>(w[static_cast<size_t>(((co * s.ci + ci) * s.kh + i) * s.kw + j)]);
    };
    // each output sums at most (channels · kh · kw) products in turn, then is scaled by alpha
    const auto worst_error = [&](int64_t channels, int64_t planes, int64_t rows, int64_t cols,
                                 const std::vector<T>& got, auto&& terms) {
      double worst = 0;
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < cols; ++c) {
            long double exact = 0, scale = 0;
            terms(p, r, c, [&](long double term) {
              exact += term;
              scale += std::fabs(term);
            });
            const long double v = got[static_cast<size_t>((p * rows + r) * cols + c)];
            worst = std::max(worst, static_cast<double>(std::fabs(v - exact) / std::max(scale, 1e-300L)));
          }
      const double tolerance = static_cast<double>(channels * s.kh * s.kw + 2) * std::numeric_limits<T>::epsilon() / 2;
      CHECK(worst <= tolerance);
    };
    int64_t before = be->taken(Path::channel_conv);
    be->ops<T>().conv_forward(geo, s.co, alpha, w.data(), x.data(), 1, y.data());
    REQUIRE(be->taken(Path::channel_conv) == before + 1);
    worst_error(s.ci, s.co, oh, ow, y, [&](int64_t co, int64_t r, int64_t c, auto&& add) {
      for (int64_t ci = 0; ci < s.ci; ++ci)
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t iy = r - s.ph + i, ix = c - s.pw + j;
            if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
            add(static_cast<long double>(alpha) * W(co, ci, i, j) * x[static_cast<size_t>((ci * s.h + iy) * s.w + ix)]);
          }
    });
    if (s.ph >= s.kh || s.pw >= s.kw) continue;  // the backward's kernel needs padding below the kernel size
    before = be->taken(Path::channel_conv);
    be->ops<T>().conv_backward(geo, s.co, alpha, w.data(), dout.data(), 1, din.data());
    REQUIRE(be->taken(Path::channel_conv) == before + 1);
    worst_error(s.co, s.ci, s.h, s.w, din, [&](int64_t ci, int64_t r, int64_t c, auto&& add) {
      for (int64_t co = 0; co < s.co; ++co)
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t oy = r + s.ph - i, ox = c + s.pw - j;
            if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
            add(static_cast<long double>(alpha) * W(co, ci, i, j) *
                dout[static_cast<size_t>((co * oh + oy) * ow + ox)]);
          }
    });
  }
}

TEMPLATE_TEST_CASE("the skinny Linear forward, forced on, matches the GEMM for every batch up to 32", "[backend]",
                   float, double) {
  // both of its forms (dot products for a few samples, sample-vectorised above) on this CPU's best variant,
  // against OpenBLAS on the same inputs: sums of 301 terms in another order
  using T = TestType;
  const auto be = with(&Paths::skinny);
  const int64_t k = 301, n = 37;
  std::mt19937_64 g(3);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = static_cast<T>(normal(g));
  for (int64_t batch = 1; batch <= 32; ++batch) {
    CAPTURE(batch);
    std::vector<T> x(static_cast<size_t>(batch * k)), y(static_cast<size_t>(batch * n)), ref(y.size());
    for (auto& v : x) v = static_cast<T>(normal(g));
    const int64_t before = be->taken(Path::skinny);
    be->ops<T>().linear(batch, n, k, T(0.5), x.data(), w.data(), y.data());
    REQUIRE(be->taken(Path::skinny) == before + 1);
    backend::cpu::gemm(false, true, batch, n, k, T(0.5), x.data(), k, w.data(), k, T(0), ref.data(), n);
    double err = 0, scale = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      err = std::max(err, std::abs(static_cast<double>(y[i]) - static_cast<double>(ref[i])));
      scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
    }
    CHECK(err <= (k + 2) * std::numeric_limits<T>::epsilon() * scale);
  }
}
TEST_CASE("Kernel::flops counts the conv gradient work the masked product skipped as not done", "[backend]") {
  // both convs form their per-sample gradients through masked_product (forced on: 324 positions, K = 36): it
  // skips 2·O·K FLOPs per (sample, channel, position) whose ReLU derivative is zero, counted here from
  // the forward values. With LeakyReLU nothing is zero and the dense count stands.
  const int64_t n = 3, O = 3, K = 4 * 3 * 3;
  auto spec = [&](Activation act) {
    return ModelSpec{.input = {4, 20, 20},
                     .layers = {Conv2d{.out_channels = 4, .kernel_size = 3, .method = ConvMethod::gradients}, act,
                                Conv2d{.out_channels = 4, .kernel_size = 3, .method = ConvMethod::gradients}, act,
                                Flatten{}, Linear{.out_features = O}}};
  };
  const Sequential<double> relu(spec(ReLU()), 6), leaky(spec(LeakyReLU(0.1)), 6);
  const Tensor<double> x = test::randn<double>({n, 4, 20, 20}, 10);
  const auto be = with(&Paths::masked_product);
  const double dense = engine::explicit_kernel<double>(leaky, x, nullptr, {}, *be).flops;
  const double done = engine::explicit_kernel<double>(relu, x, nullptr, {}, *be).flops;
  // z after each conv, from the same parameters
  auto zeros_after = [&](const ModelSpec& front_spec) {
    const Sequential<double> front(front_spec, 6);
    for (const auto& p : front.named_parameters()) front.parameter(p.name) = relu.parameter(p.name);
    const Tensor<double> z = front.forward(x);
    int64_t off = 0;
    for (int64_t i = 0; i < z.size(); ++i) off += z[i] <= 0;
    return off;
  };
  const auto& layers = relu.spec().layers;
  const int64_t off1 = zeros_after({.input = {4, 20, 20}, .layers = {layers[0]}});
  const int64_t off2 = zeros_after({.input = {4, 20, 20}, .layers = {layers[0], layers[1], layers[2]}});
  REQUIRE(off1 > 0);
  REQUIRE(off2 > 0);
  const double skipped = 2.0 * O * K * static_cast<double>(off1 + off2);
  CAPTURE(off1, off2, dense, done);
  CHECK(done == dense - skipped);
}

TEST_CASE("Kernel::flops counts only the columns each sample pair shares in the masked delta Gram", "[backend]") {
  // 40-300-8 with 6 samples, full mode: the hidden layer's deltas are ReLU'(z) ⊙ (a row of the last weight)
  // per output, so sample i's 8 delta rows are non-zero exactly where z_i > 0. masked_gram then does
  // 2·8² FLOPs per unit that both samples of a pair (j ≤ i) have positive, where the SYRK does
  // (6·8)(6·8 + 1) per unit; with LeakyReLU every unit is shared and the SYRK runs.
  const int64_t in = 40, hidden = 300, n = 6, O = 8;
  auto spec = [&](Activation act) {
    return ModelSpec{.input = {in}, .layers = {Linear{.out_features = hidden}, act, Linear{.out_features = O}}};
  };
  const Sequential<double> relu(spec(ReLU()), 6), leaky(spec(LeakyReLU(0.1)), 6);
  const Tensor<double> x = test::randn<double>({n, in}, 10);
  const auto be = with(&Paths::masked_gram);
  const auto dense_backend = with(&Paths::masked_gram, Choice::off);
  const double dense = engine::explicit_kernel<double>(leaky, x, nullptr, {}, *dense_backend).flops;
  const double done = engine::explicit_kernel<double>(relu, x, nullptr, {}, *be).flops;
  const Sequential<double> first({.input = {in}, .layers = {Linear{.out_features = hidden}}}, 6);
  first.parameter("0.weight") = relu.parameter("0.weight");
  first.parameter("0.bias") = relu.parameter("0.bias");
  const Tensor<double> z = first.forward(x);
  double shared = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j)
      for (int64_t u = 0; u < hidden; ++u) shared += z[i * hidden + u] > 0 && z[j * hidden + u] > 0;
  // sparse enough for masked_gram's cost rule (8 rows per sample): it is taken
  const double pairs = n * (n + 1) / 2.0;
  REQUIRE(shared * 140.0 < pairs * hidden * O * O);  // 140: masked_gram's step_cost for 8 rows
  const double syrk = static_cast<double>(n * O) * static_cast<double>(n * O + 1) * hidden;
  const double expected = dense - syrk + 2.0 * O * O * shared;
  CAPTURE(shared, dense, done);
  CHECK(done == expected);
}

TEST_CASE("Kernel::flops counts the multiply-adds the masked backward skipped as not done", "[backend]") {
  // 300-260-270-3 with 5 samples, the masked product forced on: the 270 → 260 backward skips columns. It
  // skips sample s's column u when ReLU'(z_u) = 0 after the 270-wide layer, i.e. 2·O·260 FLOPs per
  // (sample, unit) with z ≤ 0, counted here from the forward values of the first three layers. The ReLU
  // after the 260-wide layer gates its output: of each 16-column strip (float64) it computes nothing
  // when no column is kept, 4 columns when at most 4 are, 8 when at most 8, 12 when at most 12, and of
  // the 4 columns past the last strip only the kept ones, for each of the sample's active rows. With LeakyReLU no
  // derivative is zero, so nothing is skipped and everything counts.
  const int64_t in = 300, n = 5, O = 3;
  auto spec = [&](Activation act) {
    return ModelSpec{
        .input = {in},
        .layers = {Linear{.out_features = 260}, act, Linear{.out_features = 270}, act, Linear{.out_features = O}}};
  };
  const Sequential<double> relu(spec(ReLU()), 4), leaky(spec(LeakyReLU(0.1)), 4);
  const Tensor<double> x = test::randn<double>({n, in}, 9);
  const auto be = with(&Paths::masked_product);
  const double dense = engine::explicit_kernel<double>(leaky, x, nullptr, {}, *be).flops;
  const double done = engine::explicit_kernel<double>(relu, x, nullptr, {}, *be).flops;
  // strips with few kept columns compute only those on the AVX-512 variant (gated tiles); elsewhere a strip
  // is skipped only when nothing of it is kept
  const bool selected = be->paths().isa == backend::cpu::Isa::avx512;
  // z after the 270-wide layer, from the same parameters
  const Sequential<double> front(
      {.input = {in}, .layers = {Linear{.out_features = 260}, ReLU(), Linear{.out_features = 270}}}, 4);
  for (const auto& p : front.named_parameters()) front.parameter(p.name) = relu.parameter(p.name);
  const Tensor<double> z = front.forward(x);
  const Sequential<double> first({.input = {in}, .layers = {Linear{.out_features = 260}}}, 4);
  first.parameter("0.weight") = relu.parameter("0.weight");
  first.parameter("0.bias") = relu.parameter("0.bias");
  const Tensor<double> gate = first.forward(x);
  int64_t off = 0, gated = 0;
  for (int64_t s = 0; s < n; ++s) {
    int64_t active = 0;
    for (int64_t u = 0; u < 270; ++u) active += z[s * 270 + u] > 0;
    off += 270 - active;
    int64_t columns = 0;  // columns of din not computed for this sample
    for (int64_t strip = 0; strip < 16; ++strip) {
      int64_t kept = 0;
      for (int64_t c = 0; c < 16; ++c) kept += gate[s * 260 + strip * 16 + c] > 0;
      columns += kept == 0 ? 16 : !selected ? 0 : kept <= 4 ? 12 : kept <= 8 ? 8 : kept <= 12 ? 4 : 0;
    }
    for (int64_t c = 256; c < 260; ++c) columns += !(gate[s * 260 + c] > 0);
    gated += active * columns;
  }
  REQUIRE(off > 0);
  REQUIRE(gated > 0);
  const double skipped = 2.0 * O * (260 * static_cast<double>(off) + static_cast<double>(gated));
  CAPTURE(off, gated, dense, done, (dense - done) / (2.0 * O));
  CHECK(done == dense - skipped);
}

TEST_CASE("blas_core_upgrade asks for AVX2/AVX-512 kernels only where OpenBLAS fell back below AVX2", "[backend]") {
  using backend::cpu::blas_core_upgrade;
  auto is = [](const char* got, const char* want) { return want ? got && std::string(got) == want : got == nullptr; };
  // OpenBLAS 0.3.21's fallback on a CPU model it does not know (Intel model 207): SSE3 kernels
  CHECK(is(blas_core_upgrade("Prescott", true, true), "SKYLAKEX"));
  CHECK(is(blas_core_upgrade("Prescott", true, false), "HASWELL"));
  CHECK(is(blas_core_upgrade("Sandybridge", true, false), "HASWELL"));
  CHECK(is(blas_core_upgrade("nehalem", true, true), "SKYLAKEX"));
  // its own AVX2 or AVX-512 choices stand (Zen on a Zen 4 with AVX-512 included), whatever the case
  for (const char* core : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "Excavator", "ZEN"}) {
    CAPTURE(core);
    CHECK(is(blas_core_upgrade(core, true, true), nullptr));
  }
  // a CPU without AVX2 + FMA keeps the SSE kernels; Eigen (no core name) has nothing to ask for
  CHECK(is(blas_core_upgrade("Prescott", false, false), nullptr));
  CHECK(is(blas_core_upgrade("", true, true), nullptr));
}
