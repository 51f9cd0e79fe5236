// The generic route: per-sample parameter Jacobians from the tape, contracted as Θ = J(x) J(x')ᵀ for
// each parameter tensor (the functorch tutorial's "Jacobian contraction").

#include <algorithm>
#include <map>
#include <sstream>

#include "autograd/record.hpp"
#include "autograd/tape.hpp"
#include "backend/backend.hpp"
#include "backend/parallel.hpp"
#include "batch.hpp"
#include "ntk/plan.hpp"
#include "xntk/kernel.hpp"

namespace xntk {

namespace {

/// Per-sample Jacobians as `jacobians` returns them, computed `chunk` samples at a time; `done` runs on the
/// calling thread after each chunk (so that a long computation can report progress and be stopped).
template <class T, class Done>
std::vector<Tensor<T>> jacobians_in_chunks(const Sequential<T>& model, TensorArg<T> x, int64_t chunk, Done&& done) {
  const int64_t n = detail::check_batch(model, x, "x");
  const int64_t in = numel(model.input_shape()), O = model.outputs();
  const auto params = model.named_parameters();
  std::vector<Tensor<T>> J;
  for (const auto& p : params) J.emplace_back(Shape{n, O, p.tensor->size()});
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    backend::parallel_for(std::min(chunk, n - c0), [&](int64_t c) {
      const int64_t i = c0 + c;
      autograd::Tape<T> tape;
      const int v = autograd::record(tape, model, tape.input(x.data() + i * in, in));
      if (tape.size(v) != O) throw Error("autograd: the recorded output has the wrong size");
      std::vector<autograd::RowMat<T>> jac(params.size());
      for (size_t s = 0; s < params.size(); ++s) jac[s] = autograd::RowMat<T>::Zero(O, params[s].tensor->size());
      tape.jacobians(v, jac);
      for (size_t s = 0; s < params.size(); ++s)
        std::copy(jac[s].data(), jac[s].data() + jac[s].size(), J[s].data() + i * jac[s].size());
    });
    done();
  }
  return J;
}

}  // namespace

template <class T>
std::vector<Tensor<T>> jacobians(const Sequential<T>& model, TensorArg<T> x) {
  return jacobians_in_chunks(model, x, std::max<int64_t>(x.rank() > 0 ? x.dim(0) : 1, 1), [] {});
}

namespace {

template <class T>
Kernel<T> autograd_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& opt) {
  detail::ThreadScope threads(opt.threads);
  detail::check_batch(model, x1, "x1");
  if (x2) detail::check_batch(model, *x2, "x2");
  const int64_t n = x1.dim(0), m = x2 ? x2->dim(0) : n, O = model.outputs();
  const auto params = model.named_parameters();
  {
    // planned before anything is allocated, as the explicit path is: the per-sample Jacobians of both sides,
    // the largest contraction, the result, one component being formed and those kept
    double P = 0;
    for (const auto& p : params) P += static_cast<double>(p.tensor->size());
    const double dn = static_cast<double>(n), dm = static_cast<double>(m), dO = static_cast<double>(O);
    const double values = static_cast<double>(numel(detail::kernel_shape(n, m, O, opt.mode)));
    const double kept = opt.components ? static_cast<double>(model.component_names().size()) : 0.0;
    const double bytes =
        static_cast<double>(sizeof(T)) *
        ((dn + (x2 ? dm : 0)) * dO * P + (params.empty() ? 0 : dn * dO * dm * dO) + values * (2 + kept));
    const double avail = engine::available_bytes(),
                 limit = opt.memory_budget > 0 ? static_cast<double>(opt.memory_budget) : 0.9 * avail;
    if (bytes > limit) {
      std::ostringstream e;
      e.precision(3);
      e << "kernel (autograd): the per-sample Jacobians and the result need " << bytes / 1e9 << " GB, more than the "
        << limit / 1e9 << " GB " << (opt.memory_budget > 0 ? "memory budget" : "of memory available")
        << "; use the explicit method, which never forms the Jacobians, or fewer samples";
      throw Error(e.str());
    }
  }
  // progress steps: chunks of a few samples per thread for the Jacobians (the slow part), then one per component
  const int64_t chunk = 4 * backend::loop_threads();
  const int64_t steps = (n + chunk - 1) / chunk + (x2 ? (m + chunk - 1) / chunk : 0) +
                        static_cast<int64_t>(model.component_names().size());
  int64_t done = 0;
  auto step = [&] {
    ++done;
    if (opt.progress) opt.progress(done, steps);
    if (opt.progress_flops) opt.progress_flops(done, steps, 0.0);
  };
  const auto J1 = jacobians_in_chunks(model, x1, chunk, step);
  const auto J2 = x2 ? jacobians_in_chunks(model, *x2, chunk, step) : std::vector<Tensor<T>>{};
  const auto& J2r = x2 ? J2 : J1;
  const auto& ops = backend::get(opt.backend).ops<T>();
  Kernel<T> k;
  k.total = Tensor<T>(detail::kernel_shape(n, m, O, opt.mode));
  // components in the model's component order (outermost layer first, weight before bias); the Jacobians
  // are in state_dict order
  std::map<std::string, size_t> index;
  for (size_t s = 0; s < params.size(); ++s) index[params[s].name] = s;
  for (const std::string& name : model.component_names()) {
    const size_t s = index.at(name);
    const int64_t P = params[s].tensor->size();
    // the Jacobian contraction D = J(X1) J(X2)ᵀ, on the backend's dense product
    autograd::RowMat<T> D(n * O, m * O);
    k.flops += ops.gram(n * O, m * O, P, T(1), J1[s].data(), P, J2r[s].data(), P, T(0), D.data(), m * O);
    Tensor<T> c(k.total.shape());
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < m; ++j)
        for (int64_t o = 0; o < O; ++o) {
          switch (opt.mode) {
            case Mode::full:
              for (int64_t q = 0; q < O; ++q) c[((i * m + j) * O + o) * O + q] = D(i * O + o, j * O + q);
              break;
            case Mode::trace: c[i * m + j] += D(i * O + o, j * O + o); break;
            case Mode::diagonal: c[(i * m + j) * O + o] = D(i * O + o, j * O + o); break;
          }
        }
    for (int64_t e = 0; e < c.size(); ++e) k.total[e] += c[e];
    k.names.push_back(params[s].name);
    if (opt.components) k.components.push_back(std::move(c));
    step();
  }
  return k;
}

}  // namespace

template <class T>
Kernel<T> autograd_ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options) {
  return autograd_kernel(model, x1, &x2, options);
}

template <class T>
Kernel<T> autograd_ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options) {
  return autograd_kernel<T>(model, x, nullptr, options);
}

#define XNTK_INSTANTIATE(T)                                                                                \
  template std::vector<Tensor<T>> jacobians(const Sequential<T>&, TensorArg<T>);                           \
  template Kernel<T> autograd_ntk(const Sequential<T>&, TensorArg<T>, TensorArg<T>, const KernelOptions&); \
  template Kernel<T> autograd_ntk(const Sequential<T>&, TensorArg<T>, const KernelOptions&);
XNTK_INSTANTIATE(float)
XNTK_INSTANTIATE(double)
#undef XNTK_INSTANTIATE

}  // namespace xntk
