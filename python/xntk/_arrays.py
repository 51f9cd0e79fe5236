"""Inputs from NumPy and PyTorch: dtypes by name, and arrays the C++ core can read in place."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from ._xntk import Error

#: What a dtype argument may be: "float32" / "float64", a NumPy dtype or type, or a torch dtype.
DTypeLike = Union[str, type, np.dtype, Any]

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def dtype_of(dtype: DTypeLike, what: str = "dtype") -> np.dtype:
    """np.float32 or np.float64 for any spelling of them (torch.float32 included); Error otherwise."""
    text = str(dtype)
    spec = text[len("torch."):] if text.startswith("torch.") else dtype
    try:
        d = np.dtype(spec)
    except TypeError:
        d = None
    if d is None or d.name not in _DTYPES:
        raise Error(f"{what}: expected float32 or float64, got {dtype!r}")
    return _DTYPES[d.name]


def is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def is_torch_file(path: str) -> bool:
    """Whether a file is torch.save's: a zip archive (PyTorch ≥ 1.6) or a legacy pickle (protocol 2 to 5). A
    safetensors file, whose 8-byte header length may begin with any byte, has its JSON's '{' at byte 8."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False  # the reader names the file and the reason
    if head[8:9] == b"{":
        return False
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def torch_tensor_type() -> Optional[type]:
    """torch.Tensor if torch is loaded (a tensor cannot exist otherwise), else None: xntk never imports torch
    just to look at an input."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None) if torch is not None else None


def _shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def as_array(x: Any, what: str, dtype: np.dtype) -> np.ndarray:
    """`x` (a NumPy array, a CPU torch tensor, or anything np.asarray takes) as a C-contiguous, aligned array
    of `dtype`: the same memory when it already is one, otherwise converted once. Complex, boolean and
    non-numeric data, and tensors on another device, are refused."""
    tensor = torch_tensor_type()
    if tensor is not None and isinstance(x, tensor):
        if x.device.type != "cpu":
            raise Error(f"{what}: a torch tensor on {x.device}; xntk computes on the CPU (pass {what}.cpu())")
        if x.is_complex() or not (x.is_floating_point() or x.dtype in _torch_integer_dtypes()):
            raise Error(f"{what}: expected real numbers (float32 or float64), got {x.dtype}")
        x = x.detach()
        if str(x.dtype) != "torch." + dtype.name:
            x = x.to(getattr(sys.modules["torch"], dtype.name))  # converted once, on the torch side
        a = x.numpy()
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise Error(f"{what}: expected real numbers (float32 or float64), got dtype {a.dtype}")
    return np.require(a, dtype=dtype, requirements=("C", "A"))


def _torch_integer_dtypes() -> Tuple[Any, ...]:
    torch = sys.modules["torch"]
    return (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def shape_of(x: Any) -> Tuple[int, ...]:
    """The shape of an array-like without converting it (np.shape converts lists only)."""
    shape = getattr(x, "shape", None)
    return tuple(int(d) for d in (shape if shape is not None else np.shape(x)))


def as_batch(x: Any, what: str, dtype: np.dtype, sample_shape: Tuple[int, ...], of: str = "input") -> np.ndarray:
    """A batch (N, *sample_shape) — of the model's input, or of its output (`of`) — checked before anything is
    converted."""
    shape = shape_of(x)
    if len(shape) != len(sample_shape) + 1 or shape[1:] != tuple(sample_shape):
        expected = "(N, " + ", ".join(str(d) for d in sample_shape) + ")"
        raise Error(f"{what}: expected shape {expected} (samples first, then the model's {of} shape "
                    f"{_shape_text(sample_shape)}), got {_shape_text(shape)}")
    if shape[0] < 1:
        raise Error(f"{what}: expected at least one sample, got shape {_shape_text(shape)}")
    return as_array(x, what, dtype)
