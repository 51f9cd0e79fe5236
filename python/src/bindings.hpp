#pragma once
// The parts of the _xntk module, each defined in its own file and added to the module by module.cpp.

#include <pybind11/pybind11.h>

namespace xntk::python {

void bind_models(pybind11::module_& m);    // model.cpp
void bind_kernels(pybind11::module_& m);   // kernel.cpp
void bind_files(pybind11::module_& m);     // files.cpp
void bind_analysis(pybind11::module_& m);  // analysis.cpp

}  // namespace xntk::python
