#include "xntk/tensor.hpp"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "checked.hpp"
#include "ntk/plan.hpp"

namespace xntk {

namespace engine {

double available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024.0;
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
}

}  // namespace engine

namespace {

std::atomic<double> tensor_byte_limit{0};

/// TooLarge if `count` values of `size` bytes exceed the limit (see set_tensor_byte_limit).
void check_tensor_bytes(const Shape& shape, int64_t count, size_t size) {
  const double bytes = static_cast<double>(count) * static_cast<double>(size), limit = tensor_byte_limit.load();
  if (limit > 0 ? bytes <= limit : bytes < 256.0 * (1 << 20)) return;
  const double avail = limit > 0 ? limit : 0.9 * engine::available_bytes();
  if (bytes <= avail) return;
  std::ostringstream s;
  s.precision(3);
  s << "a tensor of shape " << to_string(shape) << " needs " << bytes / 1e9 << " GB, more than the " << avail / 1e9
    << " GB of memory " << (limit > 0 ? "allowed" : "available");
  throw detail::TooLarge(s.str());
}

}  // namespace

void detail::set_tensor_byte_limit(double bytes) { tensor_byte_limit.store(bytes); }

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    int64_t r;
    if (__builtin_mul_overflow(n, d, &r))
      throw Error("the number of elements of shape " + to_string(shape) + " overflows 64-bit integers");
    n = r;
  }
  return n;
}

std::string to_string(const Shape& shape) {
  // shapes come from files: a message about a rank-10000 shape stays one short line
  constexpr size_t kShown = 8, kMaxFull = 16;
  std::ostringstream s;
  s << '(';
  if (shape.size() <= kMaxFull) {
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    if (shape.size() == 1) s << ',';
  } else {
    for (size_t i = 0; i < kShown; ++i) s << shape[i] << ", ";
    s << "..., " << shape.back() << "; " << shape.size() << " dimensions";
  }
  s << ')';
  return s.str();
}

template <class T>
Tensor<T>::Tensor(Shape shape, T fill) : shape_(std::move(shape)) {
  for (int64_t d : shape_)
    if (d < 0) throw Error("Tensor: negative dimension in shape " + to_string(shape_));
  const int64_t count = numel(shape_);
  check_tensor_bytes(shape_, count, sizeof(T));
  data_.assign(static_cast<size_t>(count), fill);
}

template <class T>
Tensor<T>::Tensor(Shape shape, std::vector<T> data) : shape_(std::move(shape)), data_(std::move(data)) {
  for (int64_t d : shape_)
    if (d < 0) throw Error("Tensor: negative dimension in shape " + to_string(shape_));
  if (numel(shape_) != static_cast<int64_t>(data_.size()))
    throw Error("Tensor: shape " + to_string(shape_) + " needs " + std::to_string(numel(shape_)) + " values, got " +
                std::to_string(data_.size()));
}

template <class T>
Tensor<T> Tensor<T>::reshaped(Shape shape) const {
  if (numel(shape) != size())
    throw Error("Tensor::reshaped: cannot view " + to_string(shape_) + " as " + to_string(shape));
  return Tensor(std::move(shape), data_);
}

template <class T>
int64_t Tensor<T>::offset(std::initializer_list<int64_t> idx) const {
  if (idx.size() != shape_.size())
    throw Error("Tensor: " + std::to_string(idx.size()) + " indices for a tensor of rank " +
                std::to_string(shape_.size()));
  int64_t off = 0;
  size_t k = 0;
  for (int64_t i : idx) {
    if (i < 0 || i >= shape_[k])
      throw Error("Tensor: index " + std::to_string(i) + " out of range for axis " + std::to_string(k) + " of shape " +
                  to_string(shape_));
    off = off * shape_[k++] + i;
  }
  return off;
}

template class Tensor<float>;
template class Tensor<double>;

}  // namespace xntk
