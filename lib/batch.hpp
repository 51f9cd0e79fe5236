#pragma once
// Checks shared by the kernel drivers and forward(): a batch must be (N, input...) with N ≥ 1.

#include <algorithm>
#include <cmath>

#include "backend/parallel.hpp"
#include "xntk/kernel.hpp"
#include "xntk/model.hpp"

namespace xntk::detail {

/// Number of samples of x; xntk::Error naming `what` if x does not fit the model's input (xntk::check_batch).
template <class T>
int64_t check_batch(const Sequential<T>& model, TensorArg<T> x, const std::string& what) {
  return xntk::check_batch(model.input_shape(), x.shape(), what);
}

/// Whether d[0..n) are all finite: one pass without an early exit, so that it vectorises.
template <class T>
bool all_finite(const T* d, int64_t n) {
  bool good = true;
  for (int64_t i = 0; i < n; ++i) good &= std::isfinite(d[i]);
  return good;
}

/// xntk::Error naming `what` at its first NaN or infinite value.
template <class T>
void check_finite(TensorRef<T> t, const std::string& what) {
  // all_finite first (TensorRef::size() is a product over the shape: hoisted), then the first bad value's
  // index for the message
  const T* d = t.data();
  const int64_t n = t.size();
  if (all_finite(d, n)) return;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(d[i]))
      throw Error(what + " holds " + (std::isnan(d[i]) ? "NaN" : "Inf") + " at flat index " + std::to_string(i) +
                  "; expected finite values");
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
