#include "layers/linear.hpp"

#include <cmath>
#include <tuple>

#include "autograd/tape.hpp"
#include "batch.hpp"
#include "cpu/backend.hpp"
#include "cpu/grain.hpp"
#include "cpu/masked_gram.hpp"
#include "cpu/masked_product.hpp"
#include "cpu/skinny.hpp"

namespace xntk::detail {

namespace {
std::string where(int index) { return "layer " + std::to_string(index) + " (linear)"; }
}  // namespace

template <class T>
LinearLayer<T>::LinearLayer(int index, const Shape& in, const Linear& spec, Parameterization p, Rng& rng)
    : Layer<T>(index, in, {spec.out_features}), has_bias_(spec.bias) {
  if (in.size() != 1)
    throw Error(where(index) + ": expects a 1-D input (features), got shape " + to_string(in) +
                "; add a flatten layer before it");
  in_features_ = in[0];
  out_features_ = spec.out_features;
  if (out_features_ <= 0)
    throw Error(where(index) + ": out_features must be positive, got " + std::to_string(out_features_));
  if (spec.in_features != 0 && spec.in_features != in_features_)
    throw Error(where(index) + ": in_features is " + std::to_string(spec.in_features) +
                " but the previous layer gives " + std::to_string(in_features_) + " features");
  if (!(spec.w_std > 0) || !(spec.b_std >= 0) || !std::isfinite(spec.w_std) || !std::isfinite(spec.b_std))
    throw Error(where(index) + ": w_std must be positive and b_std non-negative");
  weight_ = Tensor<T>({out_features_, in_features_});
  if (has_bias_) bias_ = Tensor<T>({out_features_});
  const double fan_in = static_cast<double>(in_features_);
  std::tie(cw_, cb_) = initialize(weight_, bias_, fan_in, p, spec.w_std, spec.b_std, rng);
}

bool masked_backward_compiled() { return kMaskedProduct; }

template <class T>
void LinearLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  if (kSkinnyProduct && batch <= kSkinnyMaxBatch && in_features_ >= 256) {
    // few samples through a wide layer: our own kernel instead of a GEMM that packs all of W per call
    skinny_product(batch, out_features_, in_features_, T(cw_), in, weight_.data(), out);
  } else {
    gemm(false, true, batch, out_features_, in_features_, T(cw_), in, in_features_, weight_.data(), in_features_, T(0),
         out, out_features_);
  }
  if (has_bias_) {
    const T cb(cb_);
    parallel_for_work(batch, static_cast<double>(out_features_), [&](int64_t i) {
      for (int64_t j = 0; j < out_features_; ++j) out[i * out_features_ + j] += cb * bias_[j];
    });
  }
}

template <class T>
void LinearLayer<T>::backward(const T* in, const T* out, const T* dout, T* din, int64_t batch, int64_t streams) const {
  backward_gated(in, out, dout, din, batch, streams, nullptr);
}

template <class T>
void LinearLayer<T>::backward_gated(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams,
                                    const T* gate) const {
  // a few samples whose deltas are zero at the same columns (after a ReLU): skip those rows of W, and,
  // with a ReLU below too, the columns of din it zeroes (masked_product itself declines more samples or
  // streams than it takes, and dense deltas)
  if (kMaskedProduct && in_features_ >= 256 && out_features_ >= 256 &&
      masked_product(batch, streams, out_features_, in_features_, T(cw_), dout, weight_.data(), din, gate))
    return;
  gemm(false, false, batch * streams, in_features_, out_features_, T(cw_), dout, out_features_, weight_.data(),
       in_features_, T(0), din, in_features_);
}

template <class T>
double LinearLayer<T>::forward_flops(int64_t batch) const {
  return 2.0 * static_cast<double>(batch) * static_cast<double>(in_features_ * out_features_);
}

template <class T>
double LinearLayer<T>::backward_flops(int64_t batch, int64_t streams) const {
  return 2.0 * static_cast<double>(batch * streams) * static_cast<double>(in_features_ * out_features_);
}

template <class T>
std::vector<NamedParameter<T>> LinearLayer<T>::parameters() const {
  std::vector<NamedParameter<T>> p{{std::to_string(this->index_) + ".weight", &weight_}};
  if (has_bias_) p.push_back({std::to_string(this->index_) + ".bias", &bias_});
  return p;
}

