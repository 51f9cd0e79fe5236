#include "layers/flatten.hpp"

#include <algorithm>

namespace xntk::detail {

template <class T>
void FlattenLayer<T>::forward(const T* in, T* out, int64_t batch) const {
  std::copy(in, in + batch * this->in_size(), out);
}

template <class T>
void FlattenLayer<T>::backward(const T*, const T*, const T* dout, T* din, int64_t batch, int64_t streams) const {
  if (din != dout) std::copy(dout, dout + batch * streams * this->in_size(), din);
}

template <class T>
int FlattenLayer<T>::record(autograd::Tape<T>&, int in, int) const {
  return in;
}

template class FlattenLayer<float>;
template class FlattenLayer<double>;

}  // namespace xntk::detail
