#include "nn/residual.hpp"

namespace xntk::nn {

template <class T>
Delta<T> sum_deltas(Context<T>& cx, Delta<T>&& d1, Delta<T>&& d2, int64_t streams, int64_t width, int64_t batch) {
  if (d1.kind == DeltaKind::per_sample || d2.kind == DeltaKind::per_sample) {
    d1 = expanded(cx, std::move(d1), streams, width, batch);
    d2 = expanded(cx, std::move(d2), streams, width, batch);
  } else {  // both the same rows for every sample: the sum stays shared
    d1 = materialized(cx, std::move(d1), streams);
    d2 = materialized(cx, std::move(d2), streams);
  }
  const int64_t n = (d1.kind == DeltaKind::per_sample ? batch : 1) * streams * width;
  cx.count(cx.ops().add(n, d2.data(), d1.rows.data()));
  return std::move(d1);
}

template <class T>
ResidualLayer<T>::ResidualLayer(std::string path, Shape in, std::unique_ptr<SequentialLayer<T>> body,
                                std::unique_ptr<SequentialLayer<T>> shortcut)
    : Layer<T>(in, body->out_shape(), std::move(path)), body_(std::move(body)), shortcut_(std::move(shortcut)) {
  const Shape& other = shortcut_ ? shortcut_->out_shape() : this->in_;
  if (other != this->out_)
    throw Error("layer " + this->path_ + " (residual): the body gives " + to_string(this->out_) + " but the " +
                (shortcut_ ? "shortcut gives " : "identity shortcut passes the input ") + to_string(other) +
                "; expected the same shape from both branches");
}

template <class T>
void ResidualLayer<T>::for_each(const std::function<void(const Layer<T>&)>& f) const {
  f(*this);
  body_->for_each(f);
  if (shortcut_) shortcut_->for_each(f);
}

template <class T>
const T* ResidualLayer<T>::forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const {
  const int64_t n = batch * this->out_size();
  const T* b = body_->forward(cx, values, in, batch);
  const T* s = shortcut_ ? shortcut_->forward(cx, values, in, batch) : in;
  T* out = values.allocate(this->id(), n);
  cx.ops().copy(n, b, out);
  cx.count(cx.ops().add(n, s, out));
  if (!values.keep()) {
    values.release(body_->id());
    if (shortcut_) values.release(shortcut_->id());
  }
  return out;
}

template <class T>
void ResidualLayer<T>::sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const {
  // δ_y reaches both branches: the shortcut gets a copy, the body the original (the identity shortcut passes
  // it on unchanged); each branch's own layers then add their components on the way down
  const int64_t width = this->out_size();
  const bool shortcut_runs = shortcut_ && (need_input || shortcut_->has_parameters());
  std::array<Delta<T>, 2> branch;
  for (int l = 0; l < s.count; ++l) {
    auto& lane = s.lanes[static_cast<size_t>(l)];
    if (shortcut_runs || (!shortcut_ && need_input)) {
      const int64_t n = (lane.delta.kind == DeltaKind::per_sample ? lane.batch : 1) * s.streams * width;
      branch[static_cast<size_t>(l)] = copied(s.cx, lane.delta, n);
    }
  }
  body_->sweep(s, in, gate, need_input);
  for (int l = 0; l < s.count; ++l) std::swap(branch[static_cast<size_t>(l)], s.lanes[static_cast<size_t>(l)].delta);
  // now branch[l] holds the body's input deltas (when needed) and the lanes the shortcut's output deltas
  if (shortcut_runs) shortcut_->sweep(s, in, gate, need_input);
  if (need_input)
    for (int l = 0; l < s.count; ++l) {
      auto& lane = s.lanes[static_cast<size_t>(l)];
      lane.delta = sum_deltas(s.cx, std::move(branch[static_cast<size_t>(l)]), std::move(lane.delta), s.streams,
                              this->in_size(), lane.batch);
    }
  for (int l = 0; l < s.count; ++l) s.lanes[static_cast<size_t>(l)].values->release(this->id());
}

template <class T>
const T* ResidualLayer<T>::tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in,
                                   const T* din, int64_t batch, const Tangents<T>& dtheta) const {
  const T* b = body_->tangent(cx, primal, tangent, in, din, batch, dtheta);
  const T* s = shortcut_ ? shortcut_->tangent(cx, primal, tangent, in, din, batch, dtheta) : din;
  if (!b && !s) return nullptr;
  const int64_t n = batch * this->out_size();
  T* out = tangent.allocate(this->id(), n);
  if (b)
    cx.ops().copy(n, b, out);
  else
    cx.ops().fill(n, T(0), out);
  if (s) cx.count(cx.ops().add(n, s, out));
  return out;
}

template class ResidualLayer<float>;
template class ResidualLayer<double>;
template Delta<float> sum_deltas(Context<float>&, Delta<float>&&, Delta<float>&&, int64_t, int64_t, int64_t);
template Delta<double> sum_deltas(Context<double>&, Delta<double>&&, Delta<double>&&, int64_t, int64_t, int64_t);

}  // namespace xntk::nn
