// Kernel analysis on matrices with known spectra, built by hand.
#include <dlfcn.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <catch2/catch.hpp>
#include <climits>
#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis_lapack.hpp"
#include "cli_run.hpp"
#include "helpers.hpp"

using namespace xntk;
using Catch::Matchers::Contains;

namespace {

Tensor<double> diag(const std::vector<double>& d) {
  const auto n = static_cast<int64_t>(d.size());
  Tensor<double> t({n, n});
  for (int64_t i = 0; i < n; ++i) t(i, i) = d[static_cast<size_t>(i)];
  return t;
}

double entropy_rank(std::vector<double> p) {
  double s = 0, h = 0;
  for (double v : p) s += v;
  for (double v : p)
    if (v > 0) h -= v / s * std::log(v / s);
  return std::exp(h);
}

/// A random symmetric positive semi-definite (n × n) matrix A Aᵀ / k with A of (n × k): rank min(n, k).
std::vector<double> random_psd(int64_t n, int64_t k, uint64_t seed) {
  const auto a = test::randn<double>({n, k}, seed);
  std::vector<double> m(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double v = 0;
      for (int64_t e = 0; e < k; ++e) v += a[i * k + e] * a[j * k + e];
      m[static_cast<size_t>(i * n + j)] = m[static_cast<size_t>(j * n + i)] = v / static_cast<double>(k);
    }
  return m;
}

/// max_i |a_i − b_i| / max_i |b_i| of two eigenvalue lists (infinite if their lengths differ).
double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return diff / scale;
}

/// The eigensolver this test binary must see: LAPACK's when the library linked one into the process.
std::string expected_eigensolver() { return dlsym(RTLD_DEFAULT, "dsyevd_") ? "lapack dsyevd" : "eigen"; }

}  // namespace

TEST_CASE("the eigenvalues equal Eigen's solver's on random PSD matrices", "[analysis]") {
  // Eigen's SelfAdjointEigenSolver is the reference: with LAPACK's dsyevd in the build the two are independent
  // implementations (Householder tridiagonalisation then implicit QL/QR in Eigen, blocked dsytrd then dsterf in
  // LAPACK), both backward stable, so they agree to a few n·ε·λmax
  for (const int64_t n : {1, 2, 7, 64, 203, 512}) {
    for (const int64_t k : {n / 3 + 1, 2 * n}) {  // singular (rank n/3 + 1) and positive definite
      INFO("n = " << n << ", A of (n × " << k << ")");
      const std::vector<double> m = random_psd(n, k, static_cast<uint64_t>(1000 * n + k));
      const Spectrum s = spectrum(m, n);
      CHECK(s.eigensolver == expected_eigensolver());
      const Eigen::Map<const Eigen::MatrixXd> M(m.data(), n, n);
      const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> ref(M, Eigen::EigenvaluesOnly);
      REQUIRE(ref.info() == Eigen::Success);
      const std::vector<double> want(ref.eigenvalues().data(), ref.eigenvalues().data() + n);
      CHECK(std::is_sorted(s.eigenvalues.begin(), s.eigenvalues.end()));
      CHECK(rel_error(s.eigenvalues, want) <= 1e-10);
      CHECK(s.lambda_max == Approx(want.back()).epsilon(1e-12));
    }
  }
}

TEST_CASE("the eigenvalues of Q diag(λ) Qᵀ with a Householder Q are λ, ascending", "[analysis]") {
  // λ spans nine decades with repeated values and zeros; Q = I − 2 v vᵀ / vᵀv
  for (const int64_t n : {3, 50, 301}) {
    INFO("n = " << n);
    std::vector<double> lambda(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) lambda[static_cast<size_t>(i)] = i % 7 == 3 ? 0.0 : std::pow(10.0, -(i % 10));
    const auto v = test::randn<double>({n}, static_cast<uint64_t>(n));
    double vv = 0;
    for (int64_t i = 0; i < n; ++i) vv += v[i] * v[i];
    std::vector<double> q(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) q[static_cast<size_t>(i * n + j)] = (i == j ? 1.0 : 0.0) - 2 * v[i] * v[j] / vv;
    Tensor<double> k({n, n});
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double e = 0;
        for (int64_t l = 0; l < n; ++l)
          e += q[static_cast<size_t>(i * n + l)] * lambda[static_cast<size_t>(l)] * q[static_cast<size_t>(j * n + l)];
        k(i, j) = e;
      }
    const Analysis a = analyze(k);
    CHECK(a.spectrum.eigensolver == expected_eigensolver());
    std::sort(lambda.begin(), lambda.end());
    CHECK(rel_error(a.spectrum.eigenvalues, lambda) <= 1e-12);
  }
}

