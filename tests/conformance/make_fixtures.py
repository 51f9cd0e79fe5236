#!/usr/bin/python3
"""Generates the PyTorch conformance fixtures of xntk (tests/conformance/fixtures/<name>/).

Run with Debian's Python and its python3-torch (1.13, with functorch):

    /usr/bin/python3 tests/conformance/make_fixtures.py [NAME ...]

For each fixture it builds the model of its model.json as a torch.nn.Sequential in float64 (module
indices equal the JSON layer indices, a residual block is a module with nn.Sequential children `body` and
`shortcut` and a nested sequential an nn.Sequential, so state_dict keys equal xntk's parameter names),
draws weights and inputs from a fixed seed, and computes the reference NTK by functorch's Jacobian
contraction, one component per parameter tensor in xntk's order (the modules that own parameters in
state_dict order, reversed, weight before bias within each). It writes

    model.json               the model, as xntk reads it
    weights.safetensors      the state_dict (written here with struct + json, no extra package)
    x1.npy [x2.npy]          inputs
    expected.npy             the total kernel in the fixture's mode
    components.safetensors   every component under its state_dict name, then "total"
    meta.json                {"mode": ..., "dtype": dtype of the stored data, "x2": bool, "description": ...}

Two kinds of fixtures start from a PyTorch module instead, converted to model.json by export_torch.py so that
xntk's names are the module's own state_dict keys: torchvision's models ("arch", weights from a formula, not
committed) and the architectures of examples/ in architectures.py ("module", weights committed; their meta.json
names the constructor as "source").

The `ntk` parameterisation is written as small modules that multiply weight and bias by
c_w = w_std / sqrt(fan_in) and c_b = b_std, with N(0, 1) parameters.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from functorch import jacrev, make_functional_with_buffers, vmap

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


# ---- the ntk parameterisation and the activations PyTorch has no module for ----

class NTKLinear(nn.Module):
    def __init__(self, fan_in, out, bias, w_std, b_std):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out, fan_in, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(out, dtype=torch.float64)) if bias else None
        self.c_w, self.c_b = w_std / math.sqrt(fan_in), b_std

    def forward(self, x):
        return F.linear(x, self.c_w * self.weight, None if self.bias is None else self.c_b * self.bias)


class NTKConv2d(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding, dilation, bias, w_std, b_std, groups=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin // groups, *kernel, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(cout, dtype=torch.float64)) if bias else None
        self.c_w, self.c_b = w_std / math.sqrt(cin // groups * kernel[0] * kernel[1]), b_std
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x):
        b = None if self.bias is None else self.c_b * self.bias
        return F.conv2d(x, self.c_w * self.weight, b, self.stride, self.padding, self.dilation, self.groups)


class Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x)


class Residual(nn.Module):
    """y = body(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, body, shortcut):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def pair(v, default=None):
    if v is None:
        return default
    return tuple(v) if isinstance(v, list) else (v, v)


def build(spec):
    """nn.Sequential of the model JSON, layer i at index i."""
    ntk = spec.get("parameterization", "standard") == "ntk"
    shape = tuple(spec["input"]) if isinstance(spec["input"], list) else (spec["input"],)
    return build_layers(spec["layers"], shape, ntk)


