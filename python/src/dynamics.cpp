// Training and kernel predictions from Python (include/xntk/train.hpp, dynamics.hpp): losses, jvp, the
// per-sample Jacobian, predict_steps / predict_time, Trainer and train. The options arrive as the Python
// dataclasses of python/xntk/_train.py (read by attribute); step logs leave as dicts with the StepLog's fields.

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <optional>
#include <xntk/dynamics.hpp>
#include <xntk/train.hpp>

#include "arrays.hpp"
#include "bindings.hpp"

namespace xntk::python {
namespace {

Loss parse_loss(const std::string& s) {
  if (s == "mse") return Loss::mse;
  if (s == "cross_entropy") return Loss::cross_entropy;
  throw Error("loss: expected \"mse\" or \"cross_entropy\", got \"" + s + "\"");
}

Mode parse_probe_mode(const std::string& s) {
  if (s == "full") return Mode::full;
  if (s == "trace") return Mode::trace;
  if (s == "diagonal") return Mode::diagonal;
  throw Error("probe_mode: expected \"full\", \"trace\" or \"diagonal\", got \"" + s + "\"");
}

template <class V>
V attr(const py::handle& o, const char* name) {
  return o.attr(name).cast<V>();
}

/// TrainOptions from the Python TrainOptions dataclass (its fields are checked for type there).
TrainOptions train_options(const py::handle& o) {
  TrainOptions t;
  t.loss = parse_loss(attr<std::string>(o, "loss"));
  const py::object opt = o.attr("optimizer");
  const auto kind = attr<std::string>(opt, "kind");
  if (kind != "sgd" && kind != "adam")
    throw Error("optimizer.kind: expected \"sgd\" or \"adam\", got \"" + kind + "\"");
  t.optimizer.kind = kind == "sgd" ? Optimizer::Kind::sgd : Optimizer::Kind::adam;
  t.optimizer.lr = attr<double>(opt, "lr");
  t.optimizer.weight_decay = attr<double>(opt, "weight_decay");
  t.optimizer.momentum = attr<double>(opt, "momentum");
  t.optimizer.dampening = attr<double>(opt, "dampening");
  t.optimizer.nesterov = attr<bool>(opt, "nesterov");
  t.optimizer.beta1 = attr<double>(opt, "beta1");
  t.optimizer.beta2 = attr<double>(opt, "beta2");
  t.optimizer.eps = attr<double>(opt, "eps");
  t.optimizer.amsgrad = attr<bool>(opt, "amsgrad");
  t.steps = attr<int64_t>(o, "steps");
  t.epochs = attr<int64_t>(o, "epochs");
  t.batch_size = attr<int64_t>(o, "batch_size");
  t.shuffle = attr<bool>(o, "shuffle");
  t.shuffle_seed = attr<uint64_t>(o, "shuffle_seed");
  const py::object tr = o.attr("transform");
  t.transform.alpha = attr<double>(tr, "alpha");
  t.transform.center = attr<bool>(tr, "center");
  t.linearized = attr<bool>(o, "linearized");
  t.log_every = attr<int64_t>(o, "log_every");
  t.ntk_every = attr<int64_t>(o, "ntk_every");
  t.probe_mode = parse_probe_mode(attr<std::string>(o, "probe_mode"));
  t.stop_on_nonfinite = attr<bool>(o, "stop_on_nonfinite");
  const py::object threads = o.attr("threads");
  t.threads = threads.is_none() ? 0 : threads.cast<int>();
  return t;
}

py::dict pairs_dict(const std::vector<std::pair<std::string, double>>& v) {
  py::dict d;
  for (const auto& [k, x] : v) d[py::str(k)] = x;
  return d;
}

/// A StepLog as a dict of its fields (None for what was not computed).
py::dict log_dict(const StepLog& l) {
  py::dict d;
  d["step"] = l.step;
  d["epoch"] = l.epoch;
  d["train_loss"] = l.train_loss;
  d["test_loss"] = l.test_loss ? py::object(py::float_(*l.test_loss)) : py::object(py::none());
  d["weight_change"] = l.weight_change;
  d["weight_change_per_tensor"] = pairs_dict(l.weight_change_per_tensor);
  if (l.probe) {
    const ProbeMetrics& p = *l.probe;
    py::dict q;
    q["trace"] = p.trace;
    q["lambda_max"] = p.lambda_max;
    q["lambda_min"] = p.lambda_min;
    q["condition"] = p.condition;
    q["effective_rank"] = p.effective_rank;
    q["component_share"] = pairs_dict(p.component_share);
    q["kernel_change"] = p.kernel_change;
    q["alignment_initial"] = p.alignment_initial;
    q["alignment_targets"] =
        p.alignment_targets ? py::object(py::float_(*p.alignment_targets)) : py::object(py::none());
    q["linearization_gap"] = p.linearization_gap;
    q["linearization_gap_relative"] = p.linearization_gap_relative;
    d["probe"] = q;
  } else {
    d["probe"] = py::none();
  }
  return d;
}

template <class T>
std::optional<TensorRef<T>> maybe_view(const std::optional<py::array>& a, const std::string& what) {
  if (!a) return std::nullopt;
  return view<T>(*a, what);
}

template <class T>
py::tuple loss_of(const std::string& kind, const py::array& outputs, const py::array& targets) {
  const Loss l = parse_loss(kind);
  const TensorRef<T> f = view<T>(outputs, "outputs"), y = view<T>(targets, "targets");
  LossValue<T> v;
  {
    py::gil_scoped_release release;
    v = loss(l, f, y, "targets");
  }
  return py::make_tuple(v.value, to_numpy(std::move(v.grad)));
}

template <class T>
py::array_t<T> jvp_of(const Sequential<T>& net, const py::array& x,
                      const std::vector<std::pair<std::string, py::array>>& tangents) {
  const TensorRef<T> a = view<T>(x, "x");
  std::vector<NamedTensor<T>> v;
  for (const auto& [name, t] : tangents) v.push_back({name, to_tensor<T>(t, "tangents[\"" + name + "\"]")});
  Tensor<T> out;
  {
    py::gil_scoped_release release;
    out = jvp(net, a, v);
  }
  return to_numpy(std::move(out));
}

template <class T>
py::array_t<T> jacobian_of(const Sequential<T>& net, const py::array& x) {
  const TensorRef<T> a = view<T>(x, "x");
  Tensor<T> J;
  {
    py::gil_scoped_release release;
    J = jacobian(net, a);
  }
  return to_numpy(std::move(J));
}

template <class T>
PredictInputs<T> predict_inputs(const py::array& k_train, const py::array& y, const std::optional<py::array>& k_test,
                                const std::optional<py::array>& f0_train, const std::optional<py::array>& f0_test) {
  return {.k_train = view<T>(k_train, "k_train"),
          .y = view<T>(y, "y"),
          .k_test = maybe_view<T>(k_test, "k_test"),
          .f0_train = maybe_view<T>(f0_train, "f0_train"),
          .f0_test = maybe_view<T>(f0_test, "f0_test")};
}

template <class T>
py::tuple predictions(Predictions<T>&& p, bool test) {
  py::object t = test ? py::object(to_numpy(std::move(p.test))) : py::object(py::none());
  return py::make_tuple(to_numpy(std::move(p.train)), t);
}

template <class T>
py::tuple predict_steps_of(const py::array& k_train, const py::array& y, const std::optional<py::array>& k_test,
                           const std::optional<py::array>& f0_train, const std::optional<py::array>& f0_test,
                           const std::string& loss, double lr, const std::vector<int64_t>& steps) {
  const PredictInputs<T> in = predict_inputs<T>(k_train, y, k_test, f0_train, f0_test);
  const Loss l = parse_loss(loss);
  Predictions<T> p;
  {
    py::gil_scoped_release release;
    p = predict_steps(in, l, lr, steps);
  }
  return predictions(std::move(p), k_test.has_value());
}

template <class T>
py::tuple predict_time_of(const py::array& k_train, const py::array& y, const std::optional<py::array>& k_test,
                          const std::optional<py::array>& f0_train, const std::optional<py::array>& f0_test, double lr,
                          const std::vector<double>& times, double ridge) {
  const PredictInputs<T> in = predict_inputs<T>(k_train, y, k_test, f0_train, f0_test);
  Predictions<T> p;
  {
    py::gil_scoped_release release;
    p = predict_time(in, lr, times, ridge);
  }
  return predictions(std::move(p), k_test.has_value());
}

/// on_log for a call made with the GIL released: takes the GIL, runs pending signal handlers (Ctrl-C raises
/// KeyboardInterrupt) and calls `callback(log dict)` when one is given; a Python exception unwinds the training.
std::function<void(const StepLog&)> log_hook(py::handle callback) {
  return [callback](const StepLog& l) {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (!callback.is_none()) callback(log_dict(l));
  };
}

template <class T>
py::dict train_of(Sequential<T>& net, const py::array& x, const py::array& y, const std::optional<py::array>& x_test,
                  const std::optional<py::array>& y_test, const std::optional<py::array>& probe,
                  const std::optional<py::array>& probe_y, const py::object& options, const py::object& on_log) {
  const TrainOptions opt = train_options(options);
  const TrainData<T> data{.x = view<T>(x, "x"),
                          .y = view<T>(y, "y"),
                          .x_test = maybe_view<T>(x_test, "x_test"),
                          .y_test = maybe_view<T>(y_test, "y_test"),
                          .probe = maybe_view<T>(probe, "probe"),
                          .probe_y = maybe_view<T>(probe_y, "probe_y")};
  StepLog last;
  {
    py::gil_scoped_release release;
    last = train(net, data, opt, log_hook(on_log));
  }
  return log_dict(last);
}

template <class T>
void bind_trainer(py::module_& m, const char* cls) {
  using Tr = Trainer<T>;
  auto outputs = [](auto method) {
    return [method](const Tr& t, const py::array& x) {
      const TensorRef<T> a = view<T>(x, "x");
      Tensor<T> y;
      {
        py::gil_scoped_release release;
        y = (t.*method)(a);
      }
      return to_numpy(std::move(y));
    };
  };
  py::class_<Tr>(m, cls)
      // the trainer keeps a reference to the model: the model lives at least as long
      .def(py::init([](Sequential<T>& net, const py::object& options) { return Tr(net, train_options(options)); }),
           py::arg("net"), py::arg("options"), py::keep_alive<1, 2>())
      .def("outputs", outputs(&Tr::outputs), py::arg("x"))
      .def("linearized_outputs", outputs(&Tr::linearized_outputs), py::arg("x"))
      .def("network_outputs", outputs(&Tr::network_outputs), py::arg("x"))
      .def(
          "step",
          [](Tr& t, const py::array& x, const py::array& y) {
            const TensorRef<T> a = view<T>(x, "x"), b = view<T>(y, "y");
            py::gil_scoped_release release;
            return t.step(a, b);
          },
          py::arg("x"), py::arg("y"))
      .def("weight_change",
           [](const Tr& t) {
             const auto [all, per] = t.weight_change();
             return py::make_tuple(all, pairs_dict(per));
           })
      .def(
          "kernel",
          [](const Tr& t, const py::array& probe, const std::string& mode) {
            const TensorRef<T> a = view<T>(probe, "probe");
            const Mode md = parse_probe_mode(mode);
            Kernel<T> k;
            {
              py::gil_scoped_release release;
              k = t.kernel(a, md);
            }
            py::list comps;
            for (auto& c : k.components) comps.append(to_numpy(std::move(c)));
            return py::make_tuple(to_numpy(std::move(k.total)), k.names, comps);
          },
          py::arg("probe"), py::arg("mode"))
      .def_property_readonly("steps", &Tr::steps)
      .def("initial", [](const Tr& t) { return cast_model<T>(t.initial()); });
}

template <class T>
void bind_typed(py::module_& m, const char* trainer) {
  m.def("jvp", &jvp_of<T>, py::arg("net"), py::arg("x"), py::arg("tangents"));
  m.def("jacobian", &jacobian_of<T>, py::arg("net"), py::arg("x"));
  m.def("train", &train_of<T>, py::arg("net"), py::arg("x"), py::arg("y"), py::arg("x_test"), py::arg("y_test"),
        py::arg("probe"), py::arg("probe_y"), py::arg("options"), py::arg("on_log"));
  bind_trainer<T>(m, trainer);
}

}  // namespace

void bind_dynamics(py::module_& m) {
  bind_typed<float>(m, "Trainer32");
  bind_typed<double>(m, "Trainer64");
  // losses and predictions by the arrays' dtype (named apart: an array argument would match either overload)
  m.def("loss_float32", &loss_of<float>, py::arg("kind"), py::arg("outputs"), py::arg("targets"));
  m.def("loss_float64", &loss_of<double>, py::arg("kind"), py::arg("outputs"), py::arg("targets"));
  m.def("predict_steps_float32", &predict_steps_of<float>, py::arg("k_train"), py::arg("y"), py::arg("k_test"),
        py::arg("f0_train"), py::arg("f0_test"), py::arg("loss"), py::arg("lr"), py::arg("steps"));
  m.def("predict_steps_float64", &predict_steps_of<double>, py::arg("k_train"), py::arg("y"), py::arg("k_test"),
        py::arg("f0_train"), py::arg("f0_test"), py::arg("loss"), py::arg("lr"), py::arg("steps"));
  m.def("predict_time_float32", &predict_time_of<float>, py::arg("k_train"), py::arg("y"), py::arg("k_test"),
        py::arg("f0_train"), py::arg("f0_test"), py::arg("lr"), py::arg("times"), py::arg("ridge"));
  m.def("predict_time_float64", &predict_time_of<double>, py::arg("k_train"), py::arg("y"), py::arg("k_test"),
        py::arg("f0_train"), py::arg("f0_test"), py::arg("lr"), py::arg("times"), py::arg("ridge"));
}

}  // namespace xntk::python
