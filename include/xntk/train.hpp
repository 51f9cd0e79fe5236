#pragma once
/// \file train.hpp
/// Training a model as PyTorch would (losses, torch.optim.SGD and Adam, full batch or mini-batches), the
/// lazy-training study's transforms (output scale α, centring), the linearised network, and the metrics of
/// the kernel over training (docs/dynamics.md). Gradients come from the layers' own formulas (xntk::gradient),
/// never from the autograd path. A model's BatchNorm layers train in eval mode (PyTorch's model.eval() during
/// training): they normalise by their running statistics, which stay fixed (buffers, not parameters), and only
/// γ and β are trained; train mode, whose batch statistics couple the samples, is refused when the model is built.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xntk/kernel.hpp"
#include "xntk/model.hpp"
#include "xntk/tensor.hpp"

namespace xntk {

/// The losses, as PyTorch defines them.
enum class Loss {
  mse,           ///< nn.MSELoss(): the mean of (f − y)² over all N·O elements
  cross_entropy  ///< nn.CrossEntropyLoss(): the mean over samples of −Σ_c y_c log softmax(f)_c (labels or
                 ///< probabilities)
};

/// "mse" / "cross_entropy".
const char* name(Loss loss);

/// A loss value and its derivative with respect to the outputs.
template <class T>
struct LossValue {
  double value = 0;
  Tensor<T> grad;  ///< ∂L/∂f, shaped as the outputs
};

/// L(f, y) and ∂L/∂f for outputs f (N, O) (or (N, output...) for mse). Targets: for mse the outputs' shape; for
/// cross_entropy class labels (N) holding integers in [0, O), or target probabilities / one-hot rows (N, O).
/// xntk::Error naming `what` if the targets do not fit the outputs or a label is out of range.
template <class T>
LossValue<T> loss(Loss kind, TensorRef<T> outputs, TensorArg<T> targets, const std::string& what = "targets");
template <class T>
LossValue<T> loss(Loss kind, const Tensor<T>& outputs, TensorArg<T> targets, const std::string& what = "targets") {
  return loss(kind, TensorRef<T>(outputs), targets, what);
}

/// The lazy-training notebook's transforms of a network f with initial parameters θ₀: the model trained is
/// α·f (the loss divided by α², as the notebook's `Scale` and `gd`), or with `center` α·(f − f₀) with f₀ the
/// frozen initial network (its `ZeroOutput`). Θ of α·f is α²·Θ; centring leaves Θ unchanged.
struct Transform {
  double alpha = 1.0;
  bool center = false;
};

/// torch.optim.SGD or torch.optim.Adam, with PyTorch's update rules (weight decay is added to the gradient).
struct Optimizer {
  enum class Kind { sgd, adam };
  Kind kind = Kind::sgd;
  double lr = 1e-3;
  double weight_decay = 0;
  // SGD
  double momentum = 0, dampening = 0;
  bool nesterov = false;
  // Adam
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool amsgrad = false;
};

/// The kernel metrics logged on a probe set (docs/dynamics.md): of the trained model's NTK Θ_t on the probe.
struct ProbeMetrics {
  double trace = 0, lambda_max = 0, lambda_min = 0;
  double condition = 0;  ///< λmax/λmin (+inf when not positive definite)
  double effective_rank = 0;
  std::vector<std::pair<std::string, double>> component_share;  ///< each component's share of the trace
  double kernel_change = 0;                                     ///< ‖Θ_t − Θ_0‖_F / ‖Θ_0‖_F
  double alignment_initial = 0;                                 ///< ⟨Θ_t, Θ_0⟩_F / (‖Θ_t‖_F ‖Θ_0‖_F)
  std::optional<double> alignment_targets;                      ///< A(Θ_t, yyᵀ), when the probe has targets
  /// RMS over the probe's outputs of α·(f(θ_t) − f_lin(θ_t)): how far the network is from its linearisation
  /// at θ₀ (of the trained parameters, whichever of the two was trained)
  double linearization_gap = 0;
  /// the same relative to the RMS of α·(f_lin(θ_t) − f(θ₀)), the linear model's own change
  double linearization_gap_relative = 0;
};

/// One logged step.
struct StepLog {
  int64_t step = 0;       ///< optimiser steps done (0: before training)
  int64_t epoch = 0;      ///< epochs done (a partial epoch counts as begun: step / steps_per_epoch, rounded down)
  double train_loss = 0;  ///< L(α·f, y) on the whole training set (not divided by α²)
  std::optional<double> test_loss;  ///< the same on the test set
  double weight_change = 0;         ///< ‖θ − θ₀‖ / ‖θ₀‖ over all parameters
  std::vector<std::pair<std::string, double>> weight_change_per_tensor;  ///< state_dict order
  std::optional<ProbeMetrics> probe;                                     ///< every ntk_every steps
};

/// The log as one JSON object on one line, without the newline (docs/dynamics.md's schema): keys "step",
/// "epoch", "train_loss", "test_loss" (when given), "weight_change", "weight_change_per_tensor" (name → value)
/// and "probe" (when measured: "trace", "lambda_max", "lambda_min", "condition", "effective_rank",
/// "component_share", "kernel_change", "alignment_initial", "alignment_targets", "linearization_gap",
/// "linearization_gap_relative"); a non-finite value (an infinite condition number) is null.
std::string log_line(const StepLog& log);

/// How to train.
struct TrainOptions {
  Loss loss = Loss::mse;
  Optimizer optimizer{};
  /// Optimiser steps; 0: `epochs` full passes over the data.
  int64_t steps = 0;
  int64_t epochs = 0;
  /// Samples per mini-batch; 0: the full batch. The last batch of an epoch may be smaller (drop_last=False).
  int64_t batch_size = 0;
  /// Reshuffle the samples at every epoch from `shuffle_seed` (xntk's own generator: seeded and
  /// reproducible, not PyTorch's sequence).
  bool shuffle = false;
  uint64_t shuffle_seed = 0;
  Transform transform{};
  /// Train the linearisation at θ₀, f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀), instead of the network: its
  /// forward is a Jacobian-vector product at θ₀, its gradient a vector-Jacobian product at θ₀ (J is never formed).
  bool linearized = false;
  /// A StepLog every this many steps (and at step 0 and the last step); 0: only those two.
  int64_t log_every = 1;
  /// Probe metrics every this many steps (and at step 0 and the last step); 0: never.
  int64_t ntk_every = 0;
  /// The mode of the probe's NTK (trace by default: one value per sample pair).
  Mode probe_mode = Mode::trace;
  /// Stop with xntk::Error naming the step when the loss, a gradient or an updated parameter is not finite;
  /// the model and the optimiser's state are left as they were before that step.
  bool stop_on_nonfinite = true;
  /// OpenMP threads for every step, loss and probe kernel of this trainer or run (0: OpenMP's default).
  int threads = 0;
};

/// The data of a training run: inputs (N, input...), targets (see `loss`), and optionally a test set and a
/// probe set for the kernel metrics (with optional targets for the target alignment).
template <class T>
struct TrainData {
  TensorRef<T> x, y;
  std::optional<TensorRef<T>> x_test = std::nullopt, y_test = std::nullopt;
  std::optional<TensorRef<T>> probe = std::nullopt, probe_y = std::nullopt;
};

namespace detail {
struct TrainerAccess;  // train()'s access to a trainer's work arrays (lib/dynamics/train.cpp)
}  // namespace detail

/// Trains step by step: keeps θ₀ (the parameters when constructed) for the transforms, the linearisation and
/// the metrics, and the optimiser's state.
template <class T>
class Trainer {
 public:
  /// `model` is trained in place and must outlive the trainer.
  Trainer(Sequential<T>& model, TrainOptions options);
  ~Trainer();
  Trainer(Trainer&&) noexcept;
  Trainer& operator=(Trainer&&) noexcept;

