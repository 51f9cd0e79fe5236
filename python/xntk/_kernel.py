"""Kernels, gradients and Jacobians of a Sequential, and the spectral analysis of a kernel."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import _xntk
from ._arrays import DTypeLike, as_array, as_batch, dtype_of, is_path
from ._files import read_safetensors
from ._sequential import Sequential
from ._xntk import Error

_MODES = ("full", "trace", "diagonal")
_METHODS = ("explicit", "autograd")

Progress = Callable[[int, int], Any]


def _model_for(net: Sequential, dtype: Optional[DTypeLike]) -> Sequential:
    if not isinstance(net, Sequential):
        raise TypeError(f"net: expected an xntk.Sequential (see xntk.from_torch), got {type(net).__name__}")
    if dtype is None or dtype_of(dtype) == net.dtype:
        return net
    return net.astype(dtype)


def _count(value: Optional[int], what: str, minimum: int) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise Error(f"{what}: expected an integer >= {minimum} or None, got {value!r}")
    return int(value)


def ntk(net: Sequential, x1: Any, x2: Any = None, mode: str = "full", components: bool = False,
        method: str = "explicit", dtype: Optional[DTypeLike] = None, threads: Optional[int] = None, *,
        progress: Optional[Progress] = None, tile: Optional[int] = None,
        memory_budget: Optional[int] = None) -> Union[np.ndarray, Tuple[np.ndarray, Dict[str, np.ndarray]]]:
    """The empirical NTK Θ(X1, X2) of `net` as a NumPy array: (N, M, O, O) in mode "full", (N, M) in "trace"
    (the sum over outputs), (N, M, O) in "diagonal". x2=None computes Θ(X1, X1) on one triangle, exactly
    symmetric. With components=True, returns (total, components): a dict of each parameter's kernel in
    component order (outermost layer first, weight before bias), which sum to the total.

    method: "explicit" (the layer-wise closed forms) or "autograd" (per-sample Jacobians; slow, for
    cross-checks). dtype: the arithmetic (default: the model's); inputs are converted to it unless they
    already are C-contiguous arrays of it, which are read in place. threads: OpenMP threads for this call
    (default: OpenMP's). progress(done, total) is called between steps. The GIL is released while computing;
    Ctrl-C raises KeyboardInterrupt at the next step. tile, memory_budget: samples per tile and working
    memory in bytes (default: planned from the available memory).
    """
    if mode not in _MODES:
        raise Error(f"mode: expected one of {', '.join(_MODES)}, got {mode!r}")
    if method not in _METHODS:
        raise Error(f"method: expected one of {', '.join(_METHODS)}, got {method!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable (done, total) or None, got {type(progress).__name__}")
    model = _model_for(net, dtype)
    a1 = as_batch(x1, "x1", model.dtype, model.input_shape)
    a2 = None if x2 is None else as_batch(x2, "x2", model.dtype, model.input_shape)
    with model._computing():
        total, names, comps, _methods, _flops, _tile = _xntk.ntk(
            model._core, a1, a2, mode, bool(components), method, _count(threads, "threads", 1),
            _count(tile, "tile", 1), _count(memory_budget, "memory_budget", 1), progress)
    if not components:
        return total
    return total, dict(zip(names, comps))


def gradient(net: Sequential, x: Any, cotangent: Any) -> Dict[str, np.ndarray]:
    """The vector-Jacobian product Σ_n (∂f(x_n)/∂θ)ᵀ c_n for every parameter θ, by name in state_dict order;
    with c = ∂L/∂f it is the gradient of a loss L. x is (N, *input_shape), cotangent (N, *output_shape)."""
    model = _model_for(net, None)
    a = as_batch(x, "x", model.dtype, model.input_shape)
    c = as_batch(cotangent, "cotangent", model.dtype, model.output_shape, of="output")
    with model._computing():
        return dict(_xntk.gradient(model._core, a, c))


def jacobians(net: Sequential, x: Any) -> Dict[str, np.ndarray]:
    """Per-sample Jacobians of the outputs with respect to each parameter from the autograd engine, by name
    in state_dict order, each (N, O, number of the parameter's entries)."""
    model = _model_for(net, None)
    a = as_batch(x, "x", model.dtype, model.input_shape)
    with model._computing():
        return dict(zip(model.parameter_names(), _xntk.jacobians(model._core, a)))


def analyze(kernel: Any, components: Optional[Union[Mapping[str, Any], str, "os.PathLike[str]"]] = None
            ) -> Dict[str, Any]:
    """The spectral summary of a kernel Θ(X, X) — an array (N, N, O, O), (N, N) or (N, N, O), a `.npy` path,
    or the (total, components) pair `ntk` returns — as a dict with the fields of `xntk analyze --json`
    (JSON values: lists, and None where the JSON has null). components: a dict of component kernels or a
    safetensors path; each one's share of the trace is reported, and an entry "total" must equal the kernel.
    Eigenvalues are computed in double; the tolerance uses the epsilon of the kernel's dtype."""
    file = None
    if isinstance(kernel, tuple) and len(kernel) == 2 and isinstance(kernel[1], Mapping) and components is None:
        kernel, components = kernel
    if is_path(kernel):
        file = os.fspath(kernel)
        kernel = np.load(file, allow_pickle=False)
    k = np.asarray(kernel) if not hasattr(kernel, "detach") else kernel.detach().cpu().numpy()
    dtype = "float32" if k.dtype == np.float32 else "float64"
    k64 = as_array(k, "kernel", np.dtype(np.float64))
    pairs = None
    if components is not None:
        if is_path(components):
            components = read_safetensors(components)
        if not isinstance(components, Mapping):
            raise TypeError(f"components: expected a dict or a safetensors path, got {type(components).__name__}")
        pairs = []
        for name, c in components.items():
            c64 = as_array(c, f"components[{name!r}]", np.dtype(np.float64))
            if c64.shape != k64.shape:
                raise Error(f"components[{name!r}]: shape {c64.shape}, expected the kernel's {k64.shape}")
            if name == "total":
                diff = float(np.max(np.abs(c64 - k64))) if k64.size else 0.0
                if diff > 1e-6 * float(np.max(np.abs(k64))):
                    raise Error(f"components['total'] differs from the kernel (max difference {diff:g}); expected "
                                "the components of the same kernel")
            pairs.append((str(name), c64))
    return _xntk.analyze(k64, pairs, file, dtype)
