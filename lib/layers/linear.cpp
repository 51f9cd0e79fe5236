#include "layers/linear.hpp"

#include <cmath>

#include "autograd/tape.hpp"
#include "cpu/backend.hpp"

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
  if (p == Parameterization::standard) {
    const double bound = 1.0 / std::sqrt(fan_in);
    for (int64_t i = 0; i < weight_.size(); ++i) weight_[i] = static_cast<T>(rng.uniform(-bound, bound));
    for (int64_t i = 0; i < bias_.size(); ++i) bias_[i] = static_cast<T>(rng.uniform(-bound, bound));
  } else {
    cw_ = spec.w_std / std::sqrt(fan_in);
    cb_ = spec.b_std;
    for (int64_t i = 0; i < weight_.size(); ++i) weight_[i] = static_cast<T>(rng.normal());
    for (int64_t i = 0; i < bias_.size(); ++i) bias_[i] = static_cast<T>(rng.normal());
  }
}

template <class T>
void LinearLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  auto y = view(out, batch, out_features_);
  y.noalias() = T(cw_) * (view(in, batch, in_features_) * view(weight_.data(), out_features_, in_features_).transpose());
  if (has_bias_) {
    const auto b = view(bias_.data(), 1, out_features_);
    for (int64_t i = 0; i < batch; ++i) y.row(i) += T(cb_) * b;
  }
}

template <class T>
void LinearLayer<T>::backward(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  view(din, batch * streams, in_features_).noalias() =
      T(cw_) * (view(dout, batch * streams, out_features_) * view(weight_.data(), out_features_, in_features_));
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
  // the inputs Gram and the deltas Gram (full mode is the largest)
  return static_cast<double>(sizeof(T)) * static_cast<double>(n1 * n2) * static_cast<double>(1 + outputs * outputs);
}

template <class T>
void LinearLayer<T>::components(const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t) const {
  const int64_t n1 = a.batch, n2 = b.batch, O = t.outputs, in = in_features_, out = out_features_;
  const T cw2 = T(cw_ * cw_), cb2 = T(cb_ * cb_);
  T* w = t.weight;
  T* bias = has_bias_ ? t.bias : nullptr;
  const double sym = t.same ? 0.5 : 1.0;  // a symmetric Gram costs half

  // ⟨a, a'⟩ for every sample pair
  RowMat<T> A(n1, n2);
  if (t.same)
    gram_lower(a.in, n1, in, A.data());
  else
    gram(a.in, n1, b.in, n2, in, A.data());
  *t.flops += sym * 2.0 * static_cast<double>(n1 * n2 * in);
  auto Aat = [&](int64_t i, int64_t j) { return t.same ? lower(A.data(), n2, i, j) : A(i, j); };

  if (a.delta == nullptr) {  // last layer: δ_o = e_o, so ⟨δ_o, δ'_o'⟩ = [o = o']
    parallel_for(n1, [&](int64_t i) {
      for (int64_t j = 0; j < n2; ++j) {
        const T s = Aat(i, j);
        const int64_t ij = i * n2 + j;
        switch (t.mode) {
          case Mode::full:
            for (int64_t o = 0; o < O; ++o) {
              w[(ij * O + o) * O + o] += cw2 * s;
              if (bias) bias[(ij * O + o) * O + o] += cb2;
            }
            break;
          case Mode::trace:
            w[ij] += cw2 * s * T(O);
            if (bias) bias[ij] += cb2 * T(O);
            break;
          case Mode::diagonal:
            for (int64_t o = 0; o < O; ++o) {
              w[ij * O + o] += cw2 * s;
              if (bias) bias[ij * O + o] += cb2;
            }
            break;
        }
      }
    });
    return;
  }

  switch (t.mode) {
    case Mode::full: {
      // D[(i,o), (j,o')] = ⟨δ_o(x_i), δ_o'(x'_j)⟩
      const int64_t r1 = n1 * O, r2 = n2 * O;
      RowMat<T> D(r1, r2);
      if (t.same)
        gram_lower(a.delta, r1, out, D.data());
      else
        gram(a.delta, r1, b.delta, r2, out, D.data());
      *t.flops += sym * 2.0 * static_cast<double>(r1 * r2 * out) + 3.0 * static_cast<double>(r1 * r2);
      parallel_for(n1, [&](int64_t i) {
        for (int64_t j = 0; j < n2; ++j) {
          const T s = cw2 * Aat(i, j);
          T* wij = w + (i * n2 + j) * O * O;
          T* bij = bias ? bias + (i * n2 + j) * O * O : nullptr;
          for (int64_t o = 0; o < O; ++o)
            for (int64_t p = 0; p < O; ++p) {
              const T d = t.same ? lower(D.data(), r2, i * O + o, j * O + p) : D(i * O + o, j * O + p);
              wij[o * O + p] += s * d;
              if (bij) bij[o * O + p] += cb2 * d;
            }
        }
      });
      break;
    }
    case Mode::trace: {
      // Σ_o ⟨δ_o, δ'_o⟩: the O rows of a sample are contiguous, so this is one Gram of (n, O·out) rows
      RowMat<T> D(n1, n2);
      if (t.same)
        gram_lower(a.delta, n1, O * out, D.data());
      else
        gram(a.delta, n1, b.delta, n2, O * out, D.data());
      *t.flops += sym * 2.0 * static_cast<double>(n1 * n2 * O * out) + 3.0 * static_cast<double>(n1 * n2);
      parallel_for(n1, [&](int64_t i) {
        for (int64_t j = 0; j < n2; ++j) {
          const T d = t.same ? lower(D.data(), n2, i, j) : D(i, j);
          w[i * n2 + j] += cw2 * Aat(i, j) * d;
          if (bias) bias[i * n2 + j] += cb2 * d;
        }
      });
      break;
    }
    case Mode::diagonal: {
      RowMat<T> D(n1, n2);
      for (int64_t o = 0; o < O; ++o) {
        // rows o, O + o, 2O + o, ...: one output's deltas across the batch
        if (t.same)
          gram_lower(a.delta + o * out, n1, out, D.data(), O * out);
        else
          gram(a.delta + o * out, n1, b.delta + o * out, n2, out, D.data(), O * out, O * out);
        parallel_for(n1, [&](int64_t i) {
          for (int64_t j = 0; j < n2; ++j) {
            const T d = t.same ? lower(D.data(), n2, i, j) : D(i, j);
            w[(i * n2 + j) * O + o] += cw2 * Aat(i, j) * d;
            if (bias) bias[(i * n2 + j) * O + o] += cb2 * d;
          }
        });
      }
      *t.flops += sym * 2.0 * static_cast<double>(n1 * n2 * O * out) + 3.0 * static_cast<double>(n1 * n2 * O);
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
