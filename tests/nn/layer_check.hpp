#pragma once
// Finite-difference checks of one layer's backward (the VJP to its input), gradient (the VJP to its
// parameters) and jvp (forward mode) against its own forward, as mlpack's per-layer JacobianTest does: for
// random inputs a, random output cotangents d and random directions v, u,
//   ⟨backward(d), v⟩ = d/dh ⟨d, f(a + h v)⟩,   ⟨gradient(d), u⟩ = d/dh ⟨d, f(a; θ + h u)⟩,
//   jvp(v, u) = d/dh f(a + h v; θ + h u)  (each output), and ⟨jvp(v, u), d⟩ = ⟨backward(d), v⟩ + ⟨gradient(d), u⟩,
// by central differences in float64 (h = 1e-5: truncation ~h² and rounding ~ε/h stay below 1e-8 relative on
// these smooth random points; the tolerance is 1e-6). Also: backward from shared rows equals backward from
// the same rows repeated per sample, for `streams` rows per sample.

#include <catch2/catch.hpp>
#include <functional>

#include "../helpers.hpp"
#include "nn/model.hpp"

namespace xntk::test {

namespace detail_check {

/// Σ of d ⊙ f(a) over every value, f evaluated by the leaf on `batch` samples.
inline double pairing(const nn::Leaf<double>& leaf, nn::Context<double>& cx, const std::vector<double>& a,
                      int64_t batch, const std::vector<double>& d, int64_t stream, int64_t streams) {
  std::vector<double> y(static_cast<size_t>(batch * leaf.out_size()));
  leaf.compute(cx, a.data(), y.data(), batch);
  const int64_t out = leaf.out_size();
  double s = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t k = 0; k < out; ++k)
      s += d[static_cast<size_t>((b * streams + stream) * out + k)] * y[static_cast<size_t>(b * out + k)];
  return s;
}

inline std::vector<double> normal(int64_t n, uint64_t seed) {
  const auto t = randn<double>({n}, seed);
  return std::vector<double>(t.data(), t.data() + n);
}

inline nn::Delta<double> delta_of(nn::DeltaKind kind, const std::vector<double>& v) {
  nn::Delta<double> d{kind, {}};
  d.rows.resize(static_cast<int64_t>(v.size()));
  std::copy(v.begin(), v.end(), d.rows.data());
  return d;
}

/// |analytic − numeric| within 1e-6 of max(1, |analytic|).
inline void close(double analytic, double numeric) {
  CAPTURE(analytic, numeric);
  CHECK(std::abs(analytic - numeric) <= 1e-6 * std::max(1.0, std::abs(analytic)));
}

}  // namespace detail_check

