"""Training and what kernels predict (include/xntk/train.hpp, dynamics.hpp): losses, forward-mode products, the
per-sample Jacobian, neural-tangents-style predictions, Trainer and train — the C++ API's names."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _xntk
from ._arrays import as_array, as_batch, shape_of
from ._kernel import _count, _model_for
from ._sequential import Sequential
from ._xntk import Error

_LOSSES = ("mse", "cross_entropy")
_MODES = ("full", "trace", "diagonal")


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a number, got {type(value).__name__}")
    return float(value)


def _choice(value: Any, what: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise Error(f"{what}: expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise Error(f"{what}: expected a non-negative integer, got {value!r}")
    return int(value)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what}: expected True or False, got {value!r}")
    return bool(value)


@dataclasses.dataclass
class Optimizer:
    """torch.optim.SGD (kind="sgd": lr, momentum, dampening, nesterov, weight_decay) or torch.optim.Adam
    (kind="adam": lr, beta1, beta2, eps, weight_decay, amsgrad), with PyTorch's update rules.
    `Optimizer.sgd(...)` and `Optimizer.adam(...)` take torch's argument names (Adam's betas as a pair)."""

    kind: str = "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False

    @classmethod
    def sgd(cls, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
            nesterov: bool = False) -> "Optimizer":
        return cls("sgd", lr, weight_decay, momentum, dampening, nesterov)

    @classmethod
    def adam(cls, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
             weight_decay: float = 0.0, amsgrad: bool = False) -> "Optimizer":
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise Error(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        return cls("adam", lr, weight_decay, beta1=betas[0], beta2=betas[1], eps=eps, amsgrad=amsgrad)

    def _checked(self) -> "Optimizer":
        _choice(self.kind, "optimizer.kind", ("sgd", "adam"))
        for f in ("lr", "weight_decay", "momentum", "dampening", "beta1", "beta2", "eps"):
            _float(getattr(self, f), f"optimizer.{f}")
        for f in ("nesterov", "amsgrad"):
            _flag(getattr(self, f), f"optimizer.{f}")
        return self


@dataclasses.dataclass
class Transform:
    """The lazy-training notebook's transforms: the model trained is alpha·f (the loss divided by alpha²), or
    with center=True alpha·(f − f₀), f₀ the frozen initial network."""

    alpha: float = 1.0
    center: bool = False


@dataclasses.dataclass
class TrainOptions:
    """How to train (the fields of xntk::TrainOptions). steps: optimiser steps, or 0 and `epochs` full passes;
    batch_size 0: the full batch; shuffle reshuffles every epoch from shuffle_seed (xntk's generator, not
    PyTorch's sequence); linearized trains f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀); a log every log_every steps
    (and at step 0 and the last), the probe's kernel metrics every ntk_every steps (0: never) in probe_mode;
    stop_on_nonfinite raises an Error naming the step; threads: OpenMP threads for the kernels (None: OpenMP's)."""

    loss: str = "mse"
    optimizer: Optimizer = dataclasses.field(default_factory=Optimizer)
    steps: int = 0
    epochs: int = 0
    batch_size: int = 0
    shuffle: bool = False
    shuffle_seed: int = 0
    transform: Transform = dataclasses.field(default_factory=Transform)
    linearized: bool = False
    log_every: int = 1
    ntk_every: int = 0
    probe_mode: str = "trace"
    stop_on_nonfinite: bool = True
    threads: Optional[int] = None

    def _checked(self) -> "TrainOptions":
        _choice(self.loss, "loss", _LOSSES)
        if not isinstance(self.optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an xntk.Optimizer, got {type(self.optimizer).__name__}")
        self.optimizer._checked()
        if not isinstance(self.transform, Transform):
            raise TypeError(f"transform: expected an xntk.Transform, got {type(self.transform).__name__}")
        _float(self.transform.alpha, "transform.alpha")
        _flag(self.transform.center, "transform.center")
        for f in ("steps", "epochs", "batch_size", "shuffle_seed", "log_every", "ntk_every"):
            _integer(getattr(self, f), f)
        for f in ("shuffle", "linearized", "stop_on_nonfinite"):
            _flag(getattr(self, f), f)
        _choice(self.probe_mode, "probe_mode", _MODES)
        _count(self.threads, "threads", 1)
        return self


def _options(options: Optional[TrainOptions], fields: Dict[str, Any]) -> TrainOptions:
    """`options` with the keyword fields replaced (TypeError naming an unknown one)."""
    if options is None:
        options = TrainOptions()
    elif not isinstance(options, TrainOptions):
        raise TypeError(f"options: expected an xntk.TrainOptions, got {type(options).__name__}")
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    for k in fields:
        if k not in known:
            raise TypeError(f"unexpected keyword argument {k!r}; the training options are {', '.join(sorted(known))}")
    return dataclasses.replace(options, **fields)._checked()


def _targets(y: Any, what: str, dtype: np.dtype, n: Optional[int] = None) -> np.ndarray:
    """Targets in the model's dtype: values, or class labels (integers) for cross-entropy."""
    shape = shape_of(y)
    if n is not None and (not shape or shape[0] != n):
        raise Error(f"{what}: expected {n} samples first (as the inputs), got shape {shape}")
    return as_array(y, what, dtype)


# ---- losses, forward mode, Jacobian ----


def loss(kind: str, outputs: Any, targets: Any) -> Tuple[float, np.ndarray]:
    """(L, ∂L/∂f) of PyTorch's nn.MSELoss() (kind="mse": the mean over all N·O elements; targets shaped as the
    outputs) or nn.CrossEntropyLoss() (kind="cross_entropy": the mean over samples; targets class labels (N)
    or probabilities (N, O)). The arithmetic is the outputs' dtype (float32 or float64, else float64)."""
    _choice(kind, "kind", _LOSSES)
    f = np.asarray(outputs) if not hasattr(outputs, "detach") else outputs.detach().cpu().numpy()
    dtype = np.dtype(np.float32) if f.dtype == np.float32 else np.dtype(np.float64)
    f = as_array(f, "outputs", dtype)
    y = _targets(targets, "targets", dtype)
    call = _xntk.loss_float32 if dtype == np.float32 else _xntk.loss_float64
    value, grad = call(kind, f, y)
    return float(value), grad


def jvp(net: Sequential, x: Any, tangents: Dict[str, Any]) -> np.ndarray:
    """Σ_θ (∂f(x_n)/∂θ) v_θ for each sample, (N, *output_shape): the forward-mode product with tangents v named
    as the parameters (a parameter not named has a zero tangent), by the layers' forward-mode formulas."""
    model = _model_for(net, None)
    a = as_batch(x, "x", model.dtype, model.input_shape)
    if not isinstance(tangents, dict):
        raise TypeError(f"tangents: expected a dict of arrays by parameter name, got {type(tangents).__name__}")
    pairs = [(str(k), as_array(v, f"tangents[{k!r}]", model.dtype)) for k, v in tangents.items()]
    with model._computing():
        return _xntk.jvp(model._core, a, pairs)


def jacobian(net: Sequential, x: Any) -> np.ndarray:
    """Per-sample Jacobians (N, O, P) of the outputs with respect to every parameter, the parameters' entries
    concatenated in component order (net.component_names(): outermost layer first, weight before bias),
    through the layers' own formulas; an Error if it would need more than 90% of the available memory.
    (`xntk.jacobians` gives the autograd path's per-parameter Jacobians instead.)"""
    model = _model_for(net, None)
    a = as_batch(x, "x", model.dtype, model.input_shape)
    with model._computing():
        return _xntk.jacobian(model._core, a)


# ---- predictions ----


class Predictions(NamedTuple):
    """Predicted outputs at the requested times: train (T, N, O), and test (T, M, O) with a test kernel."""

    train: np.ndarray
    test: Optional[np.ndarray]


# the C++ messages name the inputs in words (as the command line's files); here they name the arguments
_ARGUMENTS = [("the training kernel", "k_train"), ("the test kernel", "k_test"), ("the targets", "y"),
              ("the initial training outputs", "f0_train"), ("the initial test outputs", "f0_test"),
              ("initial test outputs", "f0_test"), ("predictions: the learning rate", "lr"),
              ("predictions: a step count", "steps"), ("predictions: a time", "times"),
              ("predictions: the ridge", "ridge")]


def _named(e: Error) -> Error:
    text = str(e)
    for words, arg in _ARGUMENTS:
        if text.startswith(words):
            return Error(f"{arg}: {text}")
    return e


def _prediction_arrays(k_train: Any, y: Any, k_test: Any, f0_train: Any, f0_test: Any
                       ) -> Tuple[np.dtype, List[Optional[np.ndarray]]]:
    k = np.asarray(k_train) if not hasattr(k_train, "detach") else k_train.detach().cpu().numpy()
    dtype = np.dtype(np.float32) if k.dtype == np.float32 else np.dtype(np.float64)
    arrays = [as_array(k, "k_train", dtype), as_array(y, "y", dtype)]
    for value, what in ((k_test, "k_test"), (f0_train, "f0_train"), (f0_test, "f0_test")):
        arrays.append(None if value is None else as_array(value, what, dtype))
    return dtype, arrays


def predict_steps(k_train: Any, y: Any, lr: float, steps: Union[int, Sequence[int]], loss: str = "mse", *,
                  k_test: Any = None, f0_train: Any = None, f0_test: Any = None) -> Predictions:
    """The outputs after each of `steps` full-batch gradient-descent steps of learning rate lr on `loss`, in
    function space from the NTK (neural-tangents' predict.gradient_descent_mse / gradient_descent): on the
    training points from k_train = Θ(X, X), and with k_test = Θ(X_test, X) on the test points. Kernels in any
    mode (a full kernel acts as (N·O × N·O); an xntk trace kernel is O times the per-output kernel, since the
    trace sums); y (N, O) (cross-entropy: or labels (N)); f0_train / f0_test the initial outputs (default 0).
    The dtype is the kernel's (float32 or float64)."""
    _choice(loss, "loss", _LOSSES)
    lr = _float(lr, "lr")
    counts = [steps] if isinstance(steps, (int, np.integer)) else list(steps)
    counts = [_integer(s, "steps") for s in counts]
    dtype, (k, yy, kt, f0, f0t) = _prediction_arrays(k_train, y, k_test, f0_train, f0_test)
    if loss == "cross_entropy" and yy.ndim == 1 and k.ndim == 2 and f0 is None:
        raise Error("f0_train: cross-entropy on labels with a trace-mode kernel needs the initial outputs (N, O) "
                    "for the number of classes")
    call = _xntk.predict_steps_float32 if dtype == np.float32 else _xntk.predict_steps_float64
    try:
        return Predictions(*call(k, yy, kt, f0, f0t, loss, lr, counts))
    except Error as e:
        raise _named(e) from None


def predict_time(k_train: Any, y: Any, lr: float, times: Union[float, Sequence[float]], ridge: float = 0.0, *,
                 k_test: Any = None, f0_train: Any = None, f0_test: Any = None) -> Predictions:
    """The mse outputs after gradient flow for each time t: f_t − y = exp(−lr·(2/(N·O))·Θ·t)(f₀ − y) (neural-tangents'
    predict.gradient_descent_mse with t), and at t = math.inf kernel ridge regression with `ridge` ≥ 0,
    f(x) = f₀(x) + Θ(x, X)(Θ + ridge·I)⁺(y − f₀(X)) (gp_inference on the NTK). Arguments as predict_steps."""
    lr = _float(lr, "lr")
    ts = [times] if isinstance(times, (int, float, np.integer, np.floating)) else list(times)
    ts = [_float(t, "times") for t in ts]
    dtype, (k, yy, kt, f0, f0t) = _prediction_arrays(k_train, y, k_test, f0_train, f0_test)
    call = _xntk.predict_time_float32 if dtype == np.float32 else _xntk.predict_time_float64
    try:
        return Predictions(*call(k, yy, kt, f0, f0t, lr, ts, _float(ridge, "ridge")))
    except Error as e:
        raise _named(e) from None


def predict(k_train: Any, y: Any, lr: float, *, steps: Optional[Union[int, Sequence[int]]] = None,
            time: Optional[Union[float, Sequence[float]]] = None, loss: str = "mse", ridge: float = 0.0,
            k_test: Any = None, f0_train: Any = None, f0_test: Any = None) -> Predictions:
    """predict_steps (steps=...) or predict_time (time=..., mse only; math.inf for the t = ∞ limit): exactly one
    of the two."""
    if (steps is None) == (time is None):
        raise Error("predict: give exactly one of steps= (gradient-descent steps) and time= (gradient flow)")
    if steps is not None:
        if ridge != 0.0:
            raise Error("ridge: applies to time=inf only (predict_time)")
        return predict_steps(k_train, y, lr, steps, loss, k_test=k_test, f0_train=f0_train, f0_test=f0_test)
    if loss != "mse":
        raise Error(f"loss: continuous time is for mse, got {loss!r} (use steps=)")
    return predict_time(k_train, y, lr, time, ridge, k_test=k_test, f0_train=f0_train, f0_test=f0_test)


# ---- training ----

StepLog = Dict[str, Any]
OnLog = Callable[[StepLog], Any]


class Trainer:
    """Trains `net` in place step by step (xntk::Trainer): keeps θ₀ (the parameters when constructed) for the
    transforms, the linearisation and the metrics, and the optimiser's state. Options as TrainOptions, or its
    fields as keywords: Trainer(net, loss="mse", optimizer=xntk.Optimizer.sgd(0.1))."""

    def __init__(self, net: Sequential, options: Optional[TrainOptions] = None, **fields: Any) -> None:
        self.net = _model_for(net, None)
        self.options = _options(options, fields)
        core = _xntk.Trainer32 if self.net.dtype == np.float32 else _xntk.Trainer64
        self._core = core(self.net._core, self.options)

    def _batch(self, x: Any, what: str = "x") -> np.ndarray:
        return as_batch(x, what, self.net.dtype, self.net.input_shape)

    def outputs(self, x: Any) -> np.ndarray:
        """The trained model's outputs: α·f(x; θ) (α·(f − f₀) when centred), or its linearisation."""
        a = self._batch(x)
        with self.net._computing():
            return self._core.outputs(a)

    def linearized_outputs(self, x: Any) -> np.ndarray:
        """The linearisation at θ₀ at the current θ, transformed as outputs."""
        a = self._batch(x)
        with self.net._computing():
            return self._core.linearized_outputs(a)

    def network_outputs(self, x: Any) -> np.ndarray:
        """The network itself at the current θ, transformed as outputs."""
        a = self._batch(x)
        with self.net._computing():
            return self._core.network_outputs(a)

    def step(self, x: Any, y: Any) -> float:
        """One optimiser step on the batch (x, y); returns the loss L(α·f, y) on it before the step."""
        a = self._batch(x)
        b = _targets(y, "y", self.net.dtype, a.shape[0])
        with self.net._computing():
            return float(self._core.step(a, b))

    def weight_change(self) -> Tuple[float, Dict[str, float]]:
        """‖θ − θ₀‖ / ‖θ₀‖ overall, and per parameter tensor in state_dict order."""
        return self._core.weight_change()

    def kernel(self, probe: Any, mode: str = "trace", components: bool = False
               ) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, np.ndarray]]]:
        """The trained model's NTK on `probe` (α²·Θ; for the linearisation, Θ at θ₀), as xntk.ntk returns it."""
        _choice(mode, "mode", _MODES)
        a = self._batch(probe, "probe")
        with self.net._computing():
            total, names, comps = self._core.kernel(a, mode)
        return (total, dict(zip(names, comps))) if components else total

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return int(self._core.steps)

    def initial(self) -> Sequential:
        """A copy of the model at θ₀."""
        return Sequential._wrap(self._core.initial(), self.net.torch_names)


