"""safetensors files as dicts of NumPy arrays, through xntk's validating reader and atomic writer."""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np

from . import _xntk
from ._arrays import DTypeLike, as_array, dtype_of, is_torch_file, torch_tensor_type
from ._xntk import Error

PathLike = Union[str, "os.PathLike[str]"]


def _header_dtypes(path: str) -> Dict[str, str]:
    """Each tensor's dtype from a safetensors header, or {} when the header cannot be read (the C++ reader
    then reports what is wrong)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 << 20:
                return {}
            header = json.loads(f.read(length))
        return {k: v["dtype"] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return {}


def read_safetensors(path: PathLike) -> Dict[str, np.ndarray]:
    """Every tensor of a safetensors file (F32 as float32, F64 as float64), in the order of their data in the
    file. The whole header is validated against the file before anything is allocated."""
    path = os.fspath(path)
    if is_torch_file(path):
        raise Error(f"{path}: a PyTorch file (torch.save), not safetensors; read it with torch.load, or pass the "
                    "path to Sequential.load_weights, which reads a saved state_dict")
    kinds = _header_dtypes(path)
    if set(kinds.values()) == {"F32"}:
        tensors, _ = _xntk.read_safetensors_float32(path)
        return dict(tensors)
    tensors, _ = _xntk.read_safetensors_float64(path)
    return {name: (a.astype(np.float32) if kinds.get(name) == "F32" else a) for name, a in tensors}


def read_safetensors_metadata(path: PathLike) -> Dict[str, str]:
    """The `__metadata__` strings of a safetensors file (validated as read_safetensors does)."""
    _, metadata = _xntk.read_safetensors_float64(os.fspath(path))
    return dict(metadata)


def write_safetensors(path: PathLike, tensors: Mapping[str, Any], dtype: Optional[DTypeLike] = None,
                      metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes NumPy arrays or torch tensors as safetensors, in the dict's order, atomically. dtype: "float32"
    or "float64" for all (default: float32 when every tensor is float32, else float64, which holds float32
    values exactly)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors: expected a dict of arrays, got {type(tensors).__name__}")
    tensor_type = torch_tensor_type()
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise Error(f"tensors: names must be strings, got {name!r}")
        if tensor_type is not None and isinstance(value, tensor_type):
            value = value.detach().cpu()
            kind = str(value.dtype).replace("torch.", "")
        else:
            value = np.asarray(value)
            kind = value.dtype.name
        if kind not in ("float32", "float64") and dtype is None:
            raise Error(f"tensors[{name!r}]: dtype {kind}; xntk writes float32 or float64 (pass dtype= to convert)")
        arrays[name] = (value, kind)
    if dtype is None:
        target = np.dtype(np.float32) if all(k == "float32" for _, k in arrays.values()) else np.dtype(np.float64)
    else:
        target = dtype_of(dtype)
    pairs = [(name, as_array(v, f"tensors[{name!r}]", target)) for name, (v, _) in arrays.items()]
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    write = _xntk.write_safetensors_float32 if target == np.float32 else _xntk.write_safetensors_float64
    write(os.fspath(path), pairs, meta)
