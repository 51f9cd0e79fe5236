// safetensors files from Python: read into NumPy arrays, written from them (xntk's validating reader and
// atomic writer).

#include <pybind11/stl.h>

#include <map>
#include <xntk/io.hpp>

#include "arrays.hpp"
#include "bindings.hpp"

namespace xntk::python {
namespace {

template <class T>
py::tuple read(const std::string& path) {
  std::map<std::string, std::string> metadata;
  std::vector<NamedTensor<T>> tensors;
  {
    py::gil_scoped_release release;
    tensors = read_safetensors<T>(path, &metadata);
  }
  py::list out;
  for (auto& t : tensors) out.append(py::make_tuple(t.name, to_numpy(std::move(t.tensor))));
  return py::make_tuple(out, metadata);
}

template <class T>
void write(const std::string& path, const std::vector<std::pair<std::string, py::array>>& values,
           const std::map<std::string, std::string>& metadata) {
  std::vector<NamedTensor<T>> tensors;
  for (const auto& [name, a] : values) tensors.push_back({name, to_tensor<T>(a, "tensors[\"" + name + "\"]")});
  py::gil_scoped_release release;
  write_safetensors(path, tensors, metadata);
}

}  // namespace

void bind_files(py::module_& m) {
  m.def("read_safetensors_float32", &read<float>, py::arg("path"));
  m.def("read_safetensors_float64", &read<double>, py::arg("path"));
  m.def("write_safetensors_float32", &write<float>, py::arg("path"), py::arg("tensors"), py::arg("metadata"));
  m.def("write_safetensors_float64", &write<double>, py::arg("path"), py::arg("tensors"), py::arg("metadata"));
}

}  // namespace xntk::python
