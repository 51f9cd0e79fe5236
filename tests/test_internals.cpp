// Internal building blocks the kernels rely on: the vectorised tanh, the scratch block cache and the
// balanced row loop.
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

#include "cpu/cache.hpp"
#include "cpu/conv_backward.hpp"
#include "cpu/fast_math.hpp"
#include "cpu/gemm.hpp"
#include "cpu/grain.hpp"
#include "cpu/im2col.hpp"
#include "cpu/masked_gram.hpp"
#include "cpu/masked_product.hpp"
#include "cpu/skinny.hpp"
#include "helpers.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace xntk;

TEST_CASE("tanh_float is tanh rounded once to float", "[internals]") {
  // every 61st float in [0, 12] (about 18 million), both signs; each must equal the double tanh
  // rounded to float, the best a float result can be
  float limit = 12.0f;
  uint32_t hi = 0;
  std::memcpy(&hi, &limit, 4);
  int64_t checked = 0, wrong = 0;
  for (uint32_t u = 0; u < hi; u += 61) {
    float x = 0;
    std::memcpy(&x, &u, 4);
    for (const float v : {x, -x}) {
      ++checked;
      if (detail::tanh_float(v) != static_cast<float>(std::tanh(static_cast<double>(v)))) ++wrong;
    }
  }
  CHECK(checked > 30'000'000);
  CHECK(wrong == 0);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(detail::tanh_float(inf) == 1.0f);
  CHECK(detail::tanh_float(-inf) == -1.0f);
  CHECK(detail::tanh_float(1e30f) == 1.0f);
  CHECK(std::isnan(detail::tanh_float(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::signbit(detail::tanh_float(-0.0f)));
  CHECK(detail::tanh_float(std::numeric_limits<float>::denorm_min()) == std::numeric_limits<float>::denorm_min());
}

TEST_CASE("the block cache reuses blocks and never holds more than it may", "[internals]") {
  release_cached_memory();
  REQUIRE(detail::cached_bytes() == 0);
  const size_t mb = size_t{1} << 20;
  size_t a = 3 * mb;
  void* pa = detail::acquire_block(a);
  CHECK(a >= 3 * mb);
  CHECK(reinterpret_cast<uintptr_t>(pa) % 64 == 0);
  detail::return_block(pa, a);
  CHECK(detail::cached_bytes() == a);
  size_t b = 2 * mb;  // fits the cached block (at most twice the request): gets it back
  void* pb = detail::acquire_block(b);
  CHECK(pb == pa);
  CHECK(b == a);
  CHECK(detail::cached_bytes() == 0);
  detail::return_block(pb, b);
  size_t s = detail::kMapBytes / 2;  // too small to be worth the cached block: allocated apart, nothing freed
  void* ps = detail::acquire_block(s);
  CHECK(detail::cached_bytes() == a);
  detail::return_block(ps, s);  // small blocks are not cached
  CHECK(detail::cached_bytes() == a);
  size_t c = 8 * mb;  // fits nothing cached: a new block; the cached one stays (within the limit)
  void* pc = detail::acquire_block(c);
  CHECK(pc != pa);
  CHECK(detail::cached_bytes() == a);
  size_t d = 2 * mb;  // fits nothing cached either (the 3 MB block is in use)
  pb = detail::acquire_block(b);
  void* pd = detail::acquire_block(d);
  CHECK(detail::cached_bytes() == 0);
  detail::return_block(pb, b);
  detail::return_block(pd, d);
  detail::return_block(pc, c);
  CHECK(detail::cached_bytes() == b + c + d);
  // over a limit, blocks go by best fit: 2.5 MB to free takes the 3 MB block, not the largest (8 MB)
  size_t e = 4 * mb;
  void* pe = detail::acquire_block(e);  // the 8 MB block (at most twice the request)
  CHECK(pe == pc);
  detail::return_block(pe, e, b + c + d - 5 * mb / 2);
  CHECK(detail::cached_bytes() == c + d);
  // a new block makes room for itself: idle blocks are freed until the cache could take it back
  size_t f = detail::kCachedBytes - 5 * mb;
  void* pf = detail::acquire_block(f);  // 5 MB may stay: the 8 MB block goes (the smallest that frees enough)
  CHECK(detail::cached_bytes() == d);
  detail::return_block(pf, f);
  CHECK(detail::cached_bytes() == d + f);
  CHECK(detail::cached_bytes() <= detail::kCachedBytes);
  size_t g = detail::kCachedBytes + mb;  // above the limit: the cache empties, and does not keep it
  void* pg = detail::acquire_block(g);
  CHECK(detail::cached_bytes() == 0);
  detail::return_block(pg, g);
  CHECK(detail::cached_bytes() == 0);
  size_t h = 2 * mb;
  detail::return_block(detail::acquire_block(h), h, mb);  // over the limit given: freed, not cached
  CHECK(detail::cached_bytes() == 0);

  // a kernel computation leaves at most kCachedBytes behind, and release_cached_memory frees them
  const Sequential<double> net(
      {.input = {30}, .layers = {Linear{.out_features = 40}, Tanh(), Linear{.out_features = 3}}}, 1);
  Tensor<double> x({600, 30});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1 * static_cast<double>(i));
  const auto k1 = ntk(net, x);
  CHECK(detail::cached_bytes() > 0);
  CHECK(detail::cached_bytes() <= detail::kCachedBytes);
  const auto k2 = ntk(net, x);  // from reused (unspecified-content) blocks: the same result
  for (int64_t i = 0; i < k1.total.size(); ++i) REQUIRE(k1.total[i] == k2.total[i]);
  release_cached_memory();
  CHECK(detail::cached_bytes() == 0);
}

TEST_CASE("a repeated kernel computation maps no new blocks", "[internals]") {
  // The functorch tutorial's CNN (20 × 5 images, float): ~70 MB of blocks of 64 KB–23 MB, handed back and
  // asked for again in a different order within each call. After two calls (in the second, a request the
  // first served from a larger idle block may need one of its own), the next calls must find every block
  // in the cache (a policy that freed the largest idle blocks on a miss re-mapped ~62 MB per call).
  release_cached_memory();
  const Sequential<float> net(
      {.input = {3, 32, 32},
       .layers = {Conv2d{.out_channels = 32, .kernel_h = 3, .kernel_w = 3}, ReLU(),
                  Conv2d{.out_channels = 32, .kernel_h = 3, .kernel_w = 3}, ReLU(),
                  Conv2d{.out_channels = 32, .kernel_h = 3, .kernel_w = 3}, Flatten{}, Linear{.out_features = 10}}},
      0);
  Tensor<float> x1({20, 3, 32, 32}), x2({5, 3, 32, 32});
  for (int64_t i = 0; i < x1.size(); ++i) x1[i] = static_cast<float>(std::sin(0.3 * static_cast<double>(i)));
  for (int64_t i = 0; i < x2.size(); ++i) x2[i] = static_cast<float>(std::cos(0.7 * static_cast<double>(i)));
  // one thread: with more, which idle block a request finds can depend on how the threads interleave
  const KernelOptions opt{.threads = 1};
  for (int r = 0; r < 2; ++r) (void)ntk(net, x1, x2, opt);
  const size_t before = detail::mapped_blocks();
  CHECK(detail::cached_bytes() > size_t{32} << 20);
  for (int r = 0; r < 2; ++r) (void)ntk(net, x1, x2, opt);
  CHECK(detail::mapped_blocks() == before);
  release_cached_memory();
}

TEST_CASE("a Buffer always holds room for its size", "[internals]") {
  detail::Buffer<double> b;
  for (const int64_t n : {1, 100, 99, 1000, 1500, 200'000, 300'000, 150'000, 700'000, 3}) {
    b.resize(n);
    REQUIRE(b.size() == n);
    REQUIRE(b.capacity_bytes() >= static_cast<size_t>(n) * sizeof(double));
    b[n - 1] = 1.0;  // the last value is writable (AddressSanitizer builds check the bound)
  }
  b.free();
  CHECK(b.capacity_bytes() == 0);
  CHECK(b.data() == nullptr);
}

TEST_CASE("parallel_rows visits every row once", "[internals]") {
  for (const bool triangle : {false, true})
    for (const int64_t n : {0, 1, 2, 7, 8, 1001}) {
      std::vector<int> seen(static_cast<size_t>(n), 0);
      detail::parallel_rows(n, n, triangle, 1e6, [&](int64_t i) { ++seen[static_cast<size_t>(i)]; });
      for (int64_t i = 0; i < n; ++i) REQUIRE(seen[static_cast<size_t>(i)] == 1);
    }
}

TEMPLATE_TEST_CASE("a Linear forward on a few wide samples matches direct dot products", "[internals]", float, double) {
  // batches up to 32 through ≥ 256 inputs take the skinny product (when built with AVX2/AVX-512): the
  // dot-product form for 1-4 float / 1-2 double samples, the sample-vectorised form above. Batches that
  // fill no whole vector, and row counts with and without a partial block of 8 (7 = 0·8 + 7, 37 = 4·8 + 5)
  using T = TestType;
  const int64_t in = 301;
  // each output is a sum of in + 1 terms (and one scaling): recursive summation stays within
  // (in + 2)·u·Σ|terms| of the exact sum (Higham, Accuracy and Stability, §4.2), u = ε/2
  const double tolerance = (in + 2) * std::numeric_limits<T>::epsilon() / 2;
  // the ntk parameterisation scales W by c_w = 1/√in inside the product
  for (const auto& [out, p] :
       {std::pair{int64_t{7}, Parameterization::standard}, {int64_t{37}, Parameterization::ntk}}) {
    const Sequential<T> net({.input = {in}, .parameterization = p, .layers = {Linear{.out_features = out}}}, 3);
    const Tensor<T>& w = net.parameter("0.weight");
    const Tensor<T>& b = net.parameter("0.bias");
    for (const int64_t batch : {1, 2, 3, 4, 5, 9, 16, 17, 31, 32, 33}) {
      Tensor<T> x({batch, in});
      for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<T>(std::sin(0.37 * static_cast<double>(i)));
      // the largest error of y's outputs, relative to the sum of their terms' magnitudes (the binding copied:
      // clang 14 cannot capture structured bindings)
      auto worst = [&, out = out](const Tensor<T>& y) {
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
      const Tensor<T> y = net.forward(x);
      CAPTURE(out, batch);
      CHECK(worst(y) <= tolerance);
#ifdef _OPENMP
      // our own kernel sums each output's terms in one order, whatever the thread count; a BLAS GEMM (more
      // samples, or no skinny kernel in this build) need not (OpenBLAS's Haswell SGEMM, chosen by
      // OPENBLAS_CORETYPE=Haswell, rounds 33 × 37 × 301 differently at 1 and 3 threads), only as accurately
      const bool ours = detail::kSkinnyProduct && batch <= detail::kSkinnyMaxBatch;
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

TEMPLATE_TEST_CASE("masked_product skips zero columns and matches direct sums", "[internals]", float, double) {
  // din = alpha · dout · W over sample row groups, against long-double sums of every term. n = 77 leaves
  // columns past the last whole strip (2 vectors wide), computed apart.
  using T = TestType;
  const int64_t k = 300, n = 77;
  const T alpha = T(0.75);
  std::mt19937_64 g(5);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  // each term is rounded twice (alpha · dout, then · w) and at most k are summed in turn: within
  // (k + 2)·u·Σ|terms| of the exact sum (Higham, Accuracy and Stability, §4.2), u = ε/2
  const double tolerance = (k + 2) * std::numeric_limits<T>::epsilon() / 2;
  for (const int64_t batch : {1, 5, 32})
    for (int64_t rows = 1; rows <= detail::kMaskedMaxRows; ++rows) {
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
      REQUIRE(detail::masked_product(batch, rows, k, n, alpha, dout.data(), w.data(), din.data()));
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
        REQUIRE(detail::masked_product(batch, rows, k, n, alpha, dout.data(), w.data(), again.data()));
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
  REQUIRE(detail::masked_product<T>(1, 2, k, n, T(1), dout.data(), wn.data(), din.data()));
  for (const T v : din) CHECK(std::isfinite(v));
  // mostly non-zero columns: declined, nothing written (the caller's dense GEMM is faster)
  std::fill(dout.begin(), dout.end(), T(1));
  std::fill(din.begin(), din.end(), T(7));
  CHECK_FALSE(detail::masked_product<T>(1, 2, k, n, T(1), dout.data(), w.data(), din.data()));
  for (const T v : din) CHECK(v == T(7));
  // more rows or samples than its tiles take: declined too
  CHECK_FALSE(detail::masked_product<T>(1, detail::kMaskedMaxRows + 1, 1, 1, T(1), dout.data(), w.data(), din.data()));
  CHECK_FALSE(detail::masked_product<T>(detail::kMaskedMaxBatch + 1, 1, 1, 1, T(1), dout.data(), w.data(), din.data()));
}

TEMPLATE_TEST_CASE("masked_product with a gate computes the kept columns only, as without it", "[internals]", float,
                   double) {
  // A gate (the input of a ReLU below) keeps din's column j of sample b where gate > 0: those must equal
  // the ungated product exactly (the same terms in the same order), the others must be 0, whatever the
  // thread count. Strips (2 vectors of columns) with no column kept, at most half a vector's worth, at
  // most one, at most one and a half, more, and all (each a tile of its own); n leaves columns past the
  // last strip; a NaN or −0 in the gate is not kept.
  using T = TestType;
  constexpr int64_t L = detail::kLanes<T>, C = 2 * L;
  const int64_t k = 290, n = 6 * C + 7;
  std::mt19937_64 g(21);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  for (const int64_t batch : {1, 6, 32})
    for (const int64_t rows : {int64_t{1}, int64_t{5}, int64_t{8}, detail::kMaskedMaxRows}) {
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
      REQUIRE(detail::masked_product(batch, rows, k, n, T(0.75), dout.data(), w.data(), plain.data()));
      REQUIRE(detail::masked_product(batch, rows, k, n, T(0.75), dout.data(), w.data(), gated.data(), gate.data()));
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
        REQUIRE(detail::masked_product(batch, rows, k, n, T(0.75), dout.data(), w.data(), again.data(), gate.data()));
        CHECK(again == gated);
      }
      omp_set_num_threads(threads);
#endif
    }
}

TEMPLATE_TEST_CASE("masked_gram sums each sample pair's block over the columns both have non-zero", "[internals]",
                   float, double) {
  // D = a bᵀ for sample row groups of R rows, against long-double sums of every term (the skipped ones are
  // exact zeros). n = 300 leaves a partial mask word. A column of a group is on for all of its rows, on for
  // one row only (it must count as non-zero too), or off; a quarter of them are on, as the deltas of two
  // layers of ReLUs, so that every R is sparse enough to be taken.
  using T = TestType;
  const int64_t n = 300;
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
  for (int64_t R = detail::kMaskedGramMinRows; R <= detail::kMaskedGramMaxRows; ++R)
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
      const double flops = detail::masked_gram(g1, g2, R, n, a.data(), b.data(), n, same, alpha, out.data(), r2);
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
        detail::masked_gram(g1, g2, R, n, a.data(), b.data(), n, same, alpha, again.data(), r2);
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
  REQUIRE(detail::masked_gram(2, 2, R, n, a.data(), a.data(), n, true, T(1), out.data(), 2 * R) >= 0);
  CHECK(out[static_cast<size_t>((R + 1) * 2 * R + 0)] == T(2 * ((n + 7) / 8)));  // row 1 of sample 1 · row 0
  for (int64_t q = 0; q < R; ++q)
    for (int64_t p = R; p < 2 * R; ++p) CHECK(std::isfinite(out[static_cast<size_t>(p * 2 * R + q)]));
  // every column on: declined, nothing written (the dense product is faster)
  std::fill(a.begin(), a.end(), T(1));
  std::fill(out.begin(), out.end(), T(3));
  CHECK(detail::masked_gram(2, 2, R, n, a.data(), a.data(), n, true, T(1), out.data(), 2 * R) < 0);
  for (const T v : out) CHECK(v == T(3));
  // fewer or more rows per sample than it takes: declined
  CHECK(detail::masked_gram<T>(1, 1, detail::kMaskedGramMinRows - 1, 1, a.data(), a.data(), 1, true, T(1), out.data(),
                               1) < 0);
  CHECK(detail::masked_gram<T>(1, 1, detail::kMaskedGramMaxRows + 1, 1, a.data(), a.data(), 1, true, T(1), out.data(),
                               1) < 0);
}

TEMPLATE_TEST_CASE("masked_product_strided reads and writes interleaved groups", "[internals]", float, double) {
  // the conv layout: group (channel) b's row (stream) r at b·k + r·batch·k in dout and b·n + r·batch·n in
  // din, as a sample's O · C_out delta rows are stored. Against long-double sums; up to kMaskedMaxRows.
  using T = TestType;
  const int64_t k = 260, n = 2 * detail::kLanes<T> * 3 + 5, batch = 7;
  std::mt19937_64 g(13);
  std::normal_distribution<double> normal;
  std::vector<T> w(static_cast<size_t>(k * n));
  for (auto& v : w) v = static_cast<T>(normal(g));
  const double tolerance = (k + 2) * std::numeric_limits<T>::epsilon() / 2;
  for (const int64_t rows : {int64_t{3}, detail::kMaskedMaxRows}) {
    INFO("rows " << rows);
    std::vector<T> dout(static_cast<size_t>(rows * batch * k), T(0));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < k; ++j)
        if (g() % 2)
          for (int64_t r = 0; r < rows; ++r)
            dout[static_cast<size_t>(b * k + r * batch * k + j)] = static_cast<T>(normal(g));
    std::vector<T> din(static_cast<size_t>(rows * batch * n), T(-1));
    REQUIRE(detail::masked_product_strided(batch, rows, k, n, T(0.5), dout.data(), k, batch * k, w.data(), din.data(),
                                           n, batch * n));
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

TEMPLATE_TEST_CASE("im2row is im2col transposed", "[internals]", float, double) {
  using T = TestType;
  std::mt19937_64 g(19);
  std::normal_distribution<double> normal;
  using G = detail::ConvGeometry;
  // plain; stride 2 down with padding; stride 2 across with dilation 2; a kernel the size of the image
  for (const G& geo :
       {G{.channels = 3, .height = 9, .width = 11, .kernel_h = 3, .kernel_w = 3},
        G{.channels = 2, .height = 10, .width = 7, .kernel_h = 3, .kernel_w = 2, .stride_h = 2, .pad_h = 1, .pad_w = 2},
        G{.channels = 4,
        .height = 12,
        .width = 12,
        .kernel_h = 3,
        .kernel_w = 3,
        .stride_w = 2,
        .pad_h = 2,
        .pad_w = 1,
        .dilation_h = 2,
        .dilation_w = 2},
        G{.channels = 1, .height = 5, .width = 6, .kernel_h = 5, .kernel_w = 6, .pad_h = 3, .pad_w = 3}}) {
    CAPTURE(geo.channels, geo.height, geo.width, geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w, geo.pad_h,
            geo.pad_w, geo.dilation_h, geo.dilation_w);
    const int64_t K = geo.rows(), P = geo.positions();
    std::vector<T> image(static_cast<size_t>(geo.channels * geo.height * geo.width)), cols(static_cast<size_t>(K * P)),
        rows(static_cast<size_t>(P * K), T(-7));
    for (auto& v : image) v = static_cast<T>(normal(g));
    detail::im2col(image.data(), geo, cols.data());
    detail::im2row(image.data(), geo, rows.data());
    bool same = true;
    for (int64_t p = 0; p < P; ++p)
      for (int64_t r = 0; r < K; ++r)
        same &= rows[static_cast<size_t>(p * K + r)] == cols[static_cast<size_t>(r * P + p)];
    CHECK(same);
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

TEMPLATE_TEST_CASE("syrk_lower forms the lower triangle of alpha·A·Aᵀ + beta·C and nothing else", "[internals]", float,
                   double) {
  // every path: one BLAS call (at most 255 rows and k < 512, or 3 threads and more), two halves of k
  // summed (at most 255 rows, k ≥ 512), and from 256 rows at 1 or 2 threads a SYRK of the first n/√2
  // rows plus a GEMM and a SYRK of the rest (side by side at 2 threads). Leading dimensions wider than
  // the matrices; the strict upper triangle must stay as it was.
  using T = TestType;
  std::mt19937_64 g(11);
  std::normal_distribution<double> normal;
  for (const auto& [n, k] : {std::pair<int64_t, int64_t>{5, 40},
                             {5, 700},
                             {128, 513},
                             {255, 600},
                             {256, 520},
                             {37, 1024},
                             {300, 90},
                             {800, 30},
                             {1601, 6}})
    for (const T beta : {T(0), T(1), T(-0.5)}) {
      CAPTURE(n, k, beta);
      const int64_t lda = k + 3, ldc = n + 2;
      const T alpha = T(0.75);
      std::vector<T> a(static_cast<size_t>(n * lda)), c0(static_cast<size_t>(n * ldc));
      for (auto& v : a) v = static_cast<T>(normal(g));
      for (auto& v : c0) v = static_cast<T>(normal(g));
      // the lower triangle is computed; the strict upper triangle and the padding must stay as they were
      auto check = [&, n = n, k = k](const std::vector<T>& c) {
        check_product(c, c0, n, n, true, ldc, a, lda, a, lda, k, alpha, beta);
      };
      auto run = [&, n = n, k = k](int threads) {
        return at_threads(threads, [&] {
          std::vector<T> c = c0;
          detail::syrk_lower(n, k, alpha, a.data(), lda, beta, c.data(), ldc);
          return c;
        });
      };
      const std::vector<T> one = run(1);
      check(one);
      // 1 and 2 threads make the same calls (single-threaded BLAS), so the results are identical; from
      // 3 threads OpenBLAS threads one call, which agrees to rounding
      const std::vector<T> two = run(2);
      CHECK(std::equal(two.begin(), two.end(), one.begin()));  // (not two == one: Catch would print both)
      check(run(3));
    }
}

TEMPLATE_TEST_CASE("gram_product forms alpha·A·Bᵀ + beta·C, the same at every thread count", "[internals]", float,
                   double) {
  // both paths: one BLAS call (an output side over 255, or k < 512) and two halves of k summed (up to
  // 255 × 255 from 512 columns, odd k included); leading dimensions wider than the matrices. The halves
  // are the same two single-threaded calls at any thread count, so the results must be identical.
  using T = TestType;
  std::mt19937_64 g(23);
  std::normal_distribution<double> normal;
  for (const auto& [m, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {200, 50, 1025}, {255, 255, 512}, {3, 7, 600}, {256, 40, 700}, {40, 300, 520}, {30, 20, 511}})
    for (const T beta : {T(0), T(-0.5)}) {
      CAPTURE(m, n, k, beta);
      const int64_t lda = k + 3, ldb = k + 1, ldc = n + 2;
      const T alpha = T(0.75);
      std::vector<T> a(static_cast<size_t>(m * lda)), b(static_cast<size_t>(n * ldb)), c0(static_cast<size_t>(m * ldc));
      for (auto& v : a) v = static_cast<T>(normal(g));
      for (auto& v : b) v = static_cast<T>(normal(g));
      for (auto& v : c0) v = static_cast<T>(normal(g));
      auto run = [&, m = m, n = n, k = k](int threads) {
        return at_threads(threads, [&] {
          std::vector<T> c = c0;
          detail::gram_product(m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
          return c;
        });
      };
      const std::vector<T> c = run(2);
      check_product(c, c0, m, n, false, ldc, a, lda, b, ldb, k, alpha, beta);
      if (m <= 255 && n <= 255 && k >= 512) {  // the halves: identical at 1 and 3 threads
        const std::vector<T> one = run(1), three = run(3);
        CHECK(std::equal(one.begin(), one.end(), c.begin()));
        CHECK(std::equal(three.begin(), three.end(), c.begin()));
      }
    }
}

TEMPLATE_TEST_CASE("the direct stride-1 conv backward matches direct sums", "[internals]", float, double) {
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
  for (const Geometry& s :
       {Geometry{8, 3, 5, 5, 3, 3, 0, 0}, Geometry{11, 4, 6, 37, 3, 3, 1, 1}, Geometry{9, 2, 4, 16, 2, 5, 2, 5},
        Geometry{16, 5, 3, 33, 1, 1, 0, 0}, Geometry{8, 1, 7, 70, 3, 2, 4, 0}}) {
    CAPTURE(s.ci, s.co, s.h, s.w, s.kh, s.kw, s.ph, s.pw);
    detail::ConvGeometry geo{.channels = s.ci,
                             .height = s.h,
                             .width = s.w,
                             .kernel_h = s.kh,
                             .kernel_w = s.kw,
                             .pad_h = s.ph,
                             .pad_w = s.pw};
    const int64_t oh = geo.out_h(), ow = geo.out_w();
    std::vector<T> w(static_cast<size_t>(s.co * s.ci * s.kh * s.kw)), wr(w.size()),
        dout(static_cast<size_t>(s.co * oh * ow)), din(static_cast<size_t>(s.ci * s.h * s.w), T(-7)),
        scratch(static_cast<size_t>(detail::conv_backward_scratch<T>(geo, s.co)));
    for (auto& v : w) v = static_cast<T>(normal(g));
    for (auto& v : dout) v = static_cast<T>(normal(g));
    detail::conv_backward_weight(geo, s.co, w.data(), wr.data());
    detail::conv_backward_direct(geo, s.co, alpha, wr.data(), dout.data(), din.data(), scratch.data());
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

TEST_CASE("Kernel::flops counts the conv gradient work the masked product skipped as not done", "[internals]") {
  // both convs form their per-sample gradients through masked_product (≥ 256 positions, K = 36): it
  // skips 2·O·K FLOPs per (sample, channel, position) whose ReLU derivative is zero, counted here from
  // the forward values. With LeakyReLU nothing is zero and the dense count stands.
  const int64_t n = 3, O = 3, K = 4 * 3 * 3;
  auto spec = [&](Activation act) {
    return ModelSpec{.input = {4, 20, 20},
                     .layers = {Conv2d{.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .method = "gradients"}, act,
                                Conv2d{.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .method = "gradients"}, act,
                                Flatten{}, Linear{.out_features = O}}};
  };
  const Sequential<double> relu(spec(ReLU()), 6), leaky(spec(LeakyReLU(0.1)), 6);
  const Tensor<double> x = test::randn<double>({n, 4, 20, 20}, 10);
  const double dense = ntk(leaky, x).flops, done = ntk(relu, x).flops;
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
  const double skipped = detail::masked_backward_compiled() ? 2.0 * O * K * static_cast<double>(off1 + off2) : 0.0;
  CAPTURE(off1, off2, dense, done);
  CHECK(done == dense - skipped);
}

TEST_CASE("Kernel::flops counts only the columns each sample pair shares in the masked delta Gram", "[internals]") {
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
  const double dense = ntk(leaky, x).flops, done = ntk(relu, x).flops;
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
  REQUIRE(shared * detail::mgram::step_cost(O) < pairs * hidden * O * O);
  const double syrk = static_cast<double>(n * O) * static_cast<double>(n * O + 1) * hidden;
  const double expected = detail::kMaskedGram ? dense - syrk + 2.0 * O * O * shared : dense;
  CAPTURE(shared, dense, done);
  CHECK(done == expected);
}

TEST_CASE("Kernel::flops counts the multiply-adds the masked backward skipped as not done", "[internals]") {
  // 300-260-270-3 with 5 samples: only the 270 → 260 backward is wide enough for masked_product. It
  // skips sample s's column u when ReLU'(z_u) = 0 after the 270-wide layer, i.e. 2·O·260 FLOPs per
  // (sample, unit) with z ≤ 0, counted here from the forward values of the first three layers. The ReLU
  // after the 260-wide layer gates its output: of each 16-column strip (float64) it computes nothing
  // when no column is kept, 4 columns when at most 4 are, 8 when at most 8, 12 when at most 12, and of
  // the 4 columns past the last strip only the kept ones, for each of the sample's active rows. With LeakyReLU no
  // derivative is zero, so the dense product runs and counts everything.
  const int64_t in = 300, n = 5, O = 3;
  auto spec = [&](Activation act) {
    return ModelSpec{
        .input = {in},
        .layers = {Linear{.out_features = 260}, act, Linear{.out_features = 270}, act, Linear{.out_features = O}}};
  };
  const Sequential<double> relu(spec(ReLU()), 4), leaky(spec(LeakyReLU(0.1)), 4);
  const Tensor<double> x = test::randn<double>({n, in}, 9);
  const double dense = ntk(leaky, x).flops, done = ntk(relu, x).flops;
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
      columns += kept == 0 ? 16 : kept <= 4 ? 12 : kept <= 8 ? 8 : kept <= 12 ? 4 : 0;
    }
    for (int64_t c = 256; c < 260; ++c) columns += !(gate[s * 260 + c] > 0);
    gated += active * columns;
  }
  REQUIRE(off > 0);
  REQUIRE(gated > 0);
  const double skipped = detail::masked_backward_compiled()
                             ? 2.0 * O * (260 * static_cast<double>(off) + static_cast<double>(gated))
                             : 0.0;
  CAPTURE(off, gated, dense, done, (dense - done) / (2.0 * O));
  CHECK(done == dense - skipped);
}
