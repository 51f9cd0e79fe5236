#pragma once
/// \file dynamics.hpp
/// What kernels are for: predictions of gradient-descent training in function space from an NTK
/// (neural-tangents' `predict.gradient_descent_mse`, `gradient_descent` and `gp_inference`), and per-sample
/// Jacobians on request. Conventions (docs/dynamics.md): full-batch GD on the linearised network moves the
/// outputs as f_{k+1} = f_k − η Θ(X, X) ∇_f L(f_k), and on test points f_{k+1}(x) = f_k(x) − η Θ(x, X) ∇_f L(f_k),
/// with ∇_f L = (2/(N·O))(f − y) for mse. A full-mode kernel (N, N, O, O) acts as the (N·O × N·O) matrix with
/// row n·O + o; a diagonal-mode kernel (N, N, O) as that matrix without its cross-output blocks; an xntk
/// trace-mode kernel (N, N) is O times the per-output kernel (the trace sums over outputs), so it acts as
/// (Θ/O) ⊗ I_O.

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "xntk/kernel.hpp"
#include "xntk/model.hpp"
#include "xntk/train.hpp"

namespace xntk {

/// Per-sample Jacobians of the outputs with respect to every parameter: (N, O, P) with the parameters'
/// entries concatenated in component order (outermost layer first, weight before bias; each tensor
/// row-major): the lazy-training notebook's `features`. Through the layers' own formulas (Linear: c_w δ aᵀ per
/// sample and output). xntk::Error if the result would need more than 90% of the available memory.
template <class T>
Tensor<T> jacobian(const Sequential<T>& model, TensorArg<T> x);

/// The inputs of a kernel prediction. Kernels in any mode (see the file comment); targets and initial
/// outputs (N, O) (cross-entropy: targets may be labels (N)); initial outputs default to zero.
template <class T>
struct PredictInputs {
  TensorRef<T> k_train;                               ///< Θ(X, X)
  TensorRef<T> y;                                     ///< the training targets
  std::optional<TensorRef<T>> k_test = std::nullopt;  ///< Θ(X_test, X): (M, N, O, O), (M, N) or (M, N, O)
  std::optional<TensorRef<T>> f0_train = std::nullopt, f0_test = std::nullopt;
};

/// Predictions at the requested times: train (T, N, O) and, with a test kernel, test (T, M, O).
template <class T>
struct Predictions {
  Tensor<T> train, test;
};

/// The outputs after each of `steps` full-batch gradient-descent steps of learning rate `lr` on `loss`
/// (mse: in closed form by the eigendecomposition of Θ, so any step count costs the same; cross-entropy: by
/// iterating the function-space update). xntk::Error naming the kernel or targets if shapes disagree, the
/// kernel is not square or symmetric, or lr is not positive and finite.
template <class T>
Predictions<T> predict_steps(const PredictInputs<T>& in, Loss loss, double lr, const std::vector<int64_t>& steps);

/// The mse outputs after gradient flow for each time t (f_t − y = e^{−η (2/(N·O)) Θ t}(f₀ − y)), and at
/// t = +infinity kernel ridge regression with `ridge` ≥ 0: f(x) = f₀(x) + Θ(x, X)(Θ + ridge·I)⁺(y − f₀(X)),
/// the pseudo-inverse dropping eigenvalues at rounding level.
template <class T>
Predictions<T> predict_time(const PredictInputs<T>& in, double lr, const std::vector<double>& times, double ridge = 0);

}  // namespace xntk