TEST_CASE("the analysis reports its eigensolver, in the library and in xntk analyze", "[analysis]") {
  const std::string want = expected_eigensolver();
  Tensor<double> diagonal({2, 2, 2});
  diagonal(0, 0, 0) = diagonal(1, 1, 0) = diagonal(0, 0, 1) = diagonal(1, 1, 1) = 1;
  const Analysis a = analyze(diagonal, {{"0.weight", diagonal}});
  CHECK(a.spectrum.eigensolver == want);
  REQUIRE(a.per_output.size() == 2);
  CHECK(a.per_output[1].eigensolver == want);
  REQUIRE(a.components.size() == 1);
  CHECK(a.components[0].spectrum.eigensolver == want);

  if (std::string(XNTK_CLI).empty()) return;
  test::TempDir d("analysis-eigensolver");
  write_npy(d / "k.npy", diag({3, 1}));
  const test::Run json = test::run("analyze k.npy --json", d);
  REQUIRE(json.code == 0);
  CHECK(nlohmann::json::parse(json.out)["eigensolver"] == want);
  const test::Run text = test::run("analyze k.npy", d);
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Contains("eigensolver      " + want));
}

TEST_CASE("a matrix too large for LAPACK's 32-bit sizes is refused", "[analysis][errors]") {
  // dsyevd (eigenvalues only) needs a workspace of 2N + 1 doubles, counted in a Fortran INTEGER
  const int64_t largest = (int64_t{INT_MAX} - 1) / 2;
  CHECK(detail::lapack_size(largest, "kernel") == largest);
  CHECK(detail::lapack_size(4000, "kernel") == 4000);
  CHECK_THROWS_WITH(detail::lapack_size(largest + 1, "kernel"),
                    Contains("kernel: a 1073741824 × 1073741824 matrix is too large") && Contains("32-bit"));
  CHECK_THROWS_WITH(detail::lapack_size(int64_t{1} << 40, "component \"1.bias\""), Contains("component"));
}

TEST_CASE("trace-mode kernel: eigenvalues, condition, ranks, trace", "[analysis]") {
  const auto a = analyze(diag({4, 2, 1}));
  CHECK(a.mode == Mode::trace);
  CHECK(a.samples == 3);
  CHECK(a.outputs == 1);
  REQUIRE(a.spectrum.eigenvalues.size() == 3);
  CHECK(a.spectrum.eigenvalues[0] == Approx(1));
  CHECK(a.spectrum.eigenvalues[2] == Approx(4));
  CHECK(a.spectrum.lambda_max == Approx(4));
  CHECK(a.spectrum.lambda_min == Approx(1));
  CHECK(a.spectrum.trace == Approx(7));
  CHECK(a.spectrum.positive_definite);
  CHECK(a.spectrum.condition == Approx(4));
  CHECK(a.spectrum.numerical_rank == 3);
  CHECK(a.spectrum.effective_rank == Approx(entropy_rank({4, 2, 1})));
  CHECK(a.spectrum.note.empty());
  // a flat spectrum has full effective rank
  CHECK(analyze(diag({2, 2, 2, 2})).spectrum.effective_rank == Approx(4));
}

