// Training as PyTorch does it: the transformed model's outputs, the loss, the parameters' gradient through the
// layers' own formulas (xntk::gradient; for the linearised network at θ₀), and torch.optim.SGD / Adam updates,
// full batch or mini-batches; plus the metrics of a run (weight change, the probe's kernel).

#include "xntk/train.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <tuple>
#include <vector>

#include "backend/parallel.hpp"
#include "batch.hpp"
#include "checked.hpp"
#include "nn/model.hpp"
#include "ntk/driver.hpp"
#include "quote.hpp"
#include "xntk/analysis.hpp"

namespace xntk {

namespace {

/// The trace of Θ(X, X) as a matrix, in float64: Σ_i Θ[i, i] (trace mode), Σ_i Σ_o Θ[i, i, o] (diagonal) or
/// Σ_i Σ_o Θ[i, i, o, o] (full), summed in the order `analyze` sums its matrix's diagonal.
template <class T>
double diagonal_sum(const Tensor<T>& k) {
  const int64_t n = k.dim(0), o = k.rank() > 2 ? k.dim(2) : 1;
  double t = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t a = 0; a < o; ++a)
      t += static_cast<double>(k.rank() == 4 ? k[((i * n + i) * o + a) * o + a] : k[(i * n + i) * o + a]);
  return t;
}

/// f(b, e) over the blocks [b, e) of [0, n), on the OpenMP threads where n is large: the optimiser's
/// elementwise loops (the 784-1000-1000-10 MLP's SGD update ran as one scalar thread, 4% of the samples of a
/// step, while the other thread waited).
template <class F>
void for_blocks(int64_t n, F&& f) {
  constexpr int64_t kBlock = int64_t{1} << 14;
  backend::parallel_for_work((n + kBlock - 1) / kBlock, static_cast<double>(kBlock),
                             [&](int64_t b) { f(b * kBlock, std::min(n, (b + 1) * kBlock)); });
}

template <class T>
bool finite(const Tensor<T>& t) {
  std::atomic<bool> ok{true};
  for_blocks(t.size(), [&](int64_t b, int64_t e) {
    if (!detail::all_finite(t.data() + b, e - b)) ok = false;
  });
  return ok;
}

/// Whether t is already a tensor of `like`'s shape, whose storage can take its values (the sizes are compared
/// too: a default tensor and a 0-d one both have shape {}).
template <class T>
bool holds(const Tensor<T>& t, const Tensor<T>& like) {
  return t.shape() == like.shape() && t.size() == like.size();
}

/// to = from, on the threads, in to's storage where it is of from's shape.
template <class T>
void copy_into(Tensor<T>& to, const Tensor<T>& from) {
  if (!holds(to, from)) {
    to = from;
    return;
  }
  for_blocks(from.size(), [&](int64_t b, int64_t e) { std::copy(from.data() + b, from.data() + e, to.data() + b); });
}

/// The rows `index` of x (samples first).
template <class T>
Tensor<T> rows(TensorRef<T> x, const std::vector<int64_t>& index) {
  Shape s = x.shape();
  s[0] = static_cast<int64_t>(index.size());
  Tensor<T> r(s);
  const int64_t row = x.size() / x.dim(0);
  for (size_t i = 0; i < index.size(); ++i)
    std::copy(x.data() + index[i] * row, x.data() + (index[i] + 1) * row, r.data() + static_cast<int64_t>(i) * row);
  return r;
}

}  // namespace

template <class T>
struct Trainer<T>::State {
  Sequential<T>* model;
  TrainOptions opt;
  Sequential<T> initial;
  // the optimiser's state, per parameter in state_dict order (empty until the first step needs it)
  std::vector<Tensor<T>> momentum, exp_avg, exp_avg_sq, max_exp_avg_sq;
  int64_t steps = 0;
  // a step's work arrays, kept from one step to the next so that their pages are reused: the gradient (for
  // the linearisation first θ − θ₀, its tangent, which the gradient then overwrites) and the copies of θ and
  // of the optimiser's state that undo a step
  std::vector<NamedTensor<T>> grads;
  std::vector<Tensor<T>> before, momentum_before, exp_avg_before, exp_avg_sq_before, max_exp_avg_sq_before;

  State(Sequential<T>& m, TrainOptions o) : model(&m), opt(std::move(o)), initial(m.copy()) {}