def train(net: Sequential, x: Any, y: Any, options: Optional[TrainOptions] = None, *, x_test: Any = None,
          y_test: Any = None, probe: Any = None, probe_y: Any = None, on_log: Optional[OnLog] = None,
          **fields: Any) -> StepLog:
    """Trains `net` in place (xntk::train): options.steps steps or options.epochs epochs over (x, y), calling
    on_log(log) at step 0, every log_every steps and at the last step; returns the last log. Options as
    TrainOptions or its fields as keywords. x_test and y_test give the test loss; probe (default: x, when
    ntk_every > 0) and probe_y (default: y) the kernel metrics. A log is a dict: step, epoch, train_loss,
    test_loss (None without a test set), weight_change, weight_change_per_tensor {name: value}, probe (None, or
    trace, lambda_max, lambda_min, condition, effective_rank, component_share {name: share}, kernel_change,
    alignment_initial, alignment_targets, linearization_gap, linearization_gap_relative). The GIL is released
    while training; Ctrl-C raises KeyboardInterrupt at the next log."""
    model = _model_for(net, None)
    opts = _options(options, fields)
    if opts.steps == 0 and opts.epochs == 0:
        raise Error("steps: give a number of steps or epochs (steps= or epochs=)")
    if on_log is not None and not callable(on_log):
        raise TypeError(f"on_log: expected a callable (log dict) or None, got {type(on_log).__name__}")
    if (x_test is None) != (y_test is None):
        raise Error("x_test, y_test: give both (the test loss needs inputs and targets) or neither")
    if probe_y is not None and probe is None:
        raise Error("probe_y: given without probe")
    a = as_batch(x, "x", model.dtype, model.input_shape)
    b = _targets(y, "y", model.dtype, a.shape[0])
    at = None if x_test is None else as_batch(x_test, "x_test", model.dtype, model.input_shape)
    bt = None if y_test is None else _targets(y_test, "y_test", model.dtype, at.shape[0])
    p = None if probe is None else as_batch(probe, "probe", model.dtype, model.input_shape)
    py = None if probe_y is None else _targets(probe_y, "probe_y", model.dtype, p.shape[0])
    with model._computing():
        return _xntk.train(model._core, a, b, at, bt, p, py, opts, on_log)


__all__ = ["Optimizer", "Predictions", "StepLog", "TrainOptions", "Trainer", "Transform", "jacobian", "jvp", "loss",
           "predict", "predict_steps", "predict_time", "train"]