template <class T>
double LinearLayer<T>::component_bytes(int64_t n1, int64_t n2, int64_t outputs) const {
  // the inputs Gram and the deltas Gram (full mode is the largest), and masked_gram's transposed deltas
  // (at most 16 lanes per unit and sample) and column masks
  const double grams = static_cast<double>(n1 * n2) * static_cast<double>(1 + outputs * outputs);
  const bool masked = kMaskedGram && outputs >= kMaskedGramMinRows && outputs <= kMaskedGramMaxRows;
  const double transposed = masked ? static_cast<double>((n1 + n2) * out_features_) * 16.0 : 0.0;
  const double masks = masked ? static_cast<double>((n1 + n2) * ((out_features_ + 63) / 64)) * 8.0 : 0.0;
  return static_cast<double>(sizeof(T)) * (grams + transposed) + masks;
}

namespace {

/// alpha · the Gram matrix of the rows of a (r1 × k, leading dimension lda) with those of b. With `same`
/// (b = a) only the lower triangle is formed (SYRK) and valid. Adds its FLOPs.
template <class T>
void gram_of(const T* a, int64_t r1, const T* b, int64_t r2, int64_t k, int64_t lda, bool same, T alpha, T* out,
             double* flops, T beta = T(0)) {
  if (same) {
    syrk_lower(r1, k, alpha, a, lda, beta, out, r1);
    *flops += static_cast<double>(r1 * (r1 + 1)) * static_cast<double>(k);
  } else {
    gram_product(r1, r2, k, alpha, a, lda, b, lda, beta, out, r2);
    *flops += 2.0 * static_cast<double>(r1 * r2) * static_cast<double>(k);
  }
}

}  // namespace

