// The kernel paths from Python: xntk::ntk and xntk::autograd_ntk with the GIL released, a progress callback
// that also lets Ctrl-C stop the call, and the per-sample gradient and Jacobian functions.

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <optional>
#include <xntk/kernel.hpp>

#include "arrays.hpp"
#include "bindings.hpp"

namespace xntk::python {
namespace {

/// The data pointers of the last kernel call's inputs, as the C++ core received them (a test hook: it shows
/// that C-contiguous input of the model's dtype is read in place).
std::pair<uintptr_t, uintptr_t> last_inputs{0, 0};

Mode parse_mode(const std::string& mode) {
  if (mode == "full") return Mode::full;
  if (mode == "trace") return Mode::trace;
  if (mode == "diagonal") return Mode::diagonal;
  throw Error("mode: expected \"full\", \"trace\" or \"diagonal\", got \"" + mode + "\"");
}

/// KernelOptions::progress for a call made with the GIL released: at each step it takes the GIL, lets Python
/// run pending signal handlers (Ctrl-C raises KeyboardInterrupt there) and calls `callback(done, total)`
/// when one is given. A Python exception from either leaves as error_already_set, which unwinds the
/// computation (its memory is owned by RAII objects) and is raised again in the caller.
/// The callback is held as a handle (no reference counting, which would need the GIL wherever the core copies
/// the options); the caller's reference keeps it alive for the call.
std::function<void(int64_t, int64_t)> progress_hook(py::handle callback) {
  return [callback](int64_t done, int64_t total) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!callback.is_none()) callback(done, total);
  };
}

template <class T>
py::tuple kernel(const Sequential<T>& net, const py::array& x1, const std::optional<py::array>& x2,
                 const std::string& mode, bool components, const std::string& method, int threads, int64_t tile,
                 int64_t memory_budget, const py::object& progress) {
  if (method != "explicit" && method != "autograd")
    throw Error("method: expected \"explicit\" or \"autograd\", got \"" + method + "\"");
  KernelOptions opt{.mode = parse_mode(mode),
                    .components = components,
                    .tile = tile,
                    .memory_budget = memory_budget,
                    .threads = threads,
                    .progress = progress_hook(progress)};
  const TensorRef<T> a = view<T>(x1, "x1");
  std::optional<TensorRef<T>> b;
  if (x2) b = view<T>(*x2, "x2");
  last_inputs = {reinterpret_cast<uintptr_t>(a.data()), b ? reinterpret_cast<uintptr_t>(b->data()) : 0};
  Kernel<T> k;
  {
    py::gil_scoped_release release;
    if (method == "explicit")
      k = b ? ntk(net, a, *b, opt) : ntk(net, a, opt);
    else
      k = b ? autograd_ntk(net, a, *b, opt) : autograd_ntk(net, a, opt);
  }
  py::list comps;
  for (auto& c : k.components) comps.append(to_numpy(std::move(c)));
  py::list methods;
  for (const auto& mu : k.methods) methods.append(py::make_tuple(mu.layer, name(mu.method)));
  return py::make_tuple(to_numpy(std::move(k.total)), k.names, comps, methods, k.flops, k.tile);
}

template <class T>
std::vector<std::pair<std::string, py::array_t<T>>> gradient_of(const Sequential<T>& net, const py::array& x,
                                                                const py::array& cotangent) {
  const TensorRef<T> a = view<T>(x, "x"), c = view<T>(cotangent, "cotangent");
  std::vector<NamedTensor<T>> g;
  {
    py::gil_scoped_release release;
    g = gradient(net, a, c);
  }
  std::vector<std::pair<std::string, py::array_t<T>>> out;
  for (auto& t : g) out.emplace_back(t.name, to_numpy(std::move(t.tensor)));
  return out;
}

template <class T>
std::vector<py::array_t<T>> jacobians_of(const Sequential<T>& net, const py::array& x) {
  const TensorRef<T> a = view<T>(x, "x");
  std::vector<Tensor<T>> J;
  {
    py::gil_scoped_release release;
    J = jacobians(net, a);
  }
  std::vector<py::array_t<T>> out;
  for (auto& t : J) out.push_back(to_numpy(std::move(t)));
  return out;
}

template <class T>
void bind_kernel(py::module_& m) {
  m.def("ntk", &kernel<T>, py::arg("net"), py::arg("x1"), py::arg("x2"), py::arg("mode"), py::arg("components"),
        py::arg("method"), py::arg("threads"), py::arg("tile"), py::arg("memory_budget"), py::arg("progress"));
  m.def("gradient", &gradient_of<T>, py::arg("net"), py::arg("x"), py::arg("cotangent"));
  m.def("jacobians", &jacobians_of<T>, py::arg("net"), py::arg("x"));
}

}  // namespace

void bind_kernels(py::module_& m) {
  bind_kernel<float>(m);
  bind_kernel<double>(m);
  m.def("release_cached_memory", &release_cached_memory);
  m.def("blas_info", [] {
    const BlasInfo b = blas_info();
    py::dict d;
    d["library"] = b.library;
    d["core"] = b.core;
    d["better_coretype"] = b.better_coretype;
    return d;
  });
  m.def("_debug_last_inputs", [] { return last_inputs; });
}

}  // namespace xntk::python
