#pragma once
// The parts of the _xntk module, each defined in its own file and added to the module by module.cpp.

#include <pybind11/pybind11.h>

#include <xntk/model.hpp>

namespace xntk::python {

void bind_models(pybind11::module_& m);    // model.cpp
void bind_kernels(pybind11::module_& m);   // kernel.cpp
void bind_files(pybind11::module_& m);     // files.cpp
void bind_analysis(pybind11::module_& m);  // analysis.cpp
void bind_dynamics(pybind11::module_& m);  // dynamics.cpp

/// A model of another scalar type (or a copy, U = T) with the same architecture and parameters (rounded to U).
template <class U, class T>
Sequential<U> cast_model(const Sequential<T>& net) {
  Sequential<U> out(net.spec(), 0);
  const auto from = net.named_parameters();
  const auto to = out.named_parameters();
  for (size_t i = 0; i < from.size(); ++i) *to[i].tensor = from[i].tensor->template cast<U>();
  return out;
}

}  // namespace xntk::python
