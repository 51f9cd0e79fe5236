"""xntk.from_torch: a torch module as an xntk.Sequential with its weights, and export_torch for the CLI."""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._arrays import DTypeLike, dtype_of
from ._sequential import Sequential
from ._xntk import Error

PathLike = Union[str, "os.PathLike[str]"]


def _input_shape(input_shape: Any) -> Tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise Error(f"input_shape: expected the per-sample input shape, positive integers such as (784,) or "
                    f"(3, 32, 32), got {input_shape!r}")
    return tuple(int(d) for d in shape)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class _Walker:
    """Maps a module tree onto layer objects of the model JSON, remembering which xntk parameter name is which
    state_dict key, and which containers must be checked to be chains of their children."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.nn = torch.nn
        from .torch import Residual

        self.residual = Residual
        try:  # torchvision's ResNet blocks, where torchvision is installed
            from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
            self.blocks: Tuple[Any, ...] = (BasicBlock, Bottleneck)
            self.resnet: Any = ResNet
        except ImportError:
            self.blocks, self.resnet = (), None
        self.names: Dict[str, str] = {}        # xntk parameter name -> state_dict key
        self.paths: Dict[str, Tuple[str, str]] = {}  # xntk layer path -> (module path, module type)
        self.chains: List[Tuple[Any, str]] = []  # class-based containers: (module, path)
        self.seen: Dict[int, str] = {}

    @staticmethod
    def where(path: str, m: Any) -> str:
        return f"{path or 'the model'} ({type(m).__name__})"

    def fail(self, path: str, m: Any, what: str) -> None:
        raise Error(f"{self.where(path, m)}: {what}")

    def children(self, m: Any, path: str) -> List[Tuple[str, Any]]:
        out = []
        for name, child in m._modules.items():
            if child is None:
                self.fail(_join(path, name), m, "a child registered as None")
            out.append((name, child))
        return out

    def layers(self, container: Any, tpath: str, xpath: str) -> List[Dict[str, Any]]:
        """The layers of a container's children, in registration order."""
        return [self.layer(child, _join(tpath, name), f"{xpath}{i}")
                for i, (name, child) in enumerate(self.children(container, tpath))]

    def own_state(self, m: Any, path: str) -> None:
        own = [n for n, p in m._parameters.items() if p is not None]
        own += [n for n, b in m._buffers.items() if b is not None and n not in m._non_persistent_buffers_set]
        if own:
            self.fail(path, m, f"holds parameters or buffers of its own ({', '.join(own)}); xntk maps the "
                               "parameters of the supported layers only")

    def layer(self, m: Any, tpath: str, xpath: str) -> Dict[str, Any]:
        nn = self.nn
        if id(m) in self.seen:
            self.fail(tpath, m, f"the same module as {self.seen[id(m)]}; shared modules (tied weights) are "
                                "not supported")
        self.seen[id(m)] = tpath or "the model"
        self.paths[xpath] = (tpath, type(m).__name__)
        t = type(m)
        if t in self.blocks:
            return self.resnet_block(m, tpath, xpath)
        if t is self.residual:
            self.own_state(m, tpath)
            if set(m._modules) != {"body", "shortcut"}:
                self.fail(tpath, m, "expected exactly the children body and shortcut")
            return {"type": "residual",
                    "body": self.layers(m.body, _join(tpath, "body"), f"{xpath}.body."),
                    "shortcut": self.layers(m.shortcut, _join(tpath, "shortcut"), f"{xpath}.shortcut.")}
        leaf = self.leaf(m, tpath, xpath)
        if leaf is not None:
            return leaf
        if not m._modules:
            self.fail(tpath, m, "not supported (docs/python.md lists the modules from_torch maps)")
        self.own_state(m, tpath)
        if not (isinstance(m, nn.Sequential) and t.forward is nn.Sequential.forward):
            self.chains.append((m, tpath))
        return {"type": "sequential", "layers": self.layers(m, tpath, f"{xpath}.")}

    def resnet_block(self, m: Any, tpath: str, xpath: str) -> Dict[str, Any]:
        """torchvision's BasicBlock or Bottleneck: relu(bn2(conv2(relu(bn1(conv1(x))))) [...] + downsample(x)),
        a residual block followed by a ReLU; its one ReLU module serves at each use."""
        self.own_state(m, tpath)
        names = ["conv1", "bn1", "relu", "conv2", "bn2"]
        if type(m) is self.blocks[1]:
            names += ["relu", "conv3", "bn3"]
        body = []
        for i, n in enumerate(names):
            child = getattr(m, n)
            if n == "relu":
                if type(child) is not self.nn.ReLU:
                    self.fail(_join(tpath, n), child, "expected torchvision's nn.ReLU")
                body.append({"type": "relu"})
            else:
                body.append(self.layer(child, _join(tpath, n), f"{xpath}.0.body.{i}"))
        shortcut = [] if m.downsample is None else \
            self.layers(m.downsample, _join(tpath, "downsample"), f"{xpath}.0.shortcut.")
        return {"type": "sequential", "layers": [{"type": "residual", "body": body, "shortcut": shortcut},
                                                 {"type": "relu"}]}

    def resnet_layers(self, m: Any) -> List[Dict[str, Any]]:
        """torchvision's ResNet, as its forward applies it: conv1, bn1, relu, maxpool, layer1..4, avgpool,
        flatten(x, 1), fc."""
        self.own_state(m, "")
        layers = [self.layer(getattr(m, n), n, str(i))
                  for i, n in enumerate(["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                         "avgpool"])]
        return layers + [{"type": "flatten"}, self.layer(m.fc, "fc", "10")]

    def pair(self, m: Any, path: str, field: str, value: Any) -> List[int]:
        if isinstance(value, int):
            return [value, value]
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [int(value[0]), int(value[1])]
        self.fail(path, m, f"{field}={value!r}: expected an integer or a pair")
        return []

    def require(self, m: Any, path: str, field: str, ok: bool, expected: str) -> None:
        if not ok:
            self.fail(path, m, f"{field}={getattr(m, field)!r} not supported (xntk supports {expected})")

    def parameters(self, m: Any, tpath: str, xpath: str, bias: bool) -> None:
        self.names[f"{xpath}.weight"] = _join(tpath, "weight")
        if bias:
            self.names[f"{xpath}.bias"] = _join(tpath, "bias")

    def leaf(self, m: Any, path: str, xpath: str) -> Optional[Dict[str, Any]]:
        """The layer object of a supported module, or None when it is not one."""
        nn, t = self.nn, type(m)
        if t is nn.Linear:
            self.parameters(m, path, xpath, m.bias is not None)
            return {"type": "linear", "in_features": m.in_features, "out_features": m.out_features,
                    "bias": m.bias is not None}
        if t is nn.Conv2d:
            self.require(m, path, "padding_mode", m.padding_mode == "zeros", "padding_mode='zeros'")
            k = self.pair(m, path, "kernel_size", m.kernel_size)
            d = self.pair(m, path, "dilation", m.dilation)
            # "valid" and "same" as written (xntk pads "same" as PyTorch: an odd total's extra at the bottom/right)
            p = m.padding if m.padding in ("valid", "same") else self.pair(m, path, "padding", m.padding)
            self.parameters(m, path, xpath, m.bias is not None)
            return {"type": "conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
                    "kernel_size": k, "stride": self.pair(m, path, "stride", m.stride), "padding": p,
                    "dilation": d, "groups": m.groups, "bias": m.bias is not None}
        if t is nn.AvgPool2d:
            self.require(m, path, "ceil_mode", not m.ceil_mode, "ceil_mode=False")
            self.require(m, path, "count_include_pad", m.count_include_pad, "count_include_pad=True")
            self.require(m, path, "divisor_override", m.divisor_override is None, "divisor_override=None")
            return {"type": "avgpool2d", "kernel_size": self.pair(m, path, "kernel_size", m.kernel_size),
                    "stride": self.pair(m, path, "stride", m.stride or m.kernel_size),
                    "padding": self.pair(m, path, "padding", m.padding)}
        if t is nn.MaxPool2d:
            self.require(m, path, "ceil_mode", not m.ceil_mode, "ceil_mode=False")
            self.require(m, path, "return_indices", not m.return_indices, "return_indices=False")
            return {"type": "maxpool2d", "kernel_size": self.pair(m, path, "kernel_size", m.kernel_size),
                    "stride": self.pair(m, path, "stride", m.stride or m.kernel_size),
                    "padding": self.pair(m, path, "padding", m.padding),
                    "dilation": self.pair(m, path, "dilation", m.dilation)}
        if t is nn.AdaptiveAvgPool2d:
            size = m.output_size
            size = list(size) if isinstance(size, (tuple, list)) else [size, size]  # None: the input's size there
            if size == [1, 1]:
                return {"type": "global_avgpool"}
            return {"type": "adaptive_avgpool2d", "output_size": size}
        if t is nn.LayerNorm:
            bias = getattr(m, "bias", None) is not None  # LayerNorm(bias=False) since PyTorch 2.1
            if m.elementwise_affine:
                self.parameters(m, path, xpath, bias)
            return {"type": "layernorm", "normalized_shape": list(m.normalized_shape), "eps": float(m.eps),
                    "elementwise_affine": bool(m.elementwise_affine), "bias": bool(m.elementwise_affine and bias)}
        if t in (nn.BatchNorm2d, nn.BatchNorm1d):
            # xntk computes the eval-mode function: a module in training mode normalises by batch statistics
            if m.training:
                self.fail(path, m, "in training mode (batch statistics make each sample's output depend on the "
                                   "others); call module.eval() first")
            self.require(m, path, "track_running_stats", m.track_running_stats, "track_running_stats=True")
            if m.affine:
                self.parameters(m, path, xpath, True)
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                self.names[f"{xpath}.{b}"] = _join(path, b)
            return {"type": "batchnorm2d" if t is nn.BatchNorm2d else "batchnorm1d", "num_features": m.num_features,
                    "eps": float(m.eps), "momentum": None if m.momentum is None else float(m.momentum),
                    "affine": bool(m.affine)}
        if t in (nn.Dropout, nn.Dropout2d):
            # the identity in eval mode, as PyTorch's
            if m.training and m.p > 0:
                self.fail(path, m, "in training mode (random); call module.eval() first")
            return {"type": "identity"}
        if t is nn.Flatten:
            self.require(m, path, "start_dim", m.start_dim == 1, "start_dim=1")
            self.require(m, path, "end_dim", m.end_dim == -1, "end_dim=-1")
            return {"type": "flatten"}
        if t is nn.LeakyReLU:
            return {"type": "leaky_relu", "negative_slope": float(m.negative_slope)}
        if t is nn.ELU:
            return {"type": "elu", "alpha": float(m.alpha)}
        if t is nn.Softplus:
            return {"type": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)}
        if t is nn.GELU:
            return {"type": "gelu", "approximate": m.approximate}
        simple = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SiLU: "silu", nn.Identity: "identity"}
        if t in simple:
            return {"type": simple[t]}
        return None


def _model_dtype(torch: Any, module: Any, dtype: Optional[DTypeLike]) -> np.dtype:
    if dtype is not None:
        return dtype_of(dtype)
    kinds = {p.dtype for p in module.parameters()}
    if len(kinds) > 1:
        raise Error(f"module: parameters of several dtypes ({', '.join(sorted(str(k) for k in kinds))}); pass dtype=")
    kind = kinds.pop() if kinds else torch.get_default_dtype()
    if kind not in (torch.float32, torch.float64):
        raise Error(f"module: parameters are {kind}; pass dtype='float32' or 'float64' to convert them")
    return dtype_of(kind)


def _relative(a: Any, b: Any) -> float:
    scale = float(b.abs().max()) if b.numel() else 0.0
    diff = float((a - b).abs().max()) if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


def _probe(torch: Any, module: Any, shape: Tuple[int, ...]) -> Any:
    """A random batch of two for the module (its dtype and device), from a generator of its own."""
    first = next(iter(module.parameters()), None)
    kind = first.dtype if first is not None else torch.get_default_dtype()
    device = first.device if first is not None else torch.device("cpu")
    return torch.randn((2, *shape), generator=torch.Generator().manual_seed(0), dtype=kind).to(device)


def _check_chains(torch: Any, module: Any, walker: _Walker, x: Any, tolerance: float) -> Any:
    """Runs the module on x: each class-based container's output must be its children applied in order.
    Returns the module's output."""
    seen: Dict[int, Tuple[Any, Any]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.__setitem__(id(mod), (inp, out)))
             for m, _ in walker.chains]
    try:
        with torch.no_grad():
            y = module(x)
    except Exception as e:
        raise Error(f"module: its forward fails on a batch of shape {tuple(x.shape)} ({type(e).__name__}: {e})") \
            from None
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for m, path in walker.chains:
            where = walker.where(path, m)
            names = " → ".join(name for name, _ in walker.children(m, path))
            if id(m) not in seen:
                raise Error(f"{where}: not called by the module's forward; from_torch maps a container onto its "
                            "children applied in order")
            inp, out = seen[id(m)]
            try:
                z = inp[0] if len(inp) == 1 else None
                for _, child in walker.children(m, path):
                    z = child(z)
                ok = z is not None and torch.is_tensor(out) and z.shape == out.shape and \
                    _relative(z, out) <= tolerance
            except Exception:  # any failure of the chain means the forward is something else
                ok = False
            if not ok:
                raise Error(f"{where}: its forward is not its children applied in order ({names}); from_torch maps "
                            "a container onto that chain (write a residual connection as xntk.torch.Residual, and "
                            "functions such as x.relu() as modules)")
    if not torch.is_tensor(y):
        raise Error(f"module: its forward returns {type(y).__name__}, expected a tensor")
    return y