def build_layers(layers, shape, ntk):
    """nn.Sequential of a list of layer objects on per-sample input `shape`."""
    modules = []
    for layer in layers:
        t = layer["type"]
        if t == "residual":
            m = Residual(build_layers(layer["body"], shape, ntk), build_layers(layer.get("shortcut", []), shape, ntk))
        elif t == "sequential":
            m = build_layers(layer["layers"], shape, ntk)
        elif t == "linear":
            fan_in, out, bias = shape[0], layer["out_features"], layer.get("bias", True)
            if ntk:
                m = NTKLinear(fan_in, out, bias, layer.get("w_std", 1.0), layer.get("b_std", 1.0))
            else:
                m = nn.Linear(fan_in, out, bias=bias, dtype=torch.float64)
        elif t == "conv2d":
            k, s = pair(layer["kernel_size"]), pair(layer.get("stride", 1))
            d = pair(layer.get("dilation", 1))
            p = layer.get("padding", 0)
            p = p if isinstance(p, str) else pair(p)
            groups = layer.get("groups", 1)
            if ntk:
                # F.conv2d takes "same" and "valid" as nn.Conv2d does (an odd total padded after)
                m = NTKConv2d(shape[0], layer["out_channels"], k, s, p, d, layer.get("bias", True),
                              layer.get("w_std", 1.0), layer.get("b_std", 1.0), groups)
            else:
                m = nn.Conv2d(shape[0], layer["out_channels"], k, s, p, d, groups=groups, bias=layer.get("bias", True),
                              dtype=torch.float64)
        elif t == "avgpool2d":
            m = nn.AvgPool2d(pair(layer["kernel_size"]), pair(layer.get("stride")), pair(layer.get("padding", 0)))
        elif t == "maxpool2d":
            m = nn.MaxPool2d(pair(layer["kernel_size"]), pair(layer.get("stride")), pair(layer.get("padding", 0)),
                             pair(layer.get("dilation", 1)))
        elif t in ("batchnorm2d", "batchnorm1d"):
            cls = nn.BatchNorm2d if t == "batchnorm2d" else nn.BatchNorm1d
            m = cls(shape[0], eps=layer.get("eps", 1e-5), momentum=layer.get("momentum", 0.1),
                    affine=layer.get("affine", True), dtype=torch.float64)
        elif t == "global_avgpool":
            m = nn.AdaptiveAvgPool2d(1)
        elif t in ("adaptive_avgpool2d", "AdaptiveAvgPool2d"):
            m = nn.AdaptiveAvgPool2d(pair(layer["output_size"]))
        elif t in ("layernorm", "LayerNorm"):
            ns = layer["normalized_shape"]
            m = nn.LayerNorm([ns] if isinstance(ns, int) else ns, eps=layer.get("eps", 1e-5),
                             elementwise_affine=layer.get("elementwise_affine", True), dtype=torch.float64)
        elif t == "flatten":
            m = nn.Flatten()
        elif t == "relu":
            m = nn.ReLU()
        elif t == "leaky_relu":
            m = nn.LeakyReLU(layer.get("negative_slope", 0.01))
        elif t == "tanh":
            m = nn.Tanh()
        elif t == "sigmoid":
            m = nn.Sigmoid()
        elif t == "gelu":
            m = nn.GELU(approximate=layer.get("approximate", "none"))
        elif t == "erf":
            m = Erf()
        elif t == "softplus":
            m = nn.Softplus(layer.get("beta", 1.0), layer.get("threshold", 20.0))
        elif t == "silu":
            m = nn.SiLU()
        elif t == "elu":
            m = nn.ELU(layer.get("alpha", 1.0))
        elif t == "identity":
            m = nn.Identity()
        else:
            raise ValueError(f"unknown layer type {t}")
        m.eval()  # BatchNorm: the running statistics
        modules.append(m)
        with torch.no_grad():
            shape = tuple(m(torch.zeros(1, *shape, dtype=torch.float64)).shape[1:])
    return nn.Sequential(*modules)


# ---- files ----

