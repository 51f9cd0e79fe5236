"""Shared helpers of the Python tests: the functorch reference NTK (Jacobian contraction, as in the functorch
tutorial) and the relative error used throughout (max |a − b| / max |b|)."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from functorch import jacrev, make_functional, make_functional_with_buffers, vmap  # noqa: E402  (Debian's torch 1.13 ships functorch)

import xntk  # noqa: E402

SOURCE_DIR = os.environ.get("XNTK_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))

# float64 ≤ 1e-10 and float32 ≤ 1e-4, relative to the largest entry of the reference
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, np.float64: 1e-10, np.float32: 1e-4}


def rel_error(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shapes {a.shape} and {b.shape}"
    scale = np.max(np.abs(b)) if b.size else 0.0
    diff = np.max(np.abs(a - b)) if b.size else 0.0
    return diff / scale if scale > 0 else diff


def jacobians(module, x):
    """Per-parameter Jacobians (N, O, P) of the module's outputs at x, keyed by state_dict name."""
    names = [n for n, _ in module.named_parameters()]
    if any(True for _ in module.buffers()):  # BatchNorm's running statistics: functorch's buffered form
        fnet_b, params, buffers = make_functional_with_buffers(module)

        def fnet(p, xb):
            return fnet_b(p, buffers, xb)
    else:
        fnet, params = make_functional(module)

    def single(p, xi):  # one sample, as a batch of one (the tutorial's fnet_single)
        return fnet(p, xi.unsqueeze(0)).squeeze(0)

    js = vmap(jacrev(single), (None, 0))(params, x)
    n = x.shape[0]
    out = fnet(params, x[:1]).numel()
    return {name: j.detach().reshape(n, out, -1) for name, j in zip(names, js)}


CONTRACTION = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM", "diagonal": "Naf,Maf->NMa"}


def reference_ntk(module, x1, x2, mode, j1=None, j2=None):
    """functorch's Jacobian contraction: (total, {state_dict name: component}) as NumPy arrays."""
    j1 = jacobians(module, x1) if j1 is None else j1
    j2 = (j1 if x2 is None else jacobians(module, x2)) if j2 is None else j2
    comps = {name: torch.einsum(CONTRACTION[mode], j1[name], j2[name]).numpy() for name in j1}
    return sum(comps.values()), comps


