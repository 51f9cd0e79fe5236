// _xntk: the compiled part of the xntk Python package. The public API is the pure-Python layer
// (python/xntk/), which converts inputs and checks arguments before calling in here.

#include <pybind11/pybind11.h>

#include <xntk/error.hpp>

#include "bindings.hpp"

PYBIND11_MODULE(_xntk, m) {
  m.doc() = "xntk's C++ core (use the xntk package, not this module)";
  // every bad input the core reports; a ValueError, so that code catching those catches it too
  pybind11::register_exception<xntk::Error>(m, "Error", PyExc_ValueError);
  xntk::python::bind_models(m);
  xntk::python::bind_kernels(m);
  xntk::python::bind_files(m);
  xntk::python::bind_analysis(m);
  xntk::python::bind_dynamics(m);
#ifdef XNTK_VERSION
  m.attr("__version__") = XNTK_VERSION;
#endif
}
