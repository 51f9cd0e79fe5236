#pragma once
// Checks shared by the kernel drivers and forward(): a batch must be (N, input...) with N ≥ 1.

#include <algorithm>

#include "backend/parallel.hpp"
#include "xntk/kernel.hpp"
#include "xntk/model.hpp"

namespace xntk::detail {

inline std::string batch_shape(const Shape& in) {
  Shape s{0};
  s.insert(s.end(), in.begin(), in.end());
  std::string r = to_string(s);
  return "(N" + r.substr(2);
}

/// Number of samples of x; xntk::Error naming `what` if x does not fit the model's input.
template <class T>
int64_t check_batch(const Sequential<T>& model, TensorArg<T> x, const std::string& what) {
  const Shape& in = model.input_shape();
  if (x.rank() != static_cast<int>(in.size()) + 1 || !std::equal(in.begin(), in.end(), x.shape().begin() + 1))
    throw Error(what + " has shape " + to_string(x.shape()) + ", expected " + batch_shape(in) +
                " for the model's input " + to_string(in));
  if (x.dim(0) < 1) throw Error(what + " has no samples");
  return x.dim(0);
}

/// Shape of a kernel of n × m samples with O outputs in the given mode.
inline Shape kernel_shape(int64_t n, int64_t m, int64_t outputs, Mode mode) {
  switch (mode) {
    case Mode::full: return {n, m, outputs, outputs};
    case Mode::trace: return {n, m};
    case Mode::diagonal: return {n, m, outputs};
  }
  return {};
}

/// Values per sample pair in the given mode.
inline int64_t per_pair(int64_t outputs, Mode mode) {
  return mode == Mode::full ? outputs * outputs : mode == Mode::diagonal ? outputs : 1;
}

using backend::ThreadScope;

}  // namespace xntk::detail
