#pragma once
// The components of a normalisation's affine map y = γ ⊙ x̂ + β (BatchNorm, LayerNorm), shared by both: each
// sample's output is an (outer × inner) matrix, γ and β act along one of its axes, and
//   Θ_γ[o,o'] = ⟨u_o, u'_o'⟩ with u_o = the sums of δ_o ⊙ x̂ along the other axis,  Θ_β likewise with v_o = the sums
//   of δ_o,
// feature Grams of rows as wide as γ.

#include <functional>

#include "nn/layer.hpp"

namespace xntk::nn {

/// Adds Θ_γ into t.weight and, with `shift`, Θ_β into t.bias (which may be t.weight: the total alone). `over_inner`:
/// γ runs along the outer axis and the sums go along each row (BatchNorm: channels × positions); otherwise γ runs
/// along the inner axis and the sums go down each column (LayerNorm: groups × normalised values). `xhat` gives x̂ of
/// a side's samples.
template <class T>
void affine_components(Context<T>& cx, const Side<T>& a, const Side<T>& b, const ComponentTarget<T>& t, bool over_inner,
                       int64_t outer, int64_t inner, bool shift, const std::function<Buffer<T>(const Side<T>&)>& xhat) {
  const int64_t O = t.outputs, width = over_inner ? outer : inner;
  Delta<T> identity;
  const Delta<T>* da = a.delta;
  if (da->kind == DeltaKind::identity) {  // the normalisation at the model's output: δ_o = e_o written out
    identity = materialized(cx, Delta<T>{}, O);
    da = &identity;
  }
  const Delta<T>* db = b.delta->kind == DeltaKind::identity ? da : b.delta;
  auto sums = [&](const Side<T>& s, const Delta<T>& d, bool weighted) {
    Buffer<T> r = cx.buffer();
    r.resize(s.batch * O * width);
    const bool shared = d.kind != DeltaKind::per_sample;
    if (weighted) {
      const Buffer<T> x = xhat(s);
      cx.count(cx.ops().weighted_sums(over_inner, s.batch, O, outer, inner, d.data(), shared, x.data(), r.data()));
    } else if (shared) {  // the same sums for every sample: formed once
      Buffer<T> one = cx.buffer();
      one.resize(O * width);
      cx.count(cx.ops().weighted_sums(over_inner, 1, O, outer, inner, d.data(), true, nullptr, one.data()));
      cx.ops().repeat(one.data(), O * width, s.batch, r.data());
    } else {
      cx.count(cx.ops().weighted_sums(over_inner, s.batch, O, outer, inner, d.data(), false, nullptr, r.data()));
    }
    return r;
  };
  for (const bool weighted : {true, false}) {
    T* dst = weighted ? t.weight : shift ? t.bias : nullptr;
    if (!dst) continue;
    const Buffer<T> ua = sums(a, *da, weighted);
    const Buffer<T> ub = t.same ? Buffer<T>() : sums(b, *db, weighted);
    cx.count(cx.ops().feature_gram(t.mode, O, ua.data(), 0, a.batch, t.same ? ua.data() : ub.data(), 0, b.batch, width,
                                   T(1), t.same, b.batch, dst));
  }
}

}  // namespace xntk::nn
