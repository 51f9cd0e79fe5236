#pragma once
// The explicit driver's entry point on a given backend (tests run it on CPU backends with fast paths forced).

#include "backend/backend.hpp"
#include "xntk/kernel.hpp"
#include "xntk/sink.hpp"

namespace xntk::engine {

/// Explicit NTK Θ(X1, X2), or Θ(X1, X1) on one triangle when x2 is null, on `backend`.
template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend);
/// The same into a sink (the returned Kernel holds no tensors).
template <class T>
Kernel<T> explicit_kernel(const Sequential<T>& model, TensorArg<T> x1, const TensorRef<T>* x2,
                          const KernelOptions& options, const backend::Backend& backend, Sink<T>& sink);

}  // namespace xntk::engine