  /// The trained model's outputs on x: α·f(x; θ) (α·(f(x; θ) − f(x; θ₀)) when centred), or its linearisation.
  Tensor<T> outputs(TensorArg<T> x) const;
  /// The network's linearisation at θ₀ at the current θ, transformed as `outputs`.
  Tensor<T> linearized_outputs(TensorArg<T> x) const;
  /// The network itself at the current θ, transformed as `outputs`.
  Tensor<T> network_outputs(TensorArg<T> x) const;
  /// One optimiser step on a batch (x, y); returns L(α·f, y) on it before the step.
  double step(TensorArg<T> x, TensorArg<T> y);
  /// ‖θ − θ₀‖ / ‖θ₀‖, overall and per parameter tensor (state_dict order).
  std::pair<double, std::vector<std::pair<std::string, double>>> weight_change() const;
  /// The trained model's NTK on `probe` in `mode` (α²·Θ; for the linearisation, Θ at θ₀).
  Kernel<T> kernel(TensorArg<T> probe, Mode mode) const;
  /// Steps taken.
  int64_t steps() const;
  const TrainOptions& options() const;
  /// The model at θ₀.
  const Sequential<T>& initial() const;

 private:
  friend struct detail::TrainerAccess;
  struct State;
  std::unique_ptr<State> s_;
};

/// Trains `model` in place over the data: options.steps steps (or options.epochs epochs), calling `on_log`
/// with a StepLog at step 0, every options.log_every steps and at the last step. Returns the last log.
template <class T>
StepLog train(Sequential<T>& model, const TrainData<T>& data, const TrainOptions& options,
              const std::function<void(const StepLog&)>& on_log = {});

}  // namespace xntk
