"""xntk.Sequential: a model of the model JSON, with parameters named as PyTorch's state_dict."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import _xntk
from ._arrays import DTypeLike, as_array, as_batch, dtype_of, is_path, is_torch_file
from ._xntk import Error

PathLike = Union[str, "os.PathLike[str]"]


class Sequential:
    """A sequential model (layers, residual blocks, nested sequentials) on a fixed per-sample input shape, in
    float32 or float64, as the model JSON of docs/cli.md describes it. Parameters are named by the
    `nn.Sequential` state_dict keys of the same model ("0.weight", "2.body.0.bias").

    `spec` is the model JSON as a dict (or its text); parameters are initialised from `seed` by the
    parameterisation's distributions (PyTorch's for "standard"), drawn in double so that float32 and float64
    models of one seed agree to rounding.
    """

    def __init__(self, spec: Union[Mapping[str, Any], str], seed: int = 0, dtype: DTypeLike = "float64") -> None:
        text = spec if isinstance(spec, str) else _json_text(spec)
        self._init(_model_class(dtype)(text, "model", _seed(seed)))

    def _init(self, core: Any, torch_names: Optional[Dict[str, str]] = None) -> None:
        self._core = core
        self._busy = 0  # calls computing on this model with the GIL released
        self.torch_names = torch_names

    @classmethod
    def _wrap(cls, core: Any, torch_names: Optional[Dict[str, str]] = None) -> "Sequential":
        net = cls.__new__(cls)
        net._init(core, torch_names)
        return net

    @classmethod
    def from_json(cls, path_or_dict: Union[PathLike, Mapping[str, Any]], seed: int = 0,
                  dtype: DTypeLike = "float64") -> "Sequential":
        """The model of a model JSON file, or of the same JSON as a dict."""
        if is_path(path_or_dict):
            return cls._wrap(_model_class(dtype).from_file(os.fspath(path_or_dict), _seed(seed)))
        if not isinstance(path_or_dict, Mapping):
            raise TypeError(f"path_or_dict: expected a file path or a dict, got {type(path_or_dict).__name__}")
        return cls(path_or_dict, seed, dtype)

    # ---- description ----

    def to_json(self, path: Optional[PathLike] = None) -> str:
        """The model JSON (every field explicit); also written to `path` (atomically) when given."""
        if path is not None:
            self._core.save_json(os.fspath(path))
        return self._core.to_json()

    @property
    def spec(self) -> Dict[str, Any]:
        """The model JSON as a dict (a copy: changing it does not change the model)."""
        return json.loads(self._core.to_json())

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._core.dtype)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Per-sample input shape, e.g. (784,) or (3, 32, 32)."""
        return tuple(self._core.input_shape)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        """Per-sample output shape; the kernel's O is its product."""
        return tuple(self._core.output_shape)

    @property
    def num_parameters(self) -> int:
        return int(self._core.num_parameters)

    def parameter_names(self) -> List[str]:
        """Parameter names in state_dict order ("0.weight", "0.bias", "2.weight", ...)."""
        return list(self._core.parameter_names())

    def component_names(self) -> List[str]:
        """Kernel component names in component order: outermost layer first, weight before bias."""
        return list(self._core.component_names())

    def __repr__(self) -> str:
        return (f"xntk.Sequential(input {self.input_shape}, output {self.output_shape}, "
                f"{self.num_parameters} parameters, {self.dtype.name})")

    # ---- parameters ----

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Every parameter as a NumPy array (a copy), in state_dict order."""
        return dict(self._core.state_dict())

    def load_weights(self, path_or_state_dict: Union[PathLike, Mapping[str, Any]]) -> "Sequential":
        """Sets every parameter from a safetensors file, a file of torch.save(module.state_dict()) (read with
        torch.load(weights_only=True)), or a dict of arrays or torch tensors (a torch state_dict). Every parameter must be given, with its exact shape and finite values, and nothing else;
        on error the model is unchanged. For a model from `from_torch`, the module's own state_dict keys
        (`torch_names`' values) are accepted too. Returns the model."""
        if self._busy:
            raise Error("load_weights: the model is in use by a running computation")
        if is_path(path_or_state_dict):
            path = os.fspath(path_or_state_dict)
            if not is_torch_file(path):
                self._core.load_weights(path)
                return self
            path_or_state_dict = _torch_state_dict(path)
        if not isinstance(path_or_state_dict, Mapping):
            raise TypeError(f"path_or_state_dict: expected a file path or a dict, got "
                            f"{type(path_or_state_dict).__name__}")
        values = dict(path_or_state_dict)
        if self.torch_names and not set(values) & set(self.torch_names):
            back = {t: x for x, t in self.torch_names.items()}
            values = {back.get(k, k): v for k, v in values.items()}
        pairs = [(str(k), as_array(v, f"state_dict[{k!r}]", self.dtype)) for k, v in values.items()]
        self._core.set_parameters(pairs, "state_dict")
        return self

    def save_weights(self, path: PathLike) -> None:
        """Writes the parameters as safetensors under their names (the file `xntk compute --weights` reads)."""
        self._core.save_weights(os.fspath(path))

    def copy(self) -> "Sequential":
        """An independent copy: the same spec, parameters and buffers (no random draws). Also what copy.copy and
        copy.deepcopy return."""
        return Sequential._wrap(self._core.copy(), None if self.torch_names is None else dict(self.torch_names))

    def __copy__(self) -> "Sequential":
        return self.copy()

    def __deepcopy__(self, memo: Dict[int, Any]) -> "Sequential":
        return self.copy()

    def astype(self, dtype: DTypeLike) -> "Sequential":
        """A copy in another dtype (parameters rounded to it)."""
        d = dtype_of(dtype)
        if d == self.dtype:
            return self.copy()
        core = self._core.as_float32() if d == np.float32 else self._core.as_float64()
        return Sequential._wrap(core, self.torch_names)

    # ---- computing ----

    def forward(self, x: Any) -> np.ndarray:
        """The outputs (N, *output_shape) for a batch (N, *input_shape)."""
        a = as_batch(x, "x", self.dtype, self.input_shape)
        with self._computing():
            return self._core.forward(a)

    __call__ = forward

    def _computing(self) -> "_Busy":
        return _Busy(self)


class _Busy:
    """Marks a model as in use while the GIL is released, so that another thread cannot change its weights."""

    def __init__(self, net: Sequential) -> None:
        self.net = net

    def __enter__(self) -> None:
        self.net._busy += 1

    def __exit__(self, *exc: Any) -> None:
        self.net._busy -= 1


def _torch_state_dict(path: str) -> Mapping[str, Any]:
    """The state_dict a torch.save file holds (tensors only: torch.load with weights_only=True)."""
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever torch's unpickler refuses: a pickled module, a damaged file
        raise Error(f"{path}: a PyTorch file that torch.load(weights_only=True) cannot read ({type(e).__name__}: "
                    f"{e}); expected torch.save(module.state_dict())") from None
    if not isinstance(value, Mapping) or not all(torch.is_tensor(v) for v in value.values()):
        raise Error(f"{path}: a PyTorch file holding {type(value).__name__}; expected torch.save(module.state_dict())")
    return value


def _model_class(dtype: DTypeLike) -> Any:
    return _xntk.Model32 if dtype_of(dtype) == np.float32 else _xntk.Model64


def _seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise Error(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _json_text(spec: Mapping[str, Any]) -> str:
    try:
        return json.dumps(spec)
    except TypeError as e:
        raise Error(f"spec: not expressible as JSON ({e})") from None