  /// Each part of the optimiser's state with the copy that undoes a step.
  std::array<std::pair<std::vector<Tensor<T>>*, std::vector<Tensor<T>>*>, 4> optimiser_state() {
    return {{{&momentum, &momentum_before},
             {&exp_avg, &exp_avg_before},
             {&exp_avg_sq, &exp_avg_sq_before},
             {&max_exp_avg_sq, &max_exp_avg_sq_before}}};
  }

  /// The model whose NTK Trainer::kernel and train()'s probe report: the trained network, or the initial one
  /// when training the linearisation.
  const Sequential<T>& kernel_model() const { return opt.linearized ? initial : *model; }

  /// θ − θ₀ under the parameters' names, into d's tensors where they are already of the parameters' shapes.
  void displacement(std::vector<NamedTensor<T>>& d) const {
    const auto now = model->named_parameters(), then = initial.named_parameters();
    d.resize(now.size());
    for (size_t i = 0; i < now.size(); ++i) {
      d[i].name = now[i].name;
      if (!holds(d[i].tensor, *now[i].tensor)) d[i].tensor = Tensor<T>(now[i].tensor->shape());
      for_blocks(d[i].tensor.size(), [&](int64_t b, int64_t end) {
        T* __restrict dd = d[i].tensor.data();
        const T* __restrict a = now[i].tensor->data();
        const T* __restrict c = then[i].tensor->data();
        for (int64_t e = b; e < end; ++e) dd[e] = a[e] - c[e];
      });
    }
  }

  /// f(x; θ) or f_lin(x; θ), centred or not, times α. The linearisation's θ − θ₀ is `given` (already computed),
  /// or computed into `held`, or into a temporary.
  Tensor<T> outputs(TensorRef<T> x, bool linear, std::vector<NamedTensor<T>>* held = nullptr,
                    const std::vector<NamedTensor<T>>* given = nullptr) const {
    Tensor<T> y;
    if (linear) {
      std::vector<NamedTensor<T>> temporary;
      const std::vector<NamedTensor<T>>* d = given;
      if (!d) {
        std::vector<NamedTensor<T>>& into = held ? *held : temporary;
        displacement(into);
        d = &into;
      }
      if (opt.transform.center) {
        y = jvp(initial, x, *d);  // J(θ₀)(θ − θ₀)
      } else {                    // f(θ₀) + J(θ₀)(θ − θ₀), f(θ₀) from the JVP's own forward pass
        Tensor<T> f0;
        y = detail::jvp<T>(initial, x, *d, &f0);
        for (int64_t i = 0; i < y.size(); ++i) y[i] += f0[i];
      }
    } else {
      y = model->forward(x);
      if (opt.transform.center) {
        const Tensor<T> f0 = initial.forward(x);
        for (int64_t i = 0; i < y.size(); ++i) y[i] -= f0[i];
      }
    }
    const T alpha = T(opt.transform.alpha);
    if (alpha != T(1))
      for (int64_t i = 0; i < y.size(); ++i) y[i] *= alpha;
    return y;
  }

  /// p[e] = p[e] + d(e) for every element, in blocks on the threads, first copying p[e] into keep[e] where
  /// `keep` is given (the copy that undoes the step, taken in the same pass); whether every new value is finite
  /// (each block checked just after it is written, while it is in cache). The last loop of every update.
  template <class D>
  static bool apply(int64_t n, T* p, T* keep, D d) {
    std::atomic<bool> ok{true};
    for_blocks(n, [&](int64_t b, int64_t end) {
      T* __restrict pd = p;
      if (keep) {
        T* __restrict kd = keep;
        for (int64_t e = b; e < end; ++e) {
          kd[e] = pd[e];
          pd[e] = pd[e] + d(e);
        }
      } else {
        for (int64_t e = b; e < end; ++e) pd[e] = pd[e] + d(e);
      }
      if (!detail::all_finite(pd + b, end - b)) ok = false;
    });
    return ok;
  }