def write_safetensors(path, named, dtype):
    """named: list of (name, tensor); written in order as F32 or F64 (little-endian)."""
    header, blobs, offset = {}, [], 0
    for name, t in named:
        integer = t.dtype == torch.int64  # BatchNorm's num_batches_tracked, kept as PyTorch stores it
        # astype(order="C"), not np.ascontiguousarray, which makes a 0-d tensor (num_batches_tracked) 1-d
        a = t.detach().numpy().astype("<i8" if integer else "<f4" if dtype == "float32" else "<f8", order="C")
        b = a.tobytes()
        header[name] = {"dtype": "I64" if integer else "F32" if dtype == "float32" else "F64", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def empty_fixture_dir(name):
    """fixtures/<name>, created or emptied."""
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    return d


def save_npy(path, t, dtype):
    np.save(path, t.detach().numpy().astype(np.float32 if dtype == "float32" else np.float64))


# ---- the reference kernel ----

def reference(model, x1, x2, mode):
    """Components (name, kernel) in xntk's order, by functorch's Jacobian contraction per parameter."""
    fnet, params, buffers = make_functional_with_buffers(model)
    names = [n for n, _ in model.named_parameters()]

    def single(p, x):
        return fnet(p, buffers, x.unsqueeze(0)).flatten()

    j1 = [j.flatten(2) for j in vmap(jacrev(single), (None, 0))(params, x1)]
    j2 = [j.flatten(2) for j in vmap(jacrev(single), (None, 0))(params, x2)]
    expr = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM", "diagonal": "Naf,Maf->NMa"}[mode]
    comps = {n: torch.einsum(expr, a, b) for n, a, b in zip(names, j1, j2)}
    owners = []  # the modules that own parameters, in state_dict order
    for n in names:
        if n.rsplit(".", 1)[0] not in owners:
            owners.append(n.rsplit(".", 1)[0])
    order = [o + suffix for o in reversed(owners) for suffix in (".weight", ".bias") if o + suffix in comps]
    return [(n, comps[n]) for n in order]


def randomize_norms(model):
    """Normalisation layers away from their initial special point: γ near 1, β near 0, running means near 0,
    running variances in [0.5, 1.5], a count of batches seen."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.5 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
                m.num_batches_tracked.fill_(7)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                m.bias.copy_(0.5 * torch.randn_like(m.bias))


def make(name, spec, mode, n, m=None, dtype="float64", seed=0, description=""):
    """m = None: X2 omitted (the kernel is Θ(X1, X1))."""
    torch.manual_seed(seed)
    model = build(spec)
    randomize_norms(model)
    shape = spec["input"] if isinstance(spec["input"], list) else [spec["input"]]
    x1 = torch.randn(n, *shape, dtype=torch.float64)
    x2 = torch.randn(m, *shape, dtype=torch.float64) if m else None
    if dtype == "float32":
        # the reference uses exactly the values stored in float32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.float().double())
            for b in model.buffers():
                if b.is_floating_point():
                    b.copy_(b.float().double())
        x1 = x1.float().double()
        x2 = None if x2 is None else x2.float().double()
    comps = reference(model, x1, x1 if x2 is None else x2, mode)
    total = sum(c for _, c in comps)

    d = empty_fixture_dir(name)
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    write_safetensors(os.path.join(d, "weights.safetensors"), list(model.state_dict().items()), dtype)
    save_npy(os.path.join(d, "x1.npy"), x1, dtype)
    if x2 is not None:
        save_npy(os.path.join(d, "x2.npy"), x2, dtype)
    save_npy(os.path.join(d, "expected.npy"), total, "float64")
    write_safetensors(os.path.join(d, "components.safetensors"), comps + [("total", total)], "float64")
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"mode": mode, "dtype": dtype, "x2": x2 is not None, "description": description}, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {mode}, x2 {'given' if x2 is not None else 'omitted'}, {len(comps)} components, "
          f"kernel {tuple(total.shape)}, {size} bytes")


# ---- torchvision models, converted by export_torch.py ----
# Their weights (11.7 million for resnet18) are not committed: each tensor is filled by a counter-based formula
# that the conformance test evaluates too (meta.json "weights": "splitmix64"; tests/test_conformance.cpp):
# for element e of tensor `name`, with h = FNV-1a-64(name) and splitmix64's finaliser on h + (e + 1)·φ64,
# u = the top 53 bits / 2^53 in [0, 1) and v = 2u − 1, the value is
#   weights of rank ≥ 2: v·√(6 / fan_in) (fan_in = numel / shape[0]);  "running_var": 0.5 + u;
#   "num_batches_tracked": 7;  other rank-1 "weight" (BatchNorm's γ): 1 + 0.5·v;  the rest (biases, means): 0.5·v.

M64 = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def splitmix_uniform(name, n):
    """u in [0, 1) for elements 0..n-1 of tensor `name`."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a64(name)) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def formula_value(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    u = splitmix_uniform(name, n)
    v = 2 * u - 1
    if name.endswith("num_batches_tracked"):
        a = np.full(n, 7.0)
    elif name.endswith("running_var"):
        a = 0.5 + u
    elif len(shape) >= 2:
        a = v * math.sqrt(6.0 / (n // shape[0]))
    elif name.endswith("weight"):
        a = 1 + 0.5 * v
    else:
        a = 0.5 * v
    return a.reshape(shape)


def make_torchvision(name, arch, num_classes, input, mode, n, m=None, seed=0, description=""):
    import torchvision
    sys.path.insert(0, HERE)
    import export_torch
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=num_classes).double().eval()
    with torch.no_grad():
        for k, t in model.state_dict().items():
            t.copy_(torch.from_numpy(formula_value(k, tuple(t.shape))).to(t.dtype))
    x1 = torch.randn(n, *input, dtype=torch.float64)
    x2 = torch.randn(m, *input, dtype=torch.float64) if m else None
    d = empty_fixture_dir(name)
    # the exporter's files; the weights are checked against the formula and then not kept
    export_torch.export(model, input, os.path.join(d, "model.json"), os.path.join(d, "weights.safetensors"))
    with open(os.path.join(d, "weights.safetensors"), "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    assert list(header) == list(model.state_dict()), "the exporter must write the state_dict in its order"
    for k, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype="<i8" if e["dtype"] == "I64" else "<f8").astype(np.float64)
        assert np.array_equal(a, formula_value(k, tuple(e["shape"])).ravel()), k
    os.remove(os.path.join(d, "weights.safetensors"))
    comps = reference(model, x1, x1 if x2 is None else x2, mode)
    total = sum(c for _, c in comps)
    save_npy(os.path.join(d, "x1.npy"), x1, "float64")
    if x2 is not None:
        save_npy(os.path.join(d, "x2.npy"), x2, "float64")
    save_npy(os.path.join(d, "expected.npy"), total, "float64")
    write_safetensors(os.path.join(d, "components.safetensors"), comps + [("total", total)], "float64")
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"mode": mode, "dtype": "float64", "x2": x2 is not None, "weights": "splitmix64",
                   "description": description}, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {arch}, {mode}, {len(comps)} components, kernel {tuple(total.shape)}, {size} bytes")


# ---- the architectures of examples/ (architectures.py), converted by export_torch.py ----
# Small enough to commit their weights. Deep ReLU networks under PyTorch's initialisation (and BatchNorm statistics
# unrelated to the data) lose their signal to the biases and switch whole channels off for every input, whose
# weights then contribute nothing to the kernel; these are initialised so that every channel stays active
# (calibrated_init).

def calibrated_init(model, input):
    """He initialisation (weights N(0, 2 / fan_in), biases N(0, 0.1^2)), then fitted to 64 random inputs, as a
    data-dependent initialisation (LSUV) or a trained network would be. With BatchNorm: γ = 1 + 0.25 N(0, 1),
    β = 0.1 N(0, 1), the running statistics those of the batch (one pass in training mode) moved off them
    (mean + 0.1 σ N(0, 1), variance × U(0.75, 1.25)), so that eval mode is a nontrivial affine map that keeps the
    activations near zero mean and unit variance. Without it (an nn.Sequential): each hidden Conv2d or Linear
    rescaled and shifted so that its output channels have zero mean and unit variance on the batch, plus
    biases of 0.1 N(0, 1)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    batch = torch.randn(64, *input, dtype=torch.float64)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.normal_(0, math.sqrt(2 / (m.weight.numel() // m.weight.shape[0])))
                if m.bias is not None:
                    m.bias.normal_(0, 0.1)
        if not norms:
            assert type(model) is nn.Sequential
            h = batch
            for m in list(model)[:-1]:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    y = m(h)
                    dims = [0, 2, 3] if y.dim() == 4 else [0]
                    mean, std = y.mean(dims), y.std(dims)
                    m.weight.div_(std.view(-1, *[1] * (m.weight.dim() - 1)))
                    m.bias.copy_((m.bias - mean) / std + 0.1 * torch.randn_like(m.bias))
                h = m(h)
            return
        for m in norms:
            m.weight.copy_(1 + 0.25 * torch.randn_like(m.weight))
            m.bias.copy_(0.1 * torch.randn_like(m.bias))
            m.reset_running_stats()
            m.momentum, m.saved_momentum = None, m.momentum  # one batch: its mean and (unbiased) variance
        model.train()
        model(batch)
        model.eval()
        for m in norms:
            m.momentum = m.saved_momentum
            del m.saved_momentum
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn_like(m.running_mean))
            m.running_var.mul_(0.75 + 0.5 * torch.rand_like(m.running_var))
            m.num_batches_tracked.fill_(7)


def make_module(name, module, input, mode, n, m=None, seed=0, description=""):
    """module: (constructor in architectures.py, its keyword arguments)."""
    sys.path.insert(0, HERE)
    import architectures
    import export_torch
    constructor, kwargs = module
    torch.manual_seed(seed)
    model = getattr(architectures, constructor)(**kwargs).double().eval()
    calibrated_init(model, input)
    x1 = torch.randn(n, *input, dtype=torch.float64)
    x2 = torch.randn(m, *input, dtype=torch.float64) if m else None
    d = empty_fixture_dir(name)
    export_torch.export(model, input, os.path.join(d, "model.json"), os.path.join(d, "weights.safetensors"))
    comps = reference(model, x1, x1 if x2 is None else x2, mode)
    total = sum(c for _, c in comps)
    save_npy(os.path.join(d, "x1.npy"), x1, "float64")
    if x2 is not None:
        save_npy(os.path.join(d, "x2.npy"), x2, "float64")
    save_npy(os.path.join(d, "expected.npy"), total, "float64")
    write_safetensors(os.path.join(d, "components.safetensors"), comps + [("total", total)], "float64")
    source = f"architectures.{constructor}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"mode": mode, "dtype": "float64", "x2": x2 is not None, "source": source,
                   "description": description}, f, indent=1)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {source}, {mode}, {len(comps)} components, kernel {tuple(total.shape)}, {size} bytes")


def L(out, **kw):
    return {"type": "linear", "out_features": out, **kw}


def C(out, k, **kw):
    return {"type": "conv2d", "out_channels": out, "kernel_size": k, **kw}


def A(t, **kw):
    return {"type": t, **kw}


FIXTURES = {
    # ---- MLPs ----
    "mlp_relu_standard_full": dict(
        spec={"input": [5], "parameterization": "standard", "layers": [L(7), A("relu"), L(3)]},
        mode="full", n=4, description="two-layer ReLU MLP, PyTorch initialisation"),
    "mlp_tanh_ntk_full_x2": dict(
        spec={"input": [4], "parameterization": "ntk",
              "layers": [L(6, w_std=1.5, b_std=0.1), A("tanh"), L(6, in_features=6), A("tanh"), L(2, w_std=0.8)]},
        mode="full", n=3, m=2, description="tanh MLP, ntk parameterisation with per-layer w_std/b_std"),
    "mlp_sigmoid_gelu_trace_x2": dict(
        spec={"input": [3], "layers": [L(5), A("sigmoid"), L(4), A("gelu"), L(3)]},
        mode="trace", n=3, m=4, description="sigmoid and exact GELU, trace mode"),
    "mlp_gelu_tanh_erf_ntk_diagonal": dict(
        spec={"input": 4, "parameterization": "ntk",
              "layers": [L(6), A("gelu", approximate="tanh"), L(5, b_std=0.5), A("erf"), L(3)]},
        mode="diagonal", n=4, description="tanh-approximated GELU and erf, diagonal mode, scalar input size"),
    "mlp_softplus_silu_full_x2": dict(
        spec={"input": [4], "layers": [L(6), A("softplus", beta=2.0, threshold=1.5), L(5), A("silu"), L(2)]},
        mode="full", n=3, m=3, description="softplus (beta, threshold reached) and SiLU"),
    "mlp_elu_leaky_identity_ntk_trace": dict(
        spec={"input": [5], "parameterization": "ntk",
              "layers": [L(6), A("elu", alpha=0.5), L(6, bias=False), A("leaky_relu", negative_slope=0.2),
                         A("identity"), L(3)]},
        mode="trace", n=4, description="ELU, LeakyReLU, identity, a layer without bias"),
    "mlp_single_output_float32": dict(
        spec={"input": [6], "layers": [L(8, bias=False), A("relu"), L(1, in_features=8, bias=False)]},
        mode="full", n=5, dtype="float32", description="one output, no biases, data stored in float32"),
    # ---- CNNs ----
    "cnn_relu_flatten_full": dict(
        spec={"input": [2, 6, 6], "layers": [C(3, 3), A("relu"), A("flatten"), L(3)]},
        mode="full", n=3, description="conv-relu-flatten-linear, PyTorch initialisation"),
    "cnn_ntk_stride_padding_dilation_x2": dict(
        spec={"input": [2, 7, 7], "parameterization": "ntk",
              "layers": [C(4, [3, 2], stride=2, padding=1, b_std=0.2), A("tanh"),
                         C(3, 2, dilation=2, w_std=2.0, method="positions"), A("relu"), A("flatten"), L(2)]},
        mode="full", n=3, m=2, description="rectangular kernel, stride, padding, dilation; positions method"),
    "cnn_avgpool_trace_x2": dict(
        spec={"input": [3, 6, 6], "layers": [C(4, 3, padding=1, method="gradients"), A("relu"),
                                             A("avgpool2d", kernel_size=2), A("flatten"), L(3)]},
        mode="trace", n=3, m=2, description="average pooling, gradients method, trace mode"),
    "cnn_maxpool_ntk_diagonal": dict(
        spec={"input": [2, 6, 6], "parameterization": "ntk",
              "layers": [C(3, 3, in_channels=2), A("gelu"), A("maxpool2d", kernel_size=2, stride=1, padding=1),
                         A("flatten"), L(3)]},
        mode="diagonal", n=4, description="max pooling with stride and padding, diagonal mode"),
    "cnn_global_avgpool_output_x2": dict(
        spec={"input": [2, 5, 5], "layers": [C(4, 2), A("silu"), C(3, 2, bias=False), A("global_avgpool")]},
        mode="full", n=2, m=3, description="global average pooling as the output (O = channels), conv without bias"),
    "cnn_same_padding_pools_ntk_full": dict(
        spec={"input": [1, 8, 8], "parameterization": "ntk",
              "layers": [C(3, 3, padding="same"), A("elu"),
                         A("maxpool2d", kernel_size=3, stride=2, dilation=[1, 2]),
                         A("avgpool2d", kernel_size=[2, 1], stride=1, padding=[1, 0]), A("softplus"),
                         A("flatten"), L(2, b_std=0.3)]},
        mode="full", n=3, description="padding \"same\", dilated max pooling, padded average pooling"),
    "cnn_sigmoid_leaky_float32_trace": dict(
        spec={"input": [1, 5, 5], "layers": [C(2, 2), A("sigmoid"), C(2, 2, stride=[1, 2]), A("leaky_relu"),
                                             A("flatten"), L(2)]},
        mode="trace", n=4, dtype="float32", description="two convolutions, data stored in float32"),
    # ---- residual and nested blocks ----
    "residual_mlp_full_x2": dict(
        spec={"input": [5], "layers": [L(6), A("relu"),
                                       {"type": "residual", "body": [L(7), A("relu"), L(6)]}, A("relu"),
                                       {"type": "residual", "body": [L(4), A("tanh")], "shortcut": [L(4, bias=False)]},
                                       L(3)]},
        mode="full", n=3, m=2, description="identity and projection residual blocks between ReLUs"),
    "residual_cnn_ntk_trace": dict(
        spec={"input": [2, 6, 6], "parameterization": "ntk",
              "layers": [C(3, 3, padding=1), A("relu"),
                         {"type": "residual", "body": [C(4, 3, stride=2, padding=1), A("relu"), C(4, 3, padding=1)],
                          "shortcut": [C(4, 1, stride=2, b_std=0.5)]},
                         A("relu"), A("global_avgpool"), A("flatten"), L(2)]},
        mode="trace", n=4, description="a ResNet-style block with a strided 1x1 projection, ntk parameterisation"),
    "nested_blocks_diagonal": dict(
        spec={"input": [4], "layers": [{"type": "sequential", "layers": [L(5), A("gelu")]},
                                       {"type": "residual", "body": [
                                           {"type": "residual", "body": [L(5), A("silu"), L(5)]}, A("tanh")]},
                                       {"type": "sequential", "layers": [L(3), {"type": "sequential",
                                                                                "layers": [A("sigmoid"), L(2)]}]}]},
        mode="diagonal", n=4, description="nested sequentials and a residual block inside a residual block"),
    # ---- normalisation ----
    "cnn_batchnorm_full_x2": dict(
        spec={"input": [2, 6, 6],
              "layers": [C(4, 3, padding=1, bias=False), A("batchnorm2d", num_features=4), A("relu"),
                         C(3, 3, stride=2), A("batchnorm2d", affine=False, eps=1e-3), A("tanh"), A("flatten"), L(2)]},
        mode="full", n=3, m=2, description="eval-mode BatchNorm2d after convolutions, one without affine"),
    "mlp_batchnorm1d_ntk_trace": dict(
        spec={"input": [5], "parameterization": "ntk",
              "layers": [L(6), A("batchnorm1d"), A("tanh"), L(3), A("batchnorm1d", eps=1e-3, momentum=None)]},
        mode="trace", n=4, description="BatchNorm1d on features, one as the model's output, ntk parameterisation"),
    "seq_batchnorm1d_diagonal_x2": dict(
        spec={"input": [3, 5], "layers": [A("batchnorm1d", num_features=3), A("flatten"), L(4), A("relu"), L(2)]},
        mode="diagonal", n=3, m=2, description="BatchNorm1d on (C, L) samples"),
    # ---- torchvision models (make_torchvision; weights from a formula, not committed) ----
    "resnet18_full_x2": dict(
        arch="resnet18", num_classes=10, input=[3, 32, 32], mode="full", n=3, m=2,
        description="torchvision's resnet18(num_classes=10) in eval mode, converted by export_torch.py"),
    # ---- grouped convolutions and padding strings (appended: the fixtures above keep their seeds) ----
    "cnn_groups_depthwise_same_full_x2": dict(
        spec={"input": [4, 6, 6],
              "layers": [C(8, 3, padding="same", groups=2), A("relu"), C(8, 2, padding="same", groups=8),
                         A("tanh"), C(4, 1), A("flatten"), L(3)]},
        mode="full", n=3, m=2,
        description="groups 2, then a depthwise 2x2 \"same\" conv (its extra row and column padded after), "
                    "then pointwise"),
    "cnn_groups_ntk_trace": dict(
        spec={"input": [3, 7, 6], "parameterization": "ntk",
              "layers": [C(6, [3, 2], stride=2, padding=[1, 0], groups=3, b_std=0.5), A("gelu"),
                         C(6, 3, padding="valid", groups=2, w_std=1.5, method="positions"), A("global_avgpool"),
                         A("flatten"), L(2)]},
        mode="trace", n=4,
        description="depthwise with a channel multiplier (groups 3), then groups 2 in the positions order, ntk"),
    "cnn_depthwise_same_dilated_diagonal_x2": dict(
        spec={"input": [2, 5, 6], "parameterization": "ntk",
              "layers": [C(4, [2, 4], padding="same", dilation=[2, 1], groups=2), A("silu"),
                         C(4, 3, padding="same", groups=4, bias=False, method="gradients"), A("flatten"), L(3)]},
        mode="diagonal", n=3, m=2,
        description="\"same\" with dilation and odd totals (padded one more after), depthwise as gradients"),
    # ---- the architectures of examples/myrtle5.cpp and examples/wide_resnet.cpp (make_module) ----
    "myrtle5_full_x2": dict(
        module=("myrtle", dict(depth=5, width=8)), input=[3, 32, 32], mode="full", n=2, m=2,
        description="Myrtle-5 (Shankar et al. 2020) of width 8 on 3x32x32, calibrated He initialisation"),
    "wide_resnet_diagonal_x2": dict(
        module=("WideResNet", dict(depth=10, widen_factor=2, base=4, num_classes=10)), input=[3, 16, 16],
        mode="diagonal", n=3, m=2,
        description="WRN-10-2 with base width 4 (pre-activation blocks, 1x1 shortcuts, eval-mode BatchNorm with "
                    "random statistics) on 3x16x16"),
    # ---- LayerNorm and adaptive average pooling (appended) ----
    "mlp_layernorm_ntk_full_x2": dict(
        spec={"input": [6], "parameterization": "ntk",
              "layers": [L(8), A("layernorm", normalized_shape=8), A("tanh"), L(5),
                         A("layernorm", normalized_shape=[5], elementwise_affine=False), A("relu"), L(3),
                         A("LayerNorm", normalized_shape=[3], eps=1e-3)]},
        mode="full", n=3, m=2,
        description="LayerNorm after linear layers (one without affine), one as the model's output, ntk"),
    "cnn_layernorm_adaptive_pool_trace": dict(
        spec={"input": [2, 7, 7],
              "layers": [C(4, 3, padding=1), A("layernorm", normalized_shape=[4, 7, 7]), A("relu"),
                         A("adaptive_avgpool2d", output_size=[4, 3]), C(3, 2), A("gelu"),
                         A("layernorm", normalized_shape=[3, 2]), A("AdaptiveAvgPool2d", output_size=[None, 1]),
                         A("flatten"), L(2)]},
        mode="trace", n=4,
        description="LayerNorm over (C, H, W) and over (H, W); AdaptiveAvgPool2d of uneven windows and with None"),
    "cnn_adaptive_avgpool_diagonal_x2": dict(
        spec={"input": [3, 5, 7], "parameterization": "ntk",
              "layers": [C(4, 2), A("tanh"), A("adaptive_avgpool2d", output_size=[3, None]), A("relu"),
                         A("adaptive_avgpool2d", output_size=[3, 2]), C(3, 1),
                         A("adaptive_avgpool2d", output_size=[5, 4]), A("flatten"), L(3)]},
        mode="diagonal", n=3, m=2,
        description="AdaptiveAvgPool2d shrinking unevenly, evenly (an AvgPool2d) and growing (3x2 -> 5x4)"),
}


def main():
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"make_fixtures.py: no fixture {', '.join(unknown)}")
    for i, name in enumerate(FIXTURES):
        if name in names:
            f = FIXTURES[name]
            (make_torchvision if "arch" in f else make_module if "module" in f else make)(name, seed=i, **f)


if __name__ == "__main__":
    main()