TEST_CASE("full-mode kernel is analysed as the (N·O × N·O) matrix", "[analysis]") {
  // M = Q diag(5, 3, 2, 0.5) Qᵀ with Q a product of two rotations; K[n, m, o, p] = M[n·2 + o, m·2 + p]
  const double c = std::cos(0.7), s = std::sin(0.7), c2 = std::cos(-1.1), s2 = std::sin(-1.1);
  const double Q[4][4] = {{c, -s, 0, 0}, {s * c2, c * c2, -s2, 0}, {s * s2, c * s2, c2, 0}, {0, 0, 0, 1}};
  const double lambda[4] = {5, 3, 2, 0.5};
  Tensor<double> k({2, 2, 2, 2});
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      double v = 0;
      for (int e = 0; e < 4; ++e) v += Q[i][e] * lambda[e] * Q[j][e];
      k(i / 2, j / 2, i % 2, j % 2) = v;
    }
  const auto a = analyze(k);
  CHECK(a.mode == Mode::full);
  CHECK(a.outputs == 2);
  REQUIRE(a.spectrum.eigenvalues.size() == 4);
  const double want[4] = {0.5, 2, 3, 5};
  for (int e = 0; e < 4; ++e) CHECK(a.spectrum.eigenvalues[static_cast<size_t>(e)] == Approx(want[e]).epsilon(1e-12));
  CHECK(a.spectrum.trace == Approx(10.5));
  CHECK(a.spectrum.condition == Approx(10));
  CHECK(a.asymmetry < 1e-15);
}

TEST_CASE("diagonal-mode kernel: per-output blocks and their union", "[analysis]") {
  Tensor<double> k({2, 2, 2});
  k(0, 0, 0) = 3;
  k(1, 1, 0) = 1;
  k(0, 0, 1) = 2;
  k(1, 1, 1) = 2;
  k(0, 1, 1) = k(1, 0, 1) = 1;  // output 1's block [[2, 1], [1, 2]]: eigenvalues 1 and 3
  const auto a = analyze(k);
  CHECK(a.mode == Mode::diagonal);
  REQUIRE(a.per_output.size() == 2);
  CHECK(a.per_output[0].condition == Approx(3));
  CHECK(a.per_output[1].lambda_min == Approx(1));
  CHECK(a.per_output[1].lambda_max == Approx(3));
  REQUIRE(a.spectrum.eigenvalues.size() == 4);
  CHECK(a.spectrum.eigenvalues[0] == Approx(1));
  CHECK(a.spectrum.eigenvalues[3] == Approx(3));
  CHECK(a.spectrum.trace == Approx(8));
}

TEST_CASE("singular, indefinite and zero kernels say so instead of a condition number", "[analysis]") {
  const auto singular = analyze(diag({1, 0, 1e-20}));
  CHECK_FALSE(singular.spectrum.positive_definite);
  CHECK(std::isinf(singular.spectrum.condition));
  CHECK(singular.spectrum.numerical_rank == 1);
  CHECK(singular.spectrum.effective_rank == Approx(1));
  CHECK_THAT(singular.spectrum.note, Contains("singular") && Contains("rank 1 of 3"));

  const auto indefinite = analyze(diag({1, -0.5}));
  CHECK_FALSE(indefinite.spectrum.positive_definite);
  CHECK_THAT(indefinite.spectrum.note, Contains("not positive semi-definite"));

  CHECK_THAT(analyze(Tensor<double>({3, 3})).spectrum.note, Contains("zero"));
  // the tolerance follows the dtype: 1e-9 relative is zero in float32, not in float64
  CHECK(analyze(diag({1, 1e-9})).spectrum.positive_definite);
  CHECK_FALSE(analyze(diag({1, 1e-9}), {}, {.epsilon = 1.1920928955078125e-07}).spectrum.positive_definite);
}

TEST_CASE("components: shares of the trace and their own condition numbers", "[analysis]") {
  const std::vector<NamedTensor<double>> comps = {
      {"1.weight", diag({3, 1})}, {"1.bias", diag({1, 1})}, {"total", diag({4, 2})}};
  const auto a = analyze(diag({4, 2}), comps);
  REQUIRE(a.components.size() == 2);  // "total" is skipped
  CHECK(a.components[0].name == "1.weight");
  CHECK(a.components[0].share == Approx(4.0 / 6));
  CHECK(a.components[1].share == Approx(2.0 / 6));
  CHECK(a.components[0].spectrum.condition == Approx(3));
  CHECK(a.components[1].spectrum.condition == Approx(1));
  CHECK(a.components[0].trace == Approx(4));
}