  /// PyTorch's update of one parameter tensor p with gradient g (state index i), p's old values copied into
  /// `keep` if given; whether p is finite afterwards.
  bool update(size_t i, Tensor<T>& p, Tensor<T>& g, T* keep = nullptr) {
    const Optimizer& o = opt.optimizer;
    const int64_t n = p.size();
    // each loop elementwise over restrict pointers, in blocks on the threads: the same operations per element
    // as one scalar loop, so the same values
    if (o.weight_decay != 0)  // g = g + wd·p
      for_blocks(n, [&, wd = T(o.weight_decay)](int64_t b, int64_t end) {
        T* __restrict gd = g.data();
        const T* __restrict pd = p.data();
        for (int64_t e = b; e < end; ++e) gd[e] += wd * pd[e];
      });
    if (o.kind == Optimizer::Kind::sgd) {
      if (o.momentum != 0) {
        if (momentum.size() <= i) momentum.resize(i + 1);
        Tensor<T>& buf = momentum[i];
        if (buf.size() == 0) {
          buf = g;  // the first step's buffer is the gradient itself
        } else {
          for_blocks(n, [&, mu = T(o.momentum), keep = T(1 - o.dampening)](int64_t b, int64_t end) {
            T* __restrict bd = buf.data();
            const T* __restrict gd = g.data();
            for (int64_t e = b; e < end; ++e) bd[e] = bd[e] * mu + keep * gd[e];
          });
        }
        if (o.nesterov)
          for_blocks(n, [&, mu = T(o.momentum)](int64_t b, int64_t end) {
            T* __restrict gd = g.data();
            const T* __restrict bd = buf.data();
            for (int64_t e = b; e < end; ++e) gd[e] = gd[e] + mu * bd[e];
          });
        else
          g = buf;
      }
      const T* __restrict gd = g.data();
      return apply(n, p.data(), keep, [gd, step = T(-o.lr)](int64_t e) { return step * gd[e]; });
    }
    // Adam
    if (exp_avg.size() <= i) {
      exp_avg.resize(i + 1);
      exp_avg_sq.resize(i + 1);
      max_exp_avg_sq.resize(i + 1);
    }
    Tensor<T>& m = exp_avg[i];
    Tensor<T>& v = exp_avg_sq[i];
    if (m.size() == 0) {
      m = Tensor<T>(p.shape());
      v = Tensor<T>(p.shape());
      if (o.amsgrad) max_exp_avg_sq[i] = Tensor<T>(p.shape());
    }
    for_blocks(n,
               [&, b1 = T(o.beta1), b2 = T(o.beta2), c1 = T(1 - o.beta1), c2 = T(1 - o.beta2)](int64_t b, int64_t end) {
                 T* __restrict md = m.data();
                 T* __restrict vd = v.data();
                 const T* __restrict gd = g.data();
                 for (int64_t e = b; e < end; ++e) {
                   md[e] = md[e] * b1 + c1 * gd[e];
                   vd[e] = vd[e] * b2 + c2 * (gd[e] * gd[e]);
                 }
               });
    const double t = static_cast<double>(steps + 1);
    const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    const T step_size = T(o.lr / bc1), bc2_sqrt = T(std::sqrt(bc2));
    const Tensor<T>* second = &v;
    if (o.amsgrad) {
      Tensor<T>& mx = max_exp_avg_sq[i];
      for_blocks(n, [&](int64_t b, int64_t end) {
        for (int64_t e = b; e < end; ++e) mx[e] = std::max(mx[e], v[e]);
      });
      second = &mx;
    }
    const T* __restrict md = m.data();
    const T* __restrict sd = second->data();
    return apply(n, p.data(), keep, [md, sd, bc2_sqrt, step_size, eps = T(o.eps)](int64_t e) {
      const T denom = std::sqrt(sd[e]) / bc2_sqrt + eps;
      return (-step_size) * (md[e] / denom);
    });
  }
};

struct detail::TrainerAccess {
  template <class T>
  static typename Trainer<T>::State& state(Trainer<T>& t) {
    return *t.s_;
  }
};

