"""xntk: empirical neural tangent kernels of MLPs and CNNs from closed-form, layer-wise formulas.

    import torch.nn as nn, xntk
    model = nn.Sequential(nn.Linear(784, 100), nn.Tanh(), nn.Linear(100, 1))
    net = xntk.from_torch(model, (784,))
    K = xntk.ntk(net, x)                      # (N, N, 1, 1), NumPy
    xntk.analyze(K)["condition"]

See docs/python.md. `import xntk` does not import torch; `from_torch` and `xntk.torch` do.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ._xntk import Error, __version__, blas_info, release_cached_memory
from ._files import read_safetensors, read_safetensors_metadata, write_safetensors
from ._from_torch import export_torch, from_torch
from ._kernel import analyze, gradient, jacobians, ntk
from ._sequential import Sequential
from ._train import (Optimizer, Predictions, Trainer, TrainOptions, Transform, jacobian, jvp, loss, predict,
                     predict_steps, predict_time, train)

__all__ = [
    "Error",
    "Optimizer",
    "Predictions",
    "Sequential",
    "TrainOptions",
    "Trainer",
    "Transform",
    "analyze",
    "blas_info",
    "export_torch",
    "from_torch",
    "gradient",
    "jacobian",
    "jacobians",
    "jvp",
    "loss",
    "ntk",
    "predict",
    "predict_steps",
    "predict_time",
    "read_safetensors",
    "read_safetensors_metadata",
    "release_cached_memory",
    "train",
    "write_safetensors",
    "__version__",
]


# OpenBLAS falls back to SSE3 kernels on CPU models it does not know (several times slower products); it reads
# OPENBLAS_CORETYPE only when it is loaded, which has happened by now, so all that can be done here is say so
_blas = blas_info()
if not os.environ.get("OPENBLAS_CORETYPE") and _blas["better_coretype"]:
    warnings.warn(f"OpenBLAS chose its {_blas['core']} kernels, which lack this CPU's AVX2/AVX-512: "
                  f"start Python with OPENBLAS_CORETYPE={_blas['better_coretype']} for products several "
                  "times faster (docs/benchmarks.md, BLAS choice)", RuntimeWarning, stacklevel=2)
del _blas


def __getattr__(name: str) -> Any:
    # xntk.torch (the torch modules for xntk's blocks) is imported on first use, so that `import xntk` alone
    # does not load torch
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'xntk' has no attribute {name!r}")
