#!/usr/bin/python3
"""Converts a PyTorch model to xntk's files: the model JSON, with every layer named as the module's child, so that
xntk's parameter and buffer names are the module's state_dict keys, and the state_dict as safetensors.

    import export_torch
    spec = export_torch.model_json(model, (3, 32, 32))      # a dict, as json.dump writes it
    export_torch.export(model, (3, 32, 32), "model.json", "weights.safetensors")

or from the command line, for torchvision's ResNets (random weights from a seed):

    /usr/bin/python3 tests/conformance/export_torch.py resnet18 --num-classes 10 --input 3 32 32 \\
        --seed 0 -o model.json --weights weights.safetensors

Converted: nn.Sequential (its children's names), torchvision's ResNet with BasicBlock or Bottleneck, the
WideResNet of architectures.py with its pre-activation WideBasicBlock, and the leaf modules xntk has: Linear, Conv2d, BatchNorm1d/2d, LayerNorm, AvgPool2d, MaxPool2d, AdaptiveAvgPool2d,
Flatten, Dropout, Dropout2d, Identity and the activations. The types are written as PyTorch's class names
(xntk's model JSON accepts them as aliases). Anything else raises ValueError naming the module and its class.

A torchvision BasicBlock, relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x)), becomes

    {"type": "Sequential", "name": "<i>", "layers": [
        {"type": "Residual", "name": "", "body_name": "", "shortcut_name": "downsample",
         "body": [conv1, bn1, relu, conv2, bn2], "shortcut": [downsample's children]},
        {"type": "ReLU"}]}

where "name": "" (and body_name "") add no level to the names, so the body's layers are "layer1.0.conv1" etc.
A WideBasicBlock, body(relu1(bn1(x))) + shortcut, becomes a Residual whose body is all six layers (bn1, relu1,
conv1, bn2, relu2, conv2) when the shortcut is the identity, and otherwise bn1, relu1 followed by a Residual of
body conv1, bn2, relu2, conv2 and shortcut convShortcut: the 1x1 shortcut sees the pre-activated input.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn


def _pair(v):
    return list(v) if isinstance(v, (tuple, list)) else v


def _leaf(m, name):
    """The JSON object of a leaf module, or None if it is not one xntk has."""
    t = type(m)
    d = None
    if t is nn.Linear:
        d = {"type": "Linear", "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    elif t is nn.Conv2d:
        d = {"type": "Conv2d", "in_channels": m.in_channels, "out_channels": m.out_channels,
             "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
             "padding": m.padding if isinstance(m.padding, str) else _pair(m.padding), "dilation": _pair(m.dilation),
             "groups": m.groups, "bias": m.bias is not None, "padding_mode": m.padding_mode}
    elif t in (nn.BatchNorm1d, nn.BatchNorm2d):
        d = {"type": t.__name__, "num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
             "affine": m.affine, "track_running_stats": m.track_running_stats}
    elif t is nn.LayerNorm:
        d = {"type": "LayerNorm", "normalized_shape": list(m.normalized_shape), "eps": m.eps,
             "elementwise_affine": m.elementwise_affine}
    elif t is nn.AvgPool2d:
        d = {"type": "AvgPool2d", "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
             "padding": _pair(m.padding), "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad,
             "divisor_override": m.divisor_override}
    elif t is nn.MaxPool2d:
        d = {"type": "MaxPool2d", "kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
             "padding": _pair(m.padding), "dilation": _pair(m.dilation), "ceil_mode": m.ceil_mode,
             "return_indices": m.return_indices}
    elif t is nn.AdaptiveAvgPool2d:
        d = {"type": "AdaptiveAvgPool2d", "output_size": _pair(m.output_size)}
    elif t is nn.Flatten:
        d = {"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim}
    elif t in (nn.Dropout, nn.Dropout2d):
        d = {"type": t.__name__, "p": m.p}
    elif t in (nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU):
        d = {"type": t.__name__}
    elif t is nn.LeakyReLU:
        d = {"type": "LeakyReLU", "negative_slope": m.negative_slope}
    elif t is nn.ELU:
        d = {"type": "ELU", "alpha": m.alpha}
    elif t is nn.Softplus:
        d = {"type": "Softplus", "beta": m.beta, "threshold": m.threshold}
    elif t is nn.GELU:
        d = {"type": "GELU", "approximate": m.approximate}
    if d is not None:
        if m.training and t in (nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d):
            d["training"] = True
        if name is not None:
            d = {"name": name, **d}
    return d


def _named(d, name, index):
    """d with "name" when the child's name is not its index."""
    return d if name == str(index) else {"name": name, **d}


def _sequential(seq):
    return [_named(_module(child, None), name, i) for i, (name, child) in enumerate(seq.named_children())]