template <class T>
Trainer<T>::Trainer(Sequential<T>& model, TrainOptions options) : s_(std::make_unique<State>(model, options)) {
  const auto& o = s_->opt;
  if (!(o.optimizer.lr > 0) || !std::isfinite(o.optimizer.lr))
    throw Error("training: the learning rate must be positive and finite, got " + detail::number(o.optimizer.lr));
  if (!std::isfinite(o.transform.alpha) || o.transform.alpha == 0)
    throw Error("training: alpha must be finite and non-zero, got " + detail::number(o.transform.alpha));
  if (o.optimizer.momentum < 0 || !std::isfinite(o.optimizer.momentum))
    throw Error("training: momentum must be non-negative and finite");
  if (o.optimizer.nesterov && (o.optimizer.momentum <= 0 || o.optimizer.dampening != 0))
    throw Error("training: nesterov momentum requires a momentum and zero dampening (as PyTorch)");
  if (o.optimizer.weight_decay < 0 || !std::isfinite(o.optimizer.weight_decay))
    throw Error("training: weight decay must be non-negative and finite");
  if (!(o.optimizer.beta1 >= 0 && o.optimizer.beta1 < 1 && o.optimizer.beta2 >= 0 && o.optimizer.beta2 < 1))
    throw Error("training: Adam's betas must lie in [0, 1)");
  if (!(o.optimizer.eps >= 0)) throw Error("training: Adam's eps must be non-negative");
}

template <class T>
Trainer<T>::~Trainer() = default;
template <class T>
Trainer<T>::Trainer(Trainer&&) noexcept = default;
template <class T>
Trainer<T>& Trainer<T>::operator=(Trainer&&) noexcept = default;

template <class T>
Tensor<T> Trainer<T>::outputs(TensorArg<T> x) const {
  const detail::ThreadScope threads(s_->opt.threads);
  return s_->outputs(x, s_->opt.linearized);
}

template <class T>
Tensor<T> Trainer<T>::linearized_outputs(TensorArg<T> x) const {
  const detail::ThreadScope threads(s_->opt.threads);
  return s_->outputs(x, true);
}

template <class T>
Tensor<T> Trainer<T>::network_outputs(TensorArg<T> x) const {
  const detail::ThreadScope threads(s_->opt.threads);
  return s_->outputs(x, false);
}

template <class T>
double Trainer<T>::step(TensorArg<T> x, TensorArg<T> y) {
  State& s = *s_;
  const detail::ThreadScope threads(s.opt.threads);
  detail::check_finite(x, "training: x");
  LossValue<T> l;
  // the cotangent of f (or f_lin) from the outputs: the objective is L(α·f, y)/α², so it is
  // α·∂L/∂(αf)/α² = ∂L/∂(αf)/α
  auto cotangent = [&](const Tensor<T>& out) {
    l = loss(s.opt.loss, out, y);
    if (s.opt.stop_on_nonfinite && !std::isfinite(l.value))
      throw Error("training: the loss is " + detail::number(l.value) + " at step " + std::to_string(s.steps + 1) +
                  "; stopped (lower the learning rate?)");
    const T scale = T(1.0 / s.opt.transform.alpha);
    for (int64_t i = 0; i < l.grad.size(); ++i) l.grad[i] *= scale;
    return TensorRef<T>(l.grad);  // l outlives the gradient's use of it
  };
  std::vector<NamedTensor<T>>& grads = s.grads;
  if (s.opt.linearized) {                   // f_lin is a JVP at θ₀; its gradient a VJP there
    cotangent(s.outputs(x, true, &grads));  // θ − θ₀ in the gradient's arrays: done with before they are
    detail::value_and_gradient<T>(
        s.initial, x, [&](Tensor<T>&) { return TensorRef<T>(l.grad); }, grads);
  } else {  // the forward pass of the gradient gives f(x), then centred and scaled as State::outputs does
    detail::value_and_gradient<T>(
        *s.model, x,
        [&](Tensor<T>& f) {
          if (s.opt.transform.center) {
            const Tensor<T> f0 = s.initial.forward(x);
            for (int64_t i = 0; i < f.size(); ++i) f[i] -= f0[i];
          }
          const T alpha = T(s.opt.transform.alpha);
          if (alpha != T(1))
            for (int64_t i = 0; i < f.size(); ++i) f[i] *= alpha;
          return cotangent(f);
        },
        grads);
  }
  if (s.opt.stop_on_nonfinite)
    for (const auto& g : grads)
      if (!finite(g.tensor))
        throw Error("training: the gradient of " + g.name + " is not finite at step " + std::to_string(s.steps + 1) +
                    "; stopped");
  const auto params = s.model->named_parameters();
  if (!s.opt.stop_on_nonfinite) {
    for (size_t i = 0; i < params.size(); ++i) s.update(i, *params[i].tensor, grads[i].tensor);
    ++s.steps;
    return l.value;
  }
  // a step that makes a parameter non-finite is undone, the optimiser's state included, so that the model
  // and the trainer are left as they were before it (one copy of θ and of the state per step, into the
  // copies the trainer keeps: memcpy speed, no fresh pages)
  s.before.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i)  // (the copies themselves are taken by the update's last pass)
    if (!holds(s.before[i], *params[i].tensor)) s.before[i] = Tensor<T>(params[i].tensor->shape());
  auto copy_all = [](std::vector<Tensor<T>>& to, const std::vector<Tensor<T>>& from) {
    to.resize(from.size());
    for (size_t i = 0; i < from.size(); ++i) copy_into(to[i], from[i]);
  };
  for (const auto& [state, saved] : s.optimiser_state()) copy_all(*saved, *state);
  std::optional<size_t> bad;  // the first parameter not finite after the step
  for (size_t i = 0; i < params.size(); ++i)
    if (!s.update(i, *params[i].tensor, grads[i].tensor, s.before[i].data()) && !bad) bad = i;
  if (bad) {
    for (size_t i = 0; i < params.size(); ++i) copy_into(*params[i].tensor, s.before[i]);
    for (const auto& [state, saved] : s.optimiser_state()) copy_all(*state, *saved);
    throw Error("training: " + params[*bad].name + " would not be finite after step " + std::to_string(s.steps + 1) +
                "; stopped, the step undone (lower the learning rate?)");
  }
  ++s.steps;
  return l.value;
}

