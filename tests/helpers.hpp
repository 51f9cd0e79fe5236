#pragma once
// Shared test utilities: seeded random data, relative errors, and the random-model table.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <xntk/xntk.hpp>

namespace xntk::test {

/// Standard-normal tensor from a fixed seed.
template <class T>
Tensor<T> randn(Shape shape, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  Tensor<T> t(std::move(shape));
  for (int64_t i = 0; i < t.size(); ++i) t[i] = static_cast<T>(d(g));
  return t;
}

/// max_i |a_i − b_i| / max_i |b_i|: the error relative to the reference's scale (elementwise relative
/// errors are meaningless at entries that cancel to ~0, such as off-diagonal output pairs).
template <class A, class B>
double rel_error(const Tensor<A>& a, const Tensor<B>& b) {
  if (a.shape() != b.shape()) return INFINITY;
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

/// Two kernels and their components agree (names, count, and each tensor to `tol` by rel_error).
template <class T>
void compare(const Kernel<T>& e, const Kernel<T>& a, double tol) {
  CHECK(rel_error(e.total, a.total) <= tol);
  REQUIRE(e.names == a.names);
  REQUIRE(e.components.size() == a.components.size());
  for (size_t i = 0; i < e.components.size(); ++i) {
    INFO("component " << e.names[i]);
    CHECK(rel_error(e.components[i], a.components[i]) <= tol);
  }
}

/// The explicit kernel and its components agree with the autograd path's to `tol` in every mode, for
/// two batches and for x1 alone.
template <class T>
void compare_with_autograd(const Sequential<T>& net, const Tensor<T>& x1, const Tensor<T>& x2, double tol) {
  for (Mode mode : {Mode::full, Mode::trace, Mode::diagonal}) {
    INFO("mode " << name(mode));
    const KernelOptions opt{.mode = mode, .components = true};
    compare(ntk(net, x1, x2, opt), autograd_ntk(net, x1, x2, opt), tol);
    compare(ntk(net, x1, opt), autograd_ntk(net, x1, opt), tol);
  }
}

/// Gives every normalisation layer's parameters and buffers random values (γ around 1, β around 0, running means
/// around 0, running variances in [0.5, 1.5]), so that tests do not run at the special point γ = 1, β = 0.
/// `norms`: more modules (with their trailing '.', e.g. "2.") whose parameters count as a normalisation's (LayerNorm,
/// which has no buffers).
template <class T>
void randomize_norms(const Sequential<T>& net, uint64_t seed, const std::vector<std::string>& norms = {}) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  for (const auto& b : net.named_buffers()) {
    const bool var = b.name.ends_with("running_var"), count = b.name.ends_with("num_batches_tracked");
    for (int64_t i = 0; i < b.tensor->size(); ++i)
      (*b.tensor)[i] = count ? T(7) : static_cast<T>(var ? 1.0 + u(g) : u(g));
  }
  // the parameters of layers that have buffers or are named in `norms`: γ near 1, β near 0
  std::vector<std::string> owners = norms;
  for (const auto& b : net.named_buffers()) owners.push_back(b.name.substr(0, b.name.rfind('.') + 1));
  for (const auto& p : net.named_parameters()) {
    const std::string module = p.name.substr(0, p.name.rfind('.') + 1);
    const bool norm = std::find(owners.begin(), owners.end(), module) != owners.end();
    if (!norm) continue;
    const bool weight = p.name.ends_with("weight");
    for (int64_t i = 0; i < p.tensor->size(); ++i) (*p.tensor)[i] = static_cast<T>((weight ? 1.0 : 0.0) + u(g));
  }
}

/// Kernel::methods as "layer: method" strings.
inline std::vector<std::string> methods_text(const std::vector<MethodUsed>& methods) {
  std::vector<std::string> v;
  for (const auto& m : methods) v.push_back(m.layer + ": " + name(m.method));
  return v;
}

/// A description of layers for failure messages.
inline std::string describe(const std::vector<LayerSpec>& layers) {
  std::string s;
  for (const auto& l : layers) {
    s += " " + type_name(l);
    if (auto* lin = std::get_if<Linear>(&l))
      s += "(" + std::to_string(lin->out_features) + (lin->bias ? "" : ",nobias") + ")";
    if (auto* r = std::get_if<Residual>(&l)) s += "[" + describe(r->body) + " |" + describe(r->shortcut) + " ]";
    if (auto* b = std::get_if<SequentialBlock>(&l)) s += "[" + describe(b->layers) + " ]";
  }
  return s;
}

/// A description of a model for failure messages.
inline std::string describe(const ModelSpec& spec) {
  return std::string(name(spec.parameterization)) + " input " + to_string(spec.input) + ":" + describe(spec.layers);
}

/// xntk::jacobian (N, O, P) against the autograd path's per-parameter Jacobians placed in component order:
/// the largest absolute difference and the largest magnitude of the autograd values. Checks the columns
/// cover exactly P.
struct JacobianGap {
  double worst = 0, scale = 0;
};
inline JacobianGap jacobian_gap(const Sequential<double>& net, const Tensor<double>& x) {
  const auto J = jacobian(net, x);
  const int64_t n = x.dim(0), O = net.outputs(), P = net.num_parameters();
  REQUIRE(J.shape() == Shape{n, O, P});
  const auto A = jacobians(net, x);  // autograd, per parameter in state_dict order
  const auto params = net.named_parameters();
  int64_t col = 0;
  JacobianGap g;
  for (const auto& name : net.component_names()) {
    size_t q = 0;
    while (params[q].name != name) ++q;
    const int64_t size = params[q].tensor->size();
    for (int64_t r = 0; r < n * O; ++r)
      for (int64_t e = 0; e < size; ++e) {
        g.worst = std::max(g.worst, std::abs(J[r * P + col + e] - A[q][r * size + e]));
        g.scale = std::max(g.scale, std::abs(A[q][r * size + e]));
      }
    col += size;
  }
  CHECK(col == P);
  return g;
}

}  // namespace xntk::test
