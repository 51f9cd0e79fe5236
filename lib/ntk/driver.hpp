#pragma once
// The explicit driver's entry point on a given backend (tests run it on CPU backends with fast paths forced).

#include "backend/backend.hpp"
#include "ntk/plan.hpp"
#include "xntk/kernel.hpp"
#include "xntk/sink.hpp"

namespace xntk::engine {

/// Explicit NTK Θ(X1, X2), or Θ(X1, X1) on one triangle when x2 is null, on `backend`.
template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend);
/// The same into k's tensors, reusing those already in the result's shape (zeroed in place): a loop computing
/// kernels of one shape again and again (a training run's probe, every epoch) then maps no fresh pages for
/// them. On an exception k is left without tensors.
template <class T>
void explicit_kernel_into(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend, Kernel<T>& k);
/// Which of the plan's tile pairs this process computes, and what follows each one's blocks into the sink:
/// a resumable run (the pairs a journal does not hold; record each as it completes) or one of several
/// processes (its share).
struct PairControl {
  virtual ~PairControl() = default;
  /// Whether to compute pair `index` of plan.pairs (asked once per pair, in order, before any is computed).
  virtual bool take(size_t index, const TilePair& pair) = 0;
  /// Pair `index`'s blocks have all gone to the sink.
  virtual void finished(size_t index) = 0;
};

/// The same into a sink (the returned Kernel holds no tensors); with `control`, only the pairs it takes.
template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend, Sink<T>& sink,
                          PairControl* control = nullptr);

}  // namespace xntk::engine