template <class T>
std::pair<double, std::vector<std::pair<std::string, double>>> Trainer<T>::weight_change() const {
  const auto now = s_->model->named_parameters(), then = s_->initial.named_parameters();
  double d_all = 0, n_all = 0;
  std::vector<std::pair<std::string, double>> per;
  for (size_t i = 0; i < now.size(); ++i) {
    double d = 0, n = 0;
    for (int64_t e = 0; e < now[i].tensor->size(); ++e) {
      const double a = (*now[i].tensor)[e], b = (*then[i].tensor)[e];
      d += (a - b) * (a - b);
      n += b * b;
    }
    d_all += d;
    n_all += n;
    per.emplace_back(now[i].name, n > 0 ? std::sqrt(d / n) : std::sqrt(d));
  }
  return {n_all > 0 ? std::sqrt(d_all / n_all) : std::sqrt(d_all), per};
}

namespace {

/// Trainer::kernel's kernel of `model` (the trained network, or the initial one when linearised) into k's
/// tensors, reusing them where their shape matches (engine::explicit_kernel_into): train()'s probe, every
/// epoch, then maps no fresh pages for its total and components (5 MB a log for 500 probe points of a
/// two-layer MLP, ~1300 page faults).
template <class T>
void probe_kernel_into(const Sequential<T>& model, TensorArg<T> probe, Mode mode, const TrainOptions& o, Kernel<T>& k) {
  const KernelOptions ko{.mode = mode, .components = true, .threads = o.threads};
  engine::explicit_kernel_into<T>(model, probe, nullptr, ko, backend::get(ko.backend), k);
  const T a2 = T(o.transform.alpha * o.transform.alpha);
  if (a2 != T(1)) {
    for (int64_t i = 0; i < k.total.size(); ++i) k.total[i] *= a2;
    for (auto& c : k.components)
      for (int64_t i = 0; i < c.size(); ++i) c[i] *= a2;
  }
}

}  // namespace

template <class T>
Kernel<T> Trainer<T>::kernel(TensorArg<T> probe, Mode mode) const {
  Kernel<T> k;
  probe_kernel_into(s_->kernel_model(), probe, mode, s_->opt, k);
  return k;
}

template <class T>
int64_t Trainer<T>::steps() const {
  return s_->steps;
}

template <class T>
const TrainOptions& Trainer<T>::options() const {
  return s_->opt;
}

template <class T>
const Sequential<T>& Trainer<T>::initial() const {
  return s_->initial;
}