template <class T>
void LinearLayer<T>::components(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, in = in_features_, out = out_features_;
  const T cw2 = T(cw_ * cw_), cb2 = T(cb_ * cb_);
  T* w = t.weight;
  T* bias = has_bias_ ? t.bias : nullptr;

  auto columns = [&](int64_t i) { return t.same ? i + 1 : n2; };
  const int64_t per = per_pair(O, t.mode);

  if (a.delta == nullptr || a.shared) {
    // Deltas shared by all samples (at the last layer δ_o = e_o): ⟨δ_o, δ'_o'⟩ = S[o, o'] for every pair
    RowMat<T> S = RowMat<T>::Identity(O, O);
    if (a.delta) {
      gram_of(a.delta, O, b.delta, O, out, out, true, T(1), S.data(), t.flops);
      mirror_lower(S.data(), O);
    }
    RowMat<T> s = RowMat<T>::Zero(1, per);  // the (o, o') block of one pair in the mode's layout
    for (int64_t o = 0; o < O; ++o) {
      if (t.mode == Mode::full)
        for (int64_t p = 0; p < O; ++p) s(0, o * O + p) = S(o, p);
      else if (t.mode == Mode::diagonal)
        s(0, o) = S(o, o);
      else
        s(0, 0) += S(o, o);
    }
    *t.flops += (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2 * per);
    if (per == 1) {
      // one value per pair: c_w² s ⟨a, a'⟩ accumulated by the Gram product itself (β = 1), then c_b² s
      const T s0 = s(0, 0);
      gram_of(a.in, n1, b.in, n2, in, in, t.same, cw2 * s0, w, t.flops, T(1));
      if (bias)
        parallel_rows(n1, n2, t.same, 1.0, [&](int64_t i) {
          for (int64_t j = 0; j < columns(i); ++j) bias[i * n2 + j] += cb2 * s0;
        });
      return;
    }
    // c_w² ⟨a, a'⟩ for every sample pair. On a symmetric block only pairs j ≤ i are formed and written
    // (ComponentTarget::same); Grams are then valid in their lower triangles.
    auto A = view(t.workspace->get(0, n1 * n2), n1, n2);
    gram_of(a.in, n1, b.in, n2, in, in, t.same, cw2, A.data(), t.flops);
    const T* se = s.data();
    parallel_rows(n1, n2, t.same, static_cast<double>(per * 2), [&](int64_t i) {
      for (int64_t j = 0; j < columns(i); ++j) {
        const T aij = A(i, j);
        T* wij = w + (i * n2 + j) * per;
        if (bias == w) {  // total only: one pass, no aliasing
          for (int64_t e = 0; e < per; ++e) wij[e] += aij * se[e] + cb2 * se[e];
          continue;
        }
        for (int64_t e = 0; e < per; ++e) wij[e] += aij * se[e];
        if (bias) {
          T* bij = bias + (i * n2 + j) * per;
          for (int64_t e = 0; e < per; ++e) bij[e] += cb2 * se[e];
        }
      }
    });
    return;
  }

  auto A = view(t.workspace->get(0, n1 * n2), n1, n2);
  gram_of(a.in, n1, b.in, n2, in, in, t.same, cw2, A.data(), t.flops);

  // with one output the three modes coincide; the trace loop is the flat one
  switch (O == 1 ? Mode::trace : t.mode) {
    case Mode::full: {
      // D[(i,o), (j,o')] = ⟨δ_o(x_i), δ_o'(x'_j)⟩; Θ[i,j,o,o'] = c_w² A[i,j] D[(i,o),(j,o')] (+ c_b² D)
      const int64_t r1 = n1 * O, r2 = n2 * O;
      auto D = view(t.workspace->get(1, r1 * r2), r1, r2);
      // after a ReLU a sample's O deltas are zero at the same units: masked_gram sums each sample pair's
      // block over the units both have non-zero (the dense product where that is not faster)
      const double done =
          kMaskedGram ? masked_gram(n1, n2, O, out, a.delta, b.delta, out, t.same, T(1), D.data(), r2) : -1.0;
      if (done >= 0)
        *t.flops += done;
      else
        gram_of(a.delta, r1, b.delta, r2, out, out, t.same, T(1), D.data(), t.flops);
      *t.flops += (bias ? 4.0 : 2.0) * static_cast<double>(r1 * r2);
      parallel_rows(n1, n2, t.same, static_cast<double>(O * O * 2), [&](int64_t i) {
        for (int64_t o = 0; o < O; ++o) {
          const T* d = D.data() + (i * O + o) * r2;
          for (int64_t j = 0; j < columns(i); ++j) {
            const T s = A(i, j);
            T* wij = w + ((i * n2 + j) * O + o) * O;
            T* bij = bias ? bias + ((i * n2 + j) * O + o) * O : nullptr;
            for (int64_t p = 0; p < O; ++p) {
              // Θ(x_i, x_i)'s (o, o') block reads one triangle of D, so it is symmetric too
              const T dv = t.same && j == i && p > o ? D(i * O + p, i * O + o) : d[j * O + p];
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
      break;
    }
    case Mode::trace: {
      // Σ_o ⟨δ_o, δ'_o⟩: a sample's O rows are contiguous, so this is one Gram of (n, O·out) rows
      auto D = view(t.workspace->get(1, n1 * n2), n1, n2);
      gram_of(a.delta, n1, b.delta, n2, O * out, O * out, t.same, T(1), D.data(), t.flops);
      *t.flops += (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2);
      parallel_rows(n1, n2, t.same, 2.0, [&](int64_t i) {
        T* wi = w + i * n2;
        const T* ai = A.data() + i * n2;
        const T* di = D.data() + i * n2;
        if (bias == w) {
          for (int64_t j = 0; j < columns(i); ++j) wi[j] += ai[j] * di[j] + cb2 * di[j];
          return;
        }
        for (int64_t j = 0; j < columns(i); ++j) wi[j] += ai[j] * di[j];
        if (bias)
          for (int64_t j = 0; j < columns(i); ++j) bias[i * n2 + j] += cb2 * di[j];
      });
      break;
    }
    case Mode::diagonal: {
      // one Gram per output over rows o, O + o, 2O + o, ...
      auto D = view(t.workspace->get(1, n1 * n2), n1, n2);
      for (int64_t o = 0; o < O; ++o) {
        gram_of(a.delta + o * out, n1, b.delta + o * out, n2, out, O * out, t.same, T(1), D.data(), t.flops);
        parallel_rows(n1, n2, t.same, 2.0, [&](int64_t i) {
          for (int64_t j = 0; j < columns(i); ++j) {
            if (bias == w) {
              w[(i * n2 + j) * O + o] += A(i, j) * D(i, j) + cb2 * D(i, j);
            } else {
              w[(i * n2 + j) * O + o] += A(i, j) * D(i, j);
              if (bias) bias[(i * n2 + j) * O + o] += cb2 * D(i, j);
            }
          }
        });
      }
      *t.flops += (bias ? 4.0 : 2.0) * static_cast<double>(n1 * n2 * O);
      break;
    }
  }
}

template <class T>
int LinearLayer<T>::record(autograd::Tape<T>& tape, int in, int first_slot) const {
  const int w = tape.parameter(weight_, first_slot);
  int y = tape.matmul(w, in, out_features_, in_features_, 1);
  if (cw_ != 1.0) y = tape.scale(y, T(cw_));
  if (has_bias_) {
    int b = tape.parameter(bias_, first_slot + 1);
    if (cb_ != 1.0) b = tape.scale(b, T(cb_));
    y = tape.add(y, b);
  }
  return y;
}

template class LinearLayer<float>;
template class LinearLayer<double>;

}  // namespace xntk::detail