/// Checks the one layer `spec` on per-sample input shape `in` (see the file comment); `positive`: draw inputs
/// away from 0 (|a| ≥ 0.3, so that a kink at 0 never lies within h).
/// `prepare` may set the model's parameters and buffers before the checks (a layer whose defaults are special
/// points, such as BatchNorm's γ = 1, β = 0).
inline void check_layer(const LayerSpec& spec, const Shape& in, Parameterization p = Parameterization::standard,
                        uint64_t seed = 1, const std::function<void(Sequential<double>&)>& prepare = {}) {
  using namespace detail_check;
  Sequential<double> net({.input = in, .parameterization = p, .layers = {spec}}, seed);
  if (prepare) prepare(net);
  const nn::Leaf<double>& leaf = nn::top_leaf(net, 0);
  nn::Context<double> cx(backend::get("cpu"));
  const int64_t batch = 3, n_in = leaf.in_size(), n_out = leaf.out_size();
  const double h = 1e-5;
  auto a = normal(batch * n_in, seed + 10);
  for (auto& v : a) v = v >= 0 ? v + 0.3 : v - 0.3;  // off the kinks of ReLU, LeakyReLU, ELU at 0
  std::vector<double> y(static_cast<size_t>(batch * n_out));
  leaf.compute(cx, a.data(), y.data(), batch);

  // backward, for 1 and 3 derivative rows per sample
  for (const int64_t streams : {int64_t{1}, int64_t{3}}) {
    INFO("backward, " << streams << " rows per sample");
    const auto d = normal(batch * streams * n_out, seed + 20 + static_cast<uint64_t>(streams));
    const auto v = normal(batch * n_in, seed + 30);
    const auto din =
        leaf.backward(cx, a.data(), y.data(), batch, streams, delta_of(nn::DeltaKind::per_sample, d), nullptr);
    REQUIRE(din.kind == nn::DeltaKind::per_sample);
    for (int64_t s = 0; s < streams; ++s) {
      double analytic = 0;
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t k = 0; k < n_in; ++k)
          analytic += din.data()[(b * streams + s) * n_in + k] * v[static_cast<size_t>(b * n_in + k)];
      std::vector<double> up = a, down = a;
      for (size_t i = 0; i < a.size(); ++i) {
        up[i] += h * v[i];
        down[i] -= h * v[i];
      }
      close(analytic,
            (pairing(leaf, cx, up, batch, d, s, streams) - pairing(leaf, cx, down, batch, d, s, streams)) / (2 * h));
    }
    // the same rows for every sample, given once as shared rows: the same input deltas
    const auto rows = normal(streams * n_out, seed + 40);
    std::vector<double> repeated;
    for (int64_t b = 0; b < batch; ++b) repeated.insert(repeated.end(), rows.begin(), rows.end());
    auto from_shared =
        leaf.backward(cx, a.data(), y.data(), batch, streams, delta_of(nn::DeltaKind::shared, rows), nullptr);
    const auto from_rows =
        leaf.backward(cx, a.data(), y.data(), batch, streams, delta_of(nn::DeltaKind::per_sample, repeated), nullptr);
    from_shared = nn::expanded(cx, std::move(from_shared), streams, n_in, batch);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < batch * streams * n_in; ++i) {
      worst = std::max(worst, std::abs(from_shared.data()[i] - from_rows.data()[i]));
      scale = std::max(scale, std::abs(from_rows.data()[i]));
    }
    CHECK(worst <= 1e-14 * std::max(1.0, scale));
  }

  // jvp: along a random input direction and random parameter directions, against central differences of the
  // forward, output by output
  const auto params = leaf.parameters();
  {
    INFO("jvp");
    const auto v = normal(batch * n_in, seed + 70);
    std::vector<Tensor<double>> u;
    std::vector<const double*> dparams;
    for (size_t q = 0; q < params.size(); ++q) {
      u.push_back(randn<double>(params[q].tensor->shape(), seed + 80 + q));
      dparams.push_back(u.back().data());
    }
    for (const bool with_input : {true, false}) {
      if (!with_input && params.empty()) continue;
      std::vector<double> dy(static_cast<size_t>(batch * n_out));
      leaf.jvp(cx, a.data(), with_input ? v.data() : nullptr, dparams, y.data(), dy.data(), batch);
      auto moved = [&](double s) {  // f(a + s·v; θ + s·u)
        std::vector<Tensor<double>> saved;
        for (size_t q = 0; q < params.size(); ++q) {
          saved.push_back(*params[q].tensor);
          for (int64_t i = 0; i < params[q].tensor->size(); ++i) (*params[q].tensor)[i] += s * u[q][i];
        }
        std::vector<double> x = a, out(static_cast<size_t>(batch * n_out));
        if (with_input)
          for (size_t i = 0; i < x.size(); ++i) x[i] += s * v[i];
        leaf.compute(cx, x.data(), out.data(), batch);
        for (size_t q = 0; q < params.size(); ++q) *params[q].tensor = saved[q];
        return out;
      };
      const auto up = moved(h), down = moved(-h);
      double worst = 0, scale = 0;
      for (size_t i = 0; i < dy.size(); ++i) {
        worst = std::max(worst, std::abs(dy[i] - (up[i] - down[i]) / (2 * h)));
        scale = std::max(scale, std::abs(dy[i]));
      }
      CAPTURE(with_input, worst, scale);
      CHECK(worst <= 1e-6 * std::max(1.0, scale));
    }
  }

  // gradient: one derivative row per sample, each parameter tensor along its own random direction
  if (params.empty()) return;
  const auto d = normal(batch * n_out, seed + 50);
  std::vector<Tensor<double>> grads;
  std::vector<double*> ptrs;
  for (const auto& q : params) grads.emplace_back(q.tensor->shape());
  for (auto& g : grads) ptrs.push_back(g.data());
  leaf.gradient(cx, a.data(), batch, d.data(), ptrs);
  for (size_t q = 0; q < params.size(); ++q) {
    INFO("gradient of " << params[q].name);
    Tensor<double>& theta = *params[q].tensor;
    const Tensor<double> saved = theta;
    const auto u = normal(theta.size(), seed + 60 + q);
    double analytic = 0;
    for (int64_t i = 0; i < theta.size(); ++i) analytic += grads[q][i] * u[static_cast<size_t>(i)];
    for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] + h * u[static_cast<size_t>(i)];
    const double up = pairing(leaf, cx, a, batch, d, 0, 1);
    for (int64_t i = 0; i < theta.size(); ++i) theta[i] = saved[i] - h * u[static_cast<size_t>(i)];
    const double down = pairing(leaf, cx, a, batch, d, 0, 1);
    theta = saved;
    close(analytic, (up - down) / (2 * h));
  }
}

}  // namespace xntk::test
