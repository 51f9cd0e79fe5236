// xntk::analyze from Python, as a dict with the fields and order of `xntk analyze --json` (lib/cli/analyze.cpp):
// JSON values only (None where the JSON has null), so that json.dumps gives the command's output.

#include <pybind11/stl.h>

#include <cmath>
#include <xntk/analysis.hpp>

#include "arrays.hpp"
#include "bindings.hpp"

namespace xntk::python {
namespace {

/// JSON has no infinity or NaN: those are null there, None here.
py::object number(double v) { return std::isfinite(v) ? py::object(py::float_(v)) : py::object(py::none()); }

void put_spectrum(py::dict& d, const Spectrum& s) {
  d["trace"] = s.trace;
  d["lambda_max"] = s.lambda_max;
  d["lambda_min"] = s.lambda_min;
  d["condition"] = s.positive_definite ? number(s.condition) : py::object(py::none());
  d["positive_definite"] = s.positive_definite;
  d["effective_rank"] = s.effective_rank;
  d["numerical_rank"] = s.numerical_rank;
  d["tolerance"] = s.tolerance;
  if (!s.note.empty()) d["note"] = s.note;
}

py::dict analyze_kernel(const py::array& kernel,
                        const std::optional<std::vector<std::pair<std::string, py::array>>>& components,
                        const py::object& file, const std::string& dtype) {
  Tensor<double> k = to_tensor<double>(kernel, "kernel");
  std::vector<NamedTensor<double>> comps;
  if (components)
    for (const auto& [name, a] : *components)
      comps.push_back({name, to_tensor<double>(a, "components[\"" + name + "\"]")});
  const double epsilon = dtype == "float32" ? 1.1920928955078125e-07 : 2.220446049250313e-16;
  Analysis a;
  {
    py::gil_scoped_release release;
    a = analyze(k, comps, {.epsilon = epsilon});
  }
  py::dict d;
  d["file"] = file;
  d["mode"] = name(a.mode);
  d["samples"] = a.samples;
  d["outputs"] = a.outputs;
  d["size"] = a.spectrum.eigenvalues.size();
  d["dtype"] = dtype;
  d["asymmetry"] = a.asymmetry;
  d["eigensolver"] = a.spectrum.eigensolver;
  put_spectrum(d, a.spectrum);
  d["eigenvalues"] = a.spectrum.eigenvalues;
  if (!a.per_output.empty()) {
    py::list per;
    for (const auto& s : a.per_output) {
      py::dict p;
      put_spectrum(p, s);
      per.append(p);
    }
    d["per_output"] = per;
  }
  if (components) {
    py::list cl;
    double shares = 0;
    for (const auto& c : a.components) {
      py::dict cd;
      cd["name"] = c.name;
      cd["share"] = number(c.share);
      put_spectrum(cd, c.spectrum);
      cl.append(cd);
      shares += c.share;
    }
    d["components"] = cl;
    d["shares_sum"] = number(shares);
  }
  return d;
}

}  // namespace

void bind_analysis(py::module_& m) {
  m.def("analyze", &analyze_kernel, py::arg("kernel"), py::arg("components"), py::arg("file"), py::arg("dtype"));
}

}  // namespace xntk::python