TEST_CASE("kernels that are not Θ(X, X) are refused", "[analysis][errors]") {
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 3})), Contains("(2, 3)") && Contains("2 × 3 samples"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 3, 4, 4})), Contains("square in samples"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 2, 3, 4})), Contains("expected Θ(X, X)"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({4})), Contains("(4,)"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 2, 1, 1, 1})), Contains("expected"));
  // no outputs: an empty eigenvalue list was dereferenced (SIGSEGV)
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 2, 0, 0})), Contains("(2, 2, 0, 0)") && Contains("no outputs"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({2, 2, 0})), Contains("(2, 2, 0)") && Contains("no outputs"));
  CHECK_THROWS_WITH(analyze(Tensor<double>({0, 0, 0})), Contains("no samples"));
  auto asym = diag({1, 1});
  asym(0, 1) = 0.5;
  CHECK_THROWS_WITH(analyze(asym), Contains("not symmetric"));
  auto nan = diag({1, 1});
  nan(1, 1) = NAN;
  CHECK_THROWS_WITH(analyze(nan), Contains("NaN") && Contains("index 3"));
  CHECK_THROWS_WITH(analyze(diag({1, 1}), {{"0.weight", diag({1, 1, 1})}}),
                    Contains("component \"0.weight\"") && Contains("(3, 3)"));
  CHECK_THROWS_AS(spectrum({1, 2, 3}, 2), Error);
  CHECK(spectrum({2, 0, 0, 8}, 2).condition == Approx(4));
}

TEST_CASE("a float32 kernel is analysed with float32's tolerance, a Kernel with its named components", "[analysis]") {
  // K = v vᵀ of rank 1 (n = 40), stored in float32: its rounding leaves eigenvalues of order 1e-7·‖v‖², zero
  // at float32's tolerance, not at float64's
  const int64_t n = 40;
  Tensor<float> k({n, n});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      k[i * n + j] = static_cast<float>(std::sin(0.3 * static_cast<double>(i) + 1.0)) *
                     static_cast<float>(std::sin(0.3 * static_cast<double>(j) + 1.0)) * 1.1f;
  const Analysis a = analyze(k);
  CHECK(a.spectrum.numerical_rank == 1);
  CHECK(a.spectrum.tolerance == Approx(static_cast<double>(n) * 1.1920928955078125e-07 * a.spectrum.lambda_max));
  const Analysis strict = analyze(k, {}, {.epsilon = 2.220446049250313e-16});
  CHECK(strict.spectrum.numerical_rank > 1);
  CHECK_THROWS_WITH(analyze(k, {}, {.epsilon = -1}), Contains("epsilon"));

  const Sequential<double> net({.input = {3}, .layers = {Linear{.out_features = 4}, Tanh(), Linear{.out_features = 2}}},
                               1);
  const auto x = test::randn<double>({6, 3}, 2);
  const Kernel<double> kern = ntk(net, x, {.mode = Mode::trace, .components = true});
  const Analysis b = analyze(kern);
  REQUIRE(b.components.size() == 4);
  for (size_t c = 0; c < 4; ++c) {
    CHECK(b.components[c].name == kern.names[c]);
    CHECK(b.components[c].trace == Approx(analyze(kern.components[c]).spectrum.trace).epsilon(1e-12));
  }
  CHECK(b.spectrum.eigenvalues == analyze(kern.total).spectrum.eigenvalues);
  // float kernels from ntk<float> go straight in as well
  const Sequential<float> netf({.input = {3}, .layers = {Linear{.out_features = 4}, Tanh(), Linear{.out_features = 2}}},
                               1);
  const Analysis f = analyze(ntk(netf, x.cast<float>(), {.mode = Mode::trace, .components = true}));
  CHECK(f.components.size() == 4);
  CHECK(f.spectrum.trace == Approx(b.spectrum.trace).epsilon(1e-5));
}
