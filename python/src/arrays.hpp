#pragma once
// NumPy arrays and xntk tensors: inputs are read in place through a TensorRef (the Python layer has already
// converted anything that is not a C-contiguous, aligned array of the model's dtype), and results are handed
// to NumPy without a copy, the array owning the Tensor through a capsule.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>
#include <xntk/error.hpp>
#include <xntk/tensor.hpp>

namespace xntk::python {

namespace py = pybind11;

/// "float32" / "float64".
template <class T>
constexpr const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// A view of `a`'s data, without a copy. xntk::Error naming `what` unless `a` is a C-contiguous, aligned
/// array of T (the Python layer converts everything else before calling).
template <class T>
TensorRef<T> view(const py::array& a, const std::string& what) {
  constexpr auto aligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (!py::isinstance<py::array_t<T, py::array::c_style>>(a) || !(a.flags() & aligned))
    throw Error(what + ": expected a C-contiguous, aligned " + dtype_name<T>() + " array, got dtype " +
                py::str(a.dtype()).cast<std::string>());
  Shape shape(a.shape(), a.shape() + a.ndim());
  return TensorRef<T>(static_cast<const T*>(a.data()), std::move(shape));
}

/// A NumPy array taking over `t`'s memory (no copy): the array's base is a capsule that deletes the tensor.
template <class T>
py::array_t<T> to_numpy(Tensor<T>&& t) {
  auto* owner = new Tensor<T>(std::move(t));
  py::capsule base(owner, [](void* p) { delete static_cast<Tensor<T>*>(p); });
  std::vector<py::ssize_t> shape(owner->shape().begin(), owner->shape().end());
  return py::array_t<T>(std::move(shape), owner->data(), base);
}

/// A copy of `a` (a C-contiguous array of T, as `view` checks) as an owning tensor.
template <class T>
Tensor<T> to_tensor(const py::array& a, const std::string& what) {
  const TensorRef<T> v = view<T>(a, what);
  return Tensor<T>(v.shape(), std::vector<T>(v.data(), v.data() + v.size()));
}

/// A Python tuple of a shape.
inline py::tuple shape_tuple(const Shape& s) {
  py::tuple t(s.size());
  for (size_t i = 0; i < s.size(); ++i) t[i] = s[i];
  return t;
}

}  // namespace xntk::python
