#include "nn/sequential.hpp"

namespace xntk::nn {

template <class T>
SequentialLayer<T>::SequentialLayer(std::string path, Shape in, std::vector<std::unique_ptr<Layer<T>>> children)
    : Layer<T>(std::move(in), children.back()->out_shape(), std::move(path)), children_(std::move(children)) {
  first_with_parameters_ = static_cast<int>(children_.size());
  for (size_t i = 0; i < children_.size(); ++i)
    if (children_[i]->has_parameters()) {
      first_with_parameters_ = static_cast<int>(i);
      break;
    }
}

template <class T>
void SequentialLayer<T>::for_each(const std::function<void(const Layer<T>&)>& f) const {
  f(*this);
  for (const auto& c : children_) c->for_each(f);
}

template <class T>
const T* SequentialLayer<T>::forward(Context<T>& cx, Values<T>& values, const T* in, int64_t batch) const {
  const T* x = in;
  for (size_t i = 0; i < children_.size(); ++i) {
    x = children_[i]->forward(cx, values, x, batch);
    if (!values.keep() && i > 0) values.release(children_[i - 1]->id());
  }
  values.alias(this->id(), children_.back()->id());
  return x;
}

template <class T>
const T* SequentialLayer<T>::gate(const Values<T>& values, const T* in) const {
  // the layer that receives this block's output deltas is its last child
  const size_t n = children_.size();
  return children_[n - 1]->gate(values, n > 1 ? values.output(children_[n - 2]->id()) : in);
}

template <class T>
void SequentialLayer<T>::sweep(Sweep<T>& s, const Pointers<T>& in, const Pointers<T>& gate, bool need_input) const {
  // below the lowest child with parameters nothing is needed, unless the caller needs this block's input deltas
  const int first = need_input ? 0 : first_with_parameters_;
  auto input_of = [&](int i, int lane) -> const T* {
    if (lane >= s.count) return nullptr;
    return i == 0 ? in[static_cast<size_t>(lane)]
                  : s.lanes[static_cast<size_t>(lane)].values->output(children_[static_cast<size_t>(i - 1)]->id());
  };
  for (int i = static_cast<int>(children_.size()) - 1; i >= first; --i) {
    const Pointers<T> child_in{input_of(i, 0), input_of(i, 1)};
    // the gate of the layer below this child: the previous child, or the one below this block
    Pointers<T> child_gate = gate;
    if (i > 0)
      for (int l = 0; l < s.count; ++l)
        child_gate[static_cast<size_t>(l)] =
            children_[static_cast<size_t>(i - 1)]->gate(*s.lanes[static_cast<size_t>(l)].values, input_of(i - 1, l));
    children_[static_cast<size_t>(i)]->sweep(s, child_in, child_gate, need_input || i > first);
  }
}

template <class T>
const T* SequentialLayer<T>::tangent(Context<T>& cx, const Values<T>& primal, Values<T>& tangent, const T* in,
                                     const T* din, int64_t batch, const Tangents<T>& dtheta) const {
  const T* x = in;
  const T* dx = din;
  for (const auto& c : children_) {
    dx = c->tangent(cx, primal, tangent, x, dx, batch, dtheta);
    x = primal.output(c->id());
  }
  return dx;
}

template class SequentialLayer<float>;
template class SequentialLayer<double>;

}  // namespace xntk::nn