namespace {

double frobenius(const Tensor<double>& a, const Tensor<double>& b) {
  double s = 0;
  for (int64_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// yyᵀ in the kernel's layout (full: (P, P, O, O); trace: Σ_o; diagonal: per output).
Tensor<double> target_kernel(const Tensor<double>& y, Mode mode, const Shape& shape) {
  const int64_t P = y.dim(0), O = y.size() / P;
  Tensor<double> k(shape);
  for (int64_t i = 0; i < P; ++i)
    for (int64_t j = 0; j < P; ++j)
      for (int64_t o = 0; o < O; ++o) {
        if (mode == Mode::full)
          for (int64_t q = 0; q < O; ++q) k[((i * P + j) * O + o) * O + q] = y[i * O + o] * y[j * O + q];
        else if (mode == Mode::diagonal)
          k[(i * P + j) * O + o] = y[i * O + o] * y[j * O + o];
        else
          k[i * P + j] += y[i * O + o] * y[j * O + o];
      }
  return k;
}

double rms(const Tensor<double>& a) {
  double s = 0;
  for (int64_t i = 0; i < a.size(); ++i) s += a[i] * a[i];
  return a.size() ? std::sqrt(s / static_cast<double>(a.size())) : 0.0;
}

}  // namespace

template <class T>
StepLog train(Sequential<T>& model, const TrainData<T>& data, const TrainOptions& opt,
              const std::function<void(const StepLog&)>& on_log) {
  const int64_t n = detail::check_batch(model, data.x, "training: x");
  detail::check_finite(data.x, "training: x");
  detail::check_finite(data.y, "training: the targets");
  if (data.y_test && !data.x_test) throw Error("training: test targets were given without test inputs");
  if (data.probe_y && !data.probe) throw Error("training: probe targets were given without probe inputs");
  if (data.x_test) {
    detail::check_batch(model, *data.x_test, "training: x_test");
    detail::check_finite(*data.x_test, "training: x_test");
  }
  if (data.probe) {
    detail::check_batch(model, *data.probe, "training: the probe");
    detail::check_finite(*data.probe, "training: the probe");
  }
  if (data.probe_y) detail::check_finite(*data.probe_y, "training: the probe targets");
  if (data.y.rank() < 1 || data.y.dim(0) != n)
    throw Error("training: the targets have " + std::to_string(data.y.rank() ? data.y.dim(0) : 0) +
                " samples but the inputs " + std::to_string(n));
  if (opt.steps < 0 || opt.epochs < 0 || opt.batch_size < 0 || opt.log_every < 0 || opt.ntk_every < 0)
    throw Error("training: steps, epochs, batch size, log_every and ntk_every must be non-negative");
  if (opt.steps == 0 && opt.epochs == 0) throw Error("training: give a number of steps or epochs");
  const int64_t batch = opt.batch_size == 0 ? n : std::min(opt.batch_size, n);
  const int64_t per_epoch = (n + batch - 1) / batch;
  const int64_t total =
      opt.steps > 0 ? opt.steps : detail::checked_mul(opt.epochs, per_epoch, "training: the steps of all epochs");
  Trainer<T> trainer(model, opt);
  const detail::ThreadScope threads(opt.threads);  // the losses, the probe's metrics and the shuffling too

  std::optional<Tensor<double>> k0;
  std::optional<TensorRef<T>> probe = data.probe;
  if (!probe && opt.ntk_every > 0) probe = data.x;
  std::optional<TensorRef<T>> probe_y = data.probe ? data.probe_y : std::optional<TensorRef<T>>(data.y);
  // a data set's outputs 1024 samples at a time: one forward pass over all 20,000 samples of the notebook run
  // held every layer's (20,000 × 500) values at once, mapped and zeroed afresh for every log (9% of the run's
  // samples in the kernel's clear_page_erms)
  // and the blocks run one a thread, each block's layers single-threaded inside (as the steps' slices do,
  // detail::gradient_shards): a block's layer operations are too small to gain from a parallel region each
  struct Blocks {
    explicit Blocks(TensorRef<T> data) : x(data) {}
    TensorRef<T> x;
    int64_t rows = 0, in = 0, per = 0, count = 0;
    Tensor<T> out;
  };
  constexpr int64_t chunk = 1024;
  auto blocks_of = [&](TensorRef<T> x) {
    Blocks b(x);
    b.rows = x.dim(0);
    b.in = b.rows > 0 ? x.size() / b.rows : 0;
    b.per = numel(model.output_shape());
    b.count = (b.rows + chunk - 1) / chunk;
    Shape s{b.rows};
    s.insert(s.end(), model.output_shape().begin(), model.output_shape().end());
    b.out = Tensor<T>(s);
    return b;
  };
  // a log's linearised outputs (every loss block when training the linearisation, the probe's) share one
  // θ − θ₀, computed once per log into the gradient's arrays, which are free between steps: formed afresh for
  // each, 800 MB at the lazy-training study's width 10000, they were most of a log's time
  auto& st = detail::TrainerAccess::state(trainer);
  const std::vector<NamedTensor<T>>* delta = nullptr;
  auto run_block = [&](Blocks& b, int64_t i) {
    Shape part = b.x.shape();
    part[0] = std::min(chunk, b.rows - i * chunk);
    const Tensor<T> y = st.outputs(TensorRef<T>(b.x.data() + i * chunk * b.in, part), opt.linearized, nullptr, delta);
    std::copy(y.data(), y.data() + y.size(), b.out.data() + i * chunk * b.per);
  };
  // the probe's kernel and its float64 copy, kept from one log to the next so that their pages are reused
  Kernel<T> pk;
  Tensor<double> kt;
  auto log = [&](int64_t step) {
    StepLog l;
    l.step = step;
    l.epoch = step / per_epoch;
    Blocks train_out = blocks_of(data.x);
    std::optional<Blocks> test_out;
    if (data.x_test && data.y_test) test_out = blocks_of(*data.x_test);
    const int64_t loss_blocks = train_out.count + (test_out ? test_out->count : 0);
    auto loss_block = [&](int64_t i) {  // block i of the training outputs, then of the test outputs
      if (i < train_out.count)
        run_block(train_out, i);
      else
        run_block(*test_out, i - train_out.count);
    };
    auto loss_values = [&] {
      l.train_loss = loss(opt.loss, train_out.out, data.y).value;
      if (test_out) l.test_loss = loss(opt.loss, test_out->out, *data.y_test, "the test targets").value;
    };
    std::tie(l.weight_change, l.weight_change_per_tensor) = trainer.weight_change();
    const bool probe_due = opt.ntk_every > 0 && (step % opt.ntk_every == 0 || step == total);
    delta = nullptr;
    if (opt.linearized || (probe_due && probe)) {
      st.displacement(st.grads);
      delta = &st.grads;
    }
    if (!(probe_due && probe)) {
      backend::parallel_for(loss_blocks, loss_block);
      loss_values();
    } else {
      probe_kernel_into<T>(st.kernel_model(), *probe, opt.probe_mode, opt, pk);
      const Kernel<T>& k = pk;
      if (kt.shape() != k.total.shape()) kt = Tensor<double>(k.total.shape());
      std::copy(k.total.data(), k.total.data() + k.total.size(), kt.data());
      ProbeMetrics pm;
      AnalysisOptions ao;
      if constexpr (std::is_same_v<T, float>) ao.epsilon = 1.1920928955078125e-07;
      // the whole kernel's spectrum; of the components only their traces (a share needs no eigenvalues:
      // analysing each of them was 4 of the 5 eigendecompositions of a probe for a two-layer MLP)
      Analysis a;
      // LAPACK's eigenvalues of the kernel run on one thread whatever the thread count (dsyevd of 500 × 500:
      // 8.2 ms on 1 thread, 8.1 on 2), so the rest of the log runs beside them: tasks dealt out dynamically,
      // the spectrum first, then the probe's outputs, then the loss blocks, which fill whatever thread is free
      // (the losses on the thread beside the spectrum alone took longer than the spectrum: 20 blocks of the
      // notebook's 20,000 samples). The errors are raised in the order the work ran before: the losses', the
      // outputs', then the spectrum's.
      std::vector<std::exception_ptr> failed(static_cast<size_t>(2 + loss_blocks));
      backend::parallel_dynamic(2 + loss_blocks, 1, [&](int64_t task) {
        try {
          if (task == 0) {
            a = analyze(kt, {}, ao);
            return;
          }
          if (task > 1) {
            loss_block(task - 2);
            return;
          }
          const Tensor<double> f = st.outputs(*probe, false).template cast<double>(),
                               fl = st.outputs(*probe, true, nullptr, delta).template cast<double>();
          Tensor<double> gap = f, change = fl;
          const Tensor<double> f0 = [&] {
            Tensor<T> y = trainer.initial().forward(*probe);
            if (opt.transform.center) y = Tensor<T>(y.shape());
            for (int64_t i = 0; i < y.size(); ++i) y[i] *= T(opt.transform.alpha);
            return y.template cast<double>();
          }();
          for (int64_t i = 0; i < gap.size(); ++i) {
            gap[i] -= fl[i];
            change[i] -= f0[i];
          }
          pm.linearization_gap = rms(gap);
          pm.linearization_gap_relative = rms(change) > 0 ? rms(gap) / rms(change) : 0.0;
        } catch (...) {
          failed[static_cast<size_t>(task)] = std::current_exception();
        }
      });
      for (size_t t = 2; t < failed.size(); ++t)
        if (failed[t]) std::rethrow_exception(failed[t]);
      loss_values();
      for (size_t t : {size_t{1}, size_t{0}})
        if (failed[t]) std::rethrow_exception(failed[t]);
      pm.trace = a.spectrum.trace;
      pm.lambda_max = a.spectrum.lambda_max;
      pm.lambda_min = a.spectrum.lambda_min;
      pm.condition = a.spectrum.condition;
      pm.effective_rank = a.spectrum.effective_rank;
      for (size_t c = 0; c < k.components.size(); ++c)
        pm.component_share.emplace_back(k.names[c], a.spectrum.trace != 0
                                                        ? diagonal_sum(k.components[c]) / a.spectrum.trace
                                                        : std::numeric_limits<double>::quiet_NaN());
      if (!k0) k0 = kt;
      const double n0 = std::sqrt(frobenius(*k0, *k0)), nt = std::sqrt(frobenius(kt, kt));
      double change = 0;  // ‖Θₜ − Θ₀‖²_F, without a copy of Θₜ
      for (int64_t i = 0; i < kt.size(); ++i) {
        const double d = kt[i] - (*k0)[i];
        change += d * d;
      }
      pm.kernel_change = n0 > 0 ? std::sqrt(change) / n0 : 0.0;
      pm.alignment_initial = n0 > 0 && nt > 0 ? frobenius(kt, *k0) / (n0 * nt) : 0.0;
      if (probe_y && probe_y->rank() >= 1 && probe_y->dim(0) == probe->dim(0) &&
          probe_y->size() == probe->dim(0) * model.outputs()) {
        const Tensor<double> yy = target_kernel(
            Tensor<T>(probe_y->shape(), std::vector<T>(probe_y->data(), probe_y->data() + probe_y->size()))
                .template cast<double>(),
            opt.probe_mode, kt.shape());
        const double ny = std::sqrt(frobenius(yy, yy));
        pm.alignment_targets = nt > 0 && ny > 0 ? frobenius(kt, yy) / (nt * ny) : 0.0;
      }
      l.probe = pm;
    }
    if (on_log) on_log(l);
    return l;
  };

  StepLog last = log(0);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(opt.shuffle_seed);
  for (int64_t s = 0; s < total; ++s) {
    const int64_t pos = s % per_epoch;
    if (pos == 0 && opt.shuffle)  // Fisher–Yates with our own draws (std's distributions are implementation-defined)
      for (int64_t i = n - 1; i > 0; --i) {
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
        std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(u * static_cast<double>(i + 1))]);
      }
    if (batch == n && !opt.shuffle) {
      trainer.step(data.x, data.y);
    } else {
      const std::vector<int64_t> idx(order.begin() + pos * batch, order.begin() + std::min(n, (pos + 1) * batch));
      trainer.step(rows(data.x, idx), rows(data.y, idx));
    }
    const int64_t done = s + 1;
    if (done == total || (opt.log_every > 0 && done % opt.log_every == 0) ||
        (opt.ntk_every > 0 && done % opt.ntk_every == 0))
      last = log(done);
  }
  return last;
}

template class Trainer<float>;
template class Trainer<double>;
template StepLog train(Sequential<float>&, const TrainData<float>&, const TrainOptions&,
                       const std::function<void(const StepLog&)>&);
template StepLog train(Sequential<double>&, const TrainData<double>&, const TrainOptions&,
                       const std::function<void(const StepLog&)>&);

}  // namespace xntk
