// xntk::Sequential<float> and <double> as _xntk.Model32 and _xntk.Model64: construction from the model JSON,
// shapes and names, parameters in and out, weights files and the forward pass. The Python class
// xntk.Sequential (python/xntk/_sequential.py) wraps one of them.

#include <pybind11/stl.h>

#include <cmath>
#include <map>
#include <xntk/io.hpp>
#include <xntk/model.hpp>

#include "arrays.hpp"
#include "bindings.hpp"

namespace xntk::python {
namespace {

/// Sets every parameter, and any buffer given (BatchNorm's running statistics), from (name, array) pairs, with the
/// rules of xntk::load_weights: every parameter present with its exact shape and finite values, buffers optional,
/// no other name; on error the model is left unchanged. `source` names the pairs in messages ("state_dict").
template <class T>
void set_parameters(Sequential<T>& net, const std::vector<std::pair<std::string, py::array>>& values,
                    const std::string& source) {
  const auto params = net.named_parameters(), buffers = net.named_buffers();
  std::string expected, expected_buffers;
  for (const auto& p : params) expected += (expected.empty() ? "" : ", ") + p.name;
  for (const auto& p : buffers) expected_buffers += (expected_buffers.empty() ? "" : ", ") + p.name;
  // parameters first, then buffers, in one index
  std::vector<NamedParameter<T>> all = params;
  all.insert(all.end(), buffers.begin(), buffers.end());
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < all.size(); ++i) index[all[i].name] = i;
  std::vector<const py::array*> given(all.size(), nullptr);
  for (const auto& [name, a] : values) {
    const auto it = index.find(name);
    if (it == index.end())
      throw Error(source + ": unexpected tensor \"" + name + "\"; the model's parameters are " +
                  (expected.empty() ? "none" : expected) +
                  (expected_buffers.empty() ? "" : " and its buffers " + expected_buffers));
    const TensorRef<T> v = view<T>(a, source + "[\"" + name + "\"]");
    const Shape& want = all[it->second].tensor->shape();
    if (v.shape() != want)
      throw Error(source + ": tensor \"" + name + "\" has shape " + to_string(v.shape()) + ", expected " +
                  to_string(want));
    for (int64_t e = 0; e < v.size(); ++e)
      if (!std::isfinite(static_cast<double>(v.data()[e])))
        throw Error(source + ": tensor \"" + name + "\" holds a non-finite value at flat index " + std::to_string(e) +
                    "; expected finite " + (it->second < params.size() ? "weights" : "values"));
    given[it->second] = &a;
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (!given[i])
      throw Error(source + ": missing tensor \"" + params[i].name + "\" of shape " +
                  to_string(params[i].tensor->shape()) + " (the model's parameters are " + expected + ")");
  for (size_t i = 0; i < all.size(); ++i) {
    if (!given[i]) continue;  // a buffer not given keeps its value
    const TensorRef<T> v = view<T>(*given[i], source);
    std::copy(v.data(), v.data() + v.size(), all[i].tensor->data());
  }
}

template <class T>
void bind_model(py::module_& m, const char* cls) {
  using S = Sequential<T>;
  py::class_<S>(m, cls)
      .def(py::init([](const std::string& json, const std::string& source, uint64_t seed) {
             return S(parse_model_spec(json, source), seed);
           }),
           py::arg("json"), py::arg("source"), py::arg("seed"))
      .def_static(
          "from_file", [](const std::string& path, uint64_t seed) { return S(load_model_spec(path), seed); },
          py::arg("path"), py::arg("seed"))
      .def("to_json", [](const S& s) { return model_spec_to_json(s.spec()); })
      .def(
          "save_json", [](const S& s, const std::string& path) { save_model_spec(path, s.spec()); }, py::arg("path"))
      .def_property_readonly("dtype", [](const S&) { return dtype_name<T>(); })
      .def_property_readonly("input_shape", [](const S& s) { return shape_tuple(s.input_shape()); })
      .def_property_readonly("output_shape", [](const S& s) { return shape_tuple(s.output_shape()); })
      .def_property_readonly("num_parameters", &S::num_parameters)
      .def("parameter_names",
           [](const S& s) {
             std::vector<std::string> names;
             for (const auto& p : s.named_parameters()) names.push_back(p.name);
             return names;
           })
      .def("component_names", &S::component_names)
      .def("state_dict",
           [](const S& s) {
             std::vector<std::pair<std::string, py::array_t<T>>> out;
             for (const auto& p : s.named_parameters()) out.emplace_back(p.name, to_numpy(Tensor<T>(*p.tensor)));
             return out;
           })
      .def("set_parameters", &set_parameters<T>, py::arg("values"), py::arg("source"))
      .def(
          "load_weights", [](S& s, const std::string& path) { load_weights(s, path); }, py::arg("path"))
      .def(
          "save_weights", [](const S& s, const std::string& path) { save_weights(s, path); }, py::arg("path"))
      .def(
          "forward",
          [](const S& s, const py::array& x) {
            const TensorRef<T> v = view<T>(x, "x");
            Tensor<T> y;
            {
              py::gil_scoped_release release;
              y = s.forward(v);
            }
            return to_numpy(std::move(y));
          },
          py::arg("x"))
      .def("copy", &S::copy)
      .def("as_float32", &cast_model<float, T>)
      .def("as_float64", &cast_model<double, T>);
}

}  // namespace

void bind_models(py::module_& m) {
  bind_model<float>(m, "Model32");
  bind_model<double>(m, "Model64");
}

}  // namespace xntk::python
