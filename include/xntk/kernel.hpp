#pragma once
/// \file kernel.hpp
/// Empirical NTKs Θ(X1, X2) = J(X1) J(X2)ᵀ of a Sequential model: the explicit layer-wise path
/// (`ntk`) and the generic autograd path (`autograd_ntk`) that cross-checks it.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xntk/layers.hpp"
#include "xntk/model.hpp"
#include "xntk/tensor.hpp"

namespace xntk {

/// Which part of the (O × O) block of each sample pair is returned.
enum class Mode {
  full,     ///< (N, M, O, O)
  trace,    ///< (N, M): Σ_o Θ[o, o] — a sum, as in the functorch tutorial (neural-tangents averages)
  diagonal  ///< (N, M, O): Θ[o, o]
};

/// "full" / "trace" / "diagonal".
const char* name(Mode mode);

/// Options of a kernel computation.
struct KernelOptions {
  Mode mode = Mode::full;
  /// Keep each parameter tensor's own component (outermost layer first, weight before bias).
  bool components = false;
  /// Samples per tile (0: chosen from the memory budget).
  int64_t tile = 0;
  /// Working-memory budget in bytes for the tiles, on top of the outputs (0: half the available memory, which
  /// respects the process's memory cgroup limits). autograd_ntk: the budget for everything it holds (0: 90% of
  /// the available memory).
  int64_t memory_budget = 0;
  /// Threads (0: the OpenMP default).
  int threads = 0;
  /// The compute backend: "cpu" (the fastest kernels this CPU runs) or "reference" (plain loops on one
  /// thread, to cross-check a result end to end).
  std::string backend = "cpu";
  /// Called from the calling thread as work completes: (steps done, steps in all). A step is one layer with
  /// parameters of one tile pair (`ntk`), or the Jacobians of a few samples per thread or one component's
  /// contraction (`autograd_ntk`). An exception thrown from it stops the computation and propagates.
  std::function<void(int64_t, int64_t)> progress = nullptr;
  /// As `progress`, with the FLOPs done so far as a third argument (`autograd_ntk`: 0); either, both or neither
  /// may be set.
  std::function<void(int64_t, int64_t, double)> progress_flops = nullptr;
};

/// The evaluation order one conv layer's weight component was computed in.
struct MethodUsed {
  std::string layer;  ///< the layer's module path, e.g. "3" or "2.body.0"
  ConvMethod method = ConvMethod::gradients;
};

/// A kernel and, on request, its components.
template <class T>
struct Kernel {
  Tensor<T> total;                    ///< (N, M, O, O), (N, M) or (N, M, O) by mode
  std::vector<std::string> names;     ///< component names, e.g. "2.weight", in component order
  std::vector<Tensor<T>> components;  ///< one per name (empty unless requested), each shaped as total
  /// Per conv layer (outermost first), the evaluation order used; empty for MLPs.
  std::vector<MethodUsed> methods;
  double flops = 0;  ///< floating-point operations of the algorithm run
  int64_t tile = 0;  ///< samples per tile used

  /// The components with their names, in component order, as `analyze` and `write_safetensors` take them
  /// (copies; empty unless components were requested).
  std::vector<NamedTensor<T>> named_components() const {
    std::vector<NamedTensor<T>> v;
    for (size_t i = 0; i < components.size(); ++i) v.push_back({names[i], components[i]});
    return v;
  }
};

/// Explicit NTK Θ(X1, X2). X1 is (N, input...), X2 is (M, input...).
template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options = {});
/// Explicit NTK Θ(X, X), computed on one triangle and mirrored: exactly symmetric.
template <class T>
Kernel<T> ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options = {});

/// The same kernel through per-sample parameter Jacobians from a small reverse-mode engine
/// (slow, generic, shares no layer backward formula with `ntk`); the Jacobians are contracted on
/// `options.backend`'s dense product. `tile` is ignored; the Jacobians and the result (n·O·P + m·O·P + the
/// kernel's values) must fit the memory budget, or xntk::Error before anything is allocated.
template <class T>
Kernel<T> autograd_ntk(const Sequential<T>& model, TensorArg<T> x1, TensorArg<T> x2, const KernelOptions& options = {});
template <class T>
Kernel<T> autograd_ntk(const Sequential<T>& model, TensorArg<T> x, const KernelOptions& options = {});

/// Frees the scratch memory that `ntk` keeps cached between calls so that repeated calls reuse pages
/// they already touched (idle blocks up to a sixteenth of the memory available at the first call, within
/// 128 MB – 2 GB, stay cached). Safe to call at any time.
void release_cached_memory();

/// The dense-product library under the CPU backend and the kernels it chose for this CPU.
struct BlasInfo {
  std::string library;  ///< "openblas (openmp)", "openblas (pthreads)" or "eigen"
  std::string core;     ///< OpenBLAS's kernel set, e.g. "SkylakeX", "Zen", "Prescott"; empty with Eigen
  /// "SKYLAKEX" or "HASWELL" where OpenBLAS fell back to kernels without AVX2 on a CPU with AVX2 + FMA (it
  /// does on CPU models it does not know): setting OPENBLAS_CORETYPE to it before the process starts makes
  /// the products several times faster (the `xntk` command line restarts itself so). Empty otherwise.
  std::string better_coretype;
};
BlasInfo blas_info();

/// Per-sample Jacobians of the outputs with respect to each parameter, from the autograd engine:
/// one tensor per parameter in state_dict order, each (N, O, numel(parameter)).
template <class T>
std::vector<Tensor<T>> jacobians(const Sequential<T>& model, TensorArg<T> x);

}  // namespace xntk