def _check_output(torch: Any, net: Sequential, x: Any, y: Any, tolerance: float) -> None:
    """xntk's model gives the module's output y on x."""
    ours = torch.from_numpy(net.forward(x.detach().cpu().numpy()))
    theirs = y.detach().cpu().to(ours.dtype)
    if theirs.shape != ours.shape:
        raise Error(f"module: its output has shape {tuple(theirs.shape)}, xntk's model of it {tuple(ours.shape)}")
    if _relative(ours, theirs) > tolerance:
        raise Error(f"module: its output differs from xntk's model of it (max difference "
                    f"{_relative(ours, theirs):.3g} relative); is a forward hook or an in-place operation involved?")


def from_torch(module: Any, input_shape: Union[int, Sequence[int]], dtype: Optional[DTypeLike] = None,
               check: bool = True) -> Sequential:
    """An xntk.Sequential of a torch module with its weights (copied): an nn.Sequential, nested or not, of the
    supported layers and xntk.torch.Residual blocks; or a module whose children, in registration order, make
    its forward (as `features` then `classifier`). `input_shape` is the per-sample input shape, e.g. (3, 32, 32).

    The model's parameter names are xntk's (index paths, "0.weight"; a nn.Sequential's own keys);
    `net.torch_names` maps each to the module's state_dict key ("features.0.weight"). dtype: the model's
    (default: the module's, float32 or float64). check: run both on a random batch of two and raise an
    Error unless they agree (this is what refuses a container whose forward is not its chain of children).
    An unsupported module raises an Error naming its path, e.g. "features.3 (BatchNorm2d): not supported".
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    shape = _input_shape(input_shape)
    walker = _Walker(torch)
    nn = torch.nn
    if walker.resnet is not None and type(module) is walker.resnet:
        layers = walker.resnet_layers(module)
    elif type(module) is walker.residual or type(module) in walker.blocks or not module._modules:
        layers = [walker.layer(module, "", "0")]  # one layer (or an error naming it)
    else:
        walker.own_state(module, "")
        if not (isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward):
            walker.chains.append((module, ""))
        layers = walker.layers(module, "", "")
    d = _model_dtype(torch, module, dtype)
    if check:
        first = next(iter(module.parameters()), None)
        module_kind = first.dtype if first is not None else torch.get_default_dtype()
        # rounding only: float32 on either side differs in the sixth digit or so, a wrong structure at once
        tolerance = 1e-9 if d == np.float64 and module_kind == torch.float64 else 1e-3
        x = _probe(torch, module, shape)
        # class-based containers first: whether they are chains decides what the layers mean; otherwise the
        # layers' own shape errors (below, in the module's terms) say more than torch's
        y = _check_chains(torch, module, walker, x, tolerance) if walker.chains else None
    spec = {"input": list(shape), "parameterization": "standard", "layers": layers}
    try:
        net = Sequential(spec, 0, d)
    except Error as e:
        raise _in_torch_terms(e, walker) from None
    state = module.state_dict()
    missing = [key for key in state if key not in set(walker.names.values())]
    if missing:
        raise Error(f"module: state_dict entry {missing[0]!r} belongs to no layer xntk maps")
    net.load_weights({x: state[t] for x, t in walker.names.items()})
    net.torch_names = dict(walker.names)
    if check:
        if y is None:
            y = _check_chains(torch, module, walker, x, tolerance)
        _check_output(torch, net, x, y, tolerance)
    return net


def _in_torch_terms(e: Error, walker: _Walker) -> Error:
    """An error about an xntk layer path ("layer 0.3 (linear): ...") named by the module's path instead."""
    m = re.match(r"layer (\S+) \((\w+)\): (.*)", str(e), re.S)
    if m and m.group(1) in walker.paths:
        path, kind = walker.paths[m.group(1)]
        return Error(f"{path or 'the model'} ({kind}): {m.group(3)}")
    return e


def export_torch(module: Any, input_shape: Union[int, Sequence[int]], model_json_path: PathLike,
                 weights_path: PathLike, dtype: Optional[DTypeLike] = None) -> Sequential:
    """Writes a torch module as the two files of the command line — the model JSON and its weights as
    safetensors under xntk's parameter names — for `xntk compute MODEL.json --weights W.safetensors`.
    Returns the model (as from_torch)."""
    net = from_torch(module, input_shape, dtype)
    net.to_json(model_json_path)
    net.save_weights(weights_path)
    return net