def _resnet_block(block):
    from torchvision.models.resnet import BasicBlock, Bottleneck
    names = ["conv1", "bn1", "relu", "conv2", "bn2"]
    if isinstance(block, Bottleneck):
        names += ["relu", "conv3", "bn3"]
    body, seen = [], set()
    for n in names:  # the block reuses one ReLU module: each use is a layer, named once
        body.append(_leaf(getattr(block, n), None if n in seen else n))
        seen.add(n)
    shortcut = [] if block.downsample is None else _sequential(block.downsample)
    return [{"type": "Residual", "name": "", "body_name": "", "shortcut_name": "downsample", "body": body,
             "shortcut": shortcut}, {"type": "ReLU"}]


def _wide_block(block):
    body = [_leaf(getattr(block, n), n) for n in ("conv1", "bn2", "relu2", "conv2")]
    pre = [_leaf(block.bn1, "bn1"), _leaf(block.relu1, "relu1")]
    if block.equal_in_out:
        return [{"type": "Residual", "name": "", "body_name": "", "body": pre + body, "shortcut": []}]
    return pre + [{"type": "Residual", "name": "", "body_name": "", "shortcut_name": "", "body": body,
                   "shortcut": [_leaf(block.convShortcut, "convShortcut")]}]


def _wide_classes():
    """architectures.py's WideResNet and WideBasicBlock (beside this file), or () when it is not importable."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from architectures import WideBasicBlock, WideResNet
    except ImportError:
        return (), ()
    finally:
        sys.path.pop(0)
    return WideBasicBlock, WideResNet


def _module(m, name):
    """The JSON object of module m (a leaf or a block)."""
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
    except ImportError:
        BasicBlock = Bottleneck = ResNet = ()
    WideBasicBlock, _ = _wide_classes()
    if isinstance(m, (BasicBlock, Bottleneck)):
        d = {"type": "Sequential", "layers": _resnet_block(m)}
    elif isinstance(m, WideBasicBlock):
        d = {"type": "Sequential", "layers": _wide_block(m)}
    elif type(m) is nn.Sequential:
        d = {"type": "Sequential", "layers": _sequential(m)}
    else:
        d = _leaf(m, None)
        if d is None:
            raise ValueError(f"export_torch: module {name or '(the model)'} of class {type(m).__name__} has no "
                             "xntk layer")
    return d if name is None else {"name": name, **d}


def model_json(model, input_shape, parameterization="standard"):
    """The xntk model JSON (a dict) of a PyTorch model on per-sample input_shape."""
    try:
        from torchvision.models.resnet import ResNet
    except ImportError:
        ResNet = ()
    _, WideResNet = _wide_classes()
    if isinstance(model, ResNet):
        # ResNet._forward_impl: conv1, bn1, relu, maxpool, layer1..4, avgpool, flatten(x, 1), fc
        layers = [_module(getattr(model, n), n) for n in ("conv1", "bn1", "relu", "maxpool")]
        layers += [_module(getattr(model, n), n) for n in ("layer1", "layer2", "layer3", "layer4")]
        layers += [_module(model.avgpool, "avgpool"), {"type": "Flatten"}, _module(model.fc, "fc")]
    elif isinstance(model, WideResNet):
        # WideResNet.forward: conv1, block1..3, bn1, relu, avgpool, flatten(x, 1), fc
        layers = [_module(getattr(model, n), n) for n in ("conv1", "block1", "block2", "block3", "bn1", "relu",
                                                          "avgpool")]
        layers += [{"type": "Flatten"}, _module(model.fc, "fc")]
    elif type(model) is nn.Sequential:
        layers = _sequential(model)
    else:
        layers = [_module(model, None)]
    spec = {"input": list(input_shape), "parameterization": parameterization, "layers": layers}
    if model.training:
        spec["training"] = True
    return spec


def write_safetensors(path, named, dtype="float64"):
    """named: (name, tensor) pairs, written in order; floating tensors as F32 or F64, int64 ones as I64."""
    header, blobs, offset = {}, [], 0
    for name, t in named:
        integer = t.dtype == torch.int64
        # astype(order="C"), not np.ascontiguousarray, which makes a 0-d tensor (num_batches_tracked) 1-d
        a = t.detach().cpu().numpy().astype("<i8" if integer else "<f4" if dtype == "float32" else "<f8", order="C")
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


def export(model, input_shape, json_path, weights_path=None, dtype="float64"):
    """Writes the model JSON and (if weights_path) the state_dict as safetensors."""
    with open(json_path, "w") as f:
        json.dump(model_json(model, input_shape), f, indent=1)
        f.write("\n")
    if weights_path:
        write_safetensors(weights_path, list(model.state_dict().items()), dtype)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arch", help="a torchvision.models constructor, e.g. resnet18")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--input", type=int, nargs="+", default=[3, 224, 224])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="the model JSON")
    p.add_argument("--weights", help="the state_dict as safetensors")
    a = p.parse_args()
    import torchvision
    torch.manual_seed(a.seed)
    model = getattr(torchvision.models, a.arch)(num_classes=a.num_classes).double().eval()
    export(model, a.input, a.output, a.weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
