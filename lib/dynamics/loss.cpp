// The losses as PyTorch defines them: nn.MSELoss() and nn.CrossEntropyLoss() (class labels or probabilities),
// their values and their derivatives with respect to the outputs.

#include <cmath>

#include "batch.hpp"
#include "quote.hpp"
#include "xntk/train.hpp"

namespace xntk {

const char* name(Loss loss) { return loss == Loss::mse ? "mse" : "cross_entropy"; }

template <class T>
LossValue<T> loss(Loss kind, TensorRef<T> f, TensorArg<T> y, const std::string& what) {
  LossValue<T> r;
  r.grad = Tensor<T>(f.shape());
  const int64_t n = f.rank() > 0 ? f.dim(0) : 0;
  if (n < 1) throw Error("loss: the outputs have no samples");
  if (f.size() == 0) throw Error("loss: the outputs " + to_string(f.shape()) + " have no values per sample");
  detail::check_finite(y, what);
  if (kind == Loss::mse) {
    if (y.shape() != f.shape())
      throw Error(what + " has shape " + to_string(y.shape()) + ", expected " + to_string(f.shape()) +
                  " (the outputs' shape, for mse)");
    const int64_t size = f.size();
    double sum = 0;
    for (int64_t i = 0; i < size; ++i) {
      const double d = static_cast<double>(f.data()[i]) - static_cast<double>(y.data()[i]);
      sum += d * d;
      r.grad[i] = static_cast<T>(2.0 * d / static_cast<double>(size));
    }
    r.value = sum / static_cast<double>(size);
    return r;
  }
  // cross-entropy over the classes of each sample: −Σ_c y_c log softmax(f)_c, averaged over samples
  if (f.rank() != 2)
    throw Error("loss: cross_entropy needs outputs of shape (N, classes), got " + to_string(f.shape()));
  const int64_t C = f.dim(1);
  const bool labels = y.rank() == 1;
  if (labels ? y.dim(0) != n : y.shape() != f.shape())
    throw Error(what + " has shape " + to_string(y.shape()) + ", expected (" + std::to_string(n) +
                ",) class labels or " + to_string(f.shape()) + " probabilities (for cross_entropy)");
  double total = 0;
  for (int64_t s = 0; s < n; ++s) {
    const T* fs = f.data() + s * C;
    double m = fs[0];
    for (int64_t c = 1; c < C; ++c) m = std::max(m, static_cast<double>(fs[c]));
    double z = 0;
    for (int64_t c = 0; c < C; ++c) z += std::exp(static_cast<double>(fs[c]) - m);
    const double lse = m + std::log(z);
    int64_t label = -1;
    if (labels) {
      const double v = static_cast<double>(y.data()[s]);
      if (!(v >= 0 && v < static_cast<double>(C) && v == std::floor(v)))
        throw Error(what + ": the label of sample " + std::to_string(s) + " is " + detail::number(v) +
                    ", expected an integer in [0, " + std::to_string(C) + ")");
      label = static_cast<int64_t>(v);
    }
    double mass = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double yc = labels ? (c == label ? 1.0 : 0.0) : static_cast<double>(y.data()[s * C + c]);
      mass += yc;
      total += yc * (lse - static_cast<double>(fs[c]));
    }
    for (int64_t c = 0; c < C; ++c) {
      const double yc = labels ? (c == label ? 1.0 : 0.0) : static_cast<double>(y.data()[s * C + c]);
      const double p = std::exp(static_cast<double>(fs[c]) - lse);
      r.grad[s * C + c] = static_cast<T>((p * mass - yc) / static_cast<double>(n));
    }
  }
  r.value = total / static_cast<double>(n);
  return r;
}

template LossValue<float> loss(Loss, TensorRef<float>, TensorArg<float>, const std::string&);
template LossValue<double> loss(Loss, TensorRef<double>, TensorArg<double>, const std::string&);

}  // namespace xntk
