#pragma once
/// \file tensor.hpp
/// A dense, row-major (C-order) tensor owning its data; samples are the first axis.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "xntk/error.hpp"

namespace xntk {

/// Tensor dimensions, outermost first (PyTorch / NumPy order).
using Shape = std::vector<int64_t>;

/// Number of elements of a shape (1 for the empty shape); xntk::Error if a product of its leading dimensions
/// overflows int64 (even where a later dimension is 0).
int64_t numel(const Shape& shape);

/// "(2, 3, 4)"; a shape of rank above 16 is abbreviated to its first 8 dimensions, its last one and its rank,
/// "(1, 1, 1, 1, 1, 1, 1, 1, ..., 1; 10000 dimensions)", so that a message about any shape stays short.
std::string to_string(const Shape& shape);

/// Dense row-major tensor of float or double (explicitly instantiated for both).
template <class T>
class Tensor {
 public:
  using value_type = T;

  Tensor() = default;
  /// A tensor of the given shape filled with `fill`.
  explicit Tensor(Shape shape, T fill = T(0));
  /// A tensor taking `data` (row-major); its size must equal numel(shape).
  Tensor(Shape shape, std::vector<T> data);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  T& operator[](int64_t i) { return data_[static_cast<size_t>(i)]; }
  const T& operator[](int64_t i) const { return data_[static_cast<size_t>(i)]; }

  /// Row-major element access; the number of indices must equal rank().
  template <class... I>
  T& operator()(I... idx) {
    return data_[static_cast<size_t>(offset({static_cast<int64_t>(idx)...}))];
  }
  template <class... I>
  const T& operator()(I... idx) const {
    return data_[static_cast<size_t>(offset({static_cast<int64_t>(idx)...}))];
  }

  /// The same data under another shape with the same number of elements.
  Tensor reshaped(Shape shape) const;
  /// Elementwise conversion to another scalar type.
  template <class U>
  Tensor<U> cast() const {
    return Tensor<U>(shape_, std::vector<U>(data_.begin(), data_.end()));
  }

 private:
  int64_t offset(std::initializer_list<int64_t> idx) const;

  Shape shape_;
  std::vector<T> data_;
};

extern template class Tensor<float>;
extern template class Tensor<double>;

/// A read-only view of row-major data owned elsewhere (a Tensor, a NumPy array, a torch tensor): what the
/// kernel paths and the forward pass read, so that data already in memory is never copied. The data must
/// outlive the call it is passed to.
template <class T>
class TensorRef {
 public:
  /// A view of a tensor (implicit: every function that reads a TensorRef takes a Tensor).
  TensorRef(const Tensor<T>& t) : data_(t.data()), shape_(t.shape()) {}  // NOLINT(google-explicit-constructor)
  /// A view of numel(shape) values at data; xntk::Error for a negative dimension.
  TensorRef(const T* data, Shape shape) : data_(data), shape_(std::move(shape)) {
    for (int64_t d : shape_)
      if (d < 0) throw Error("TensorRef: negative dimension in shape " + to_string(shape_));
  }
  const T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t size() const { return numel(shape_); }

 private:
  const T* data_;
  Shape shape_;
};

/// TensorRef<T> as a parameter of a function template whose T comes from another argument (the model), so
/// that a Tensor<T> converts to it.
template <class T>
using TensorArg = std::type_identity_t<TensorRef<T>>;

/// A tensor and its name (a parameter's state_dict key, a kernel component's, a safetensors entry's).
template <class T>
struct NamedTensor {
  std::string name;
  Tensor<T> tensor;
};

}  // namespace xntk
