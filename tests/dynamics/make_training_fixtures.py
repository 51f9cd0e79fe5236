#!/usr/bin/python3
"""Generates the PyTorch training fixtures of xntk (tests/dynamics/fixtures/<name>/).

Run with Debian's Python and its python3-torch (1.13, with functorch):

    /usr/bin/python3 tests/dynamics/make_training_fixtures.py [NAME ...]

Each fixture trains a model of its model.json (built as tests/conformance/make_fixtures.py builds it) in float64
with torch.optim.SGD or Adam for `steps` steps, full batch or in unshuffled mini-batches, with the lazy-training
notebook's transforms: the model trained is alpha * f (or alpha * (f - f0), f0 the frozen initial network, with
"center"), and the loss minimised is loss(alpha * f, y) / alpha**2, as the notebook's `gd`. With "linearized" the
model is f0(x) + J(x)(theta - theta0), J from functorch's jacrev at theta0 (the notebook's `linear_gd` with its
features A). It writes

    model.json            the model
    weights.safetensors   the initial state_dict
    x.npy, y.npy          inputs and targets (class labels as float64 integers, or an (N, C) array)
    meta.json             {"loss", "optimizer": {...}, "steps", "batch_size", "alpha", "center", "linearized"}
    losses.npy            loss(alpha * f, y) on each step's batch before the step (not divided by alpha**2)
    final.safetensors     the state_dict after the last step
"""

import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from functorch import jacrev, make_functional, vmap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
from make_fixtures import build, write_safetensors  # noqa: E402

OUT = os.path.join(HERE, "fixtures")


def loss_fn(kind, out, y):
    if kind == "mse":
        return nn.MSELoss()(out, y)
    if y.dim() == 1:
        return nn.CrossEntropyLoss()(out, y.long())
    return nn.CrossEntropyLoss()(out, y)


def make_optimizer(params, o):
    if o["kind"] == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o.get("momentum", 0), dampening=o.get("dampening", 0),
                               weight_decay=o.get("weight_decay", 0), nesterov=o.get("nesterov", False))
    return torch.optim.Adam(params, lr=o["lr"], betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                            eps=o.get("eps", 1e-8), weight_decay=o.get("weight_decay", 0),
                            amsgrad=o.get("amsgrad", False))


def make(name, spec, loss, optimizer, n, targets, steps=100, batch_size=0, alpha=1.0, center=False, linearized=False,
         seed=0):
    torch.manual_seed(seed)
    model = build(spec)
    f0 = build(spec)
    f0.load_state_dict(model.state_dict())
    shape = spec["input"] if isinstance(spec["input"], list) else [spec["input"]]
    x = torch.randn(n, *shape, dtype=torch.float64)
    with torch.no_grad():
        out_dim = model(x[:1]).flatten(1).shape[1]
    if targets == "labels":
        y = torch.randint(0, out_dim, (n,)).double()
    elif targets == "probabilities":
        y = torch.softmax(torch.randn(n, out_dim, dtype=torch.float64), dim=1)
    else:
        y = torch.randn(n, out_dim, dtype=torch.float64)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    names = [k for k, _ in model.named_parameters()]

    if linearized:
        fnet, theta0 = make_functional(f0)
        theta0 = tuple(p.detach() for p in theta0)
        theta = [nn.Parameter(p.clone()) for p in theta0]

        def jac(xb):  # (N, O, P) in named_parameters order
            js = vmap(jacrev(lambda p, xi: fnet(p, xi.unsqueeze(0)).flatten()), (None, 0))(theta0, xb)
            return torch.cat([j.flatten(2) for j in js], dim=2)

        def forward(xb):
            d = torch.cat([(t - t0).flatten() for t, t0 in zip(theta, theta0)])
            lin = jac(xb) @ d
            if not center:
                lin = lin + fnet(theta0, xb)
            return alpha * lin

        params = theta
    else:
        def forward(xb):
            out = model(xb)
            if center:
                out = out - f0(xb).detach()
            return alpha * out

        params = list(model.parameters())
    opt = make_optimizer(params, optimizer)
    batch = batch_size or n
    per_epoch = math.ceil(n / batch)
    losses = []
    for step in range(steps):
        pos = step % per_epoch
        xb, yb = x[pos * batch:(pos + 1) * batch], y[pos * batch:(pos + 1) * batch]
        out = forward(xb)
        value = loss_fn(loss, out, yb)
        losses.append(value.item())
        opt.zero_grad()
        (value / alpha ** 2).backward()
        opt.step()
    if linearized:
        final = {k: t.detach() for k, t in zip(names, theta)}
    else:
        final = {k: v for k, v in model.state_dict().items()}

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    with open(os.path.join(d, "model.json"), "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    write_safetensors(os.path.join(d, "weights.safetensors"), list(init.items()), "float64")
    write_safetensors(os.path.join(d, "final.safetensors"), [(k, final[k]) for k in init], "float64")
    np.save(os.path.join(d, "x.npy"), x.numpy())
    np.save(os.path.join(d, "y.npy"), y.numpy())
    np.save(os.path.join(d, "losses.npy"), np.array(losses))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"loss": loss, "optimizer": optimizer, "steps": steps, "batch_size": batch_size, "alpha": alpha,
                   "center": center, "linearized": linearized}, f, indent=1)
        f.write("\n")
    print(f"{name}: {steps} steps, loss {losses[0]:.4g} -> {losses[-1]:.4g}")


def L(out, **kw):
    return {"type": "linear", "out_features": out, **kw}


def A(t, **kw):
    return {"type": t, **kw}


MLP = {"input": [5], "layers": [L(8), A("tanh"), L(6), A("relu"), L(3)]}
NOTEBOOK = {"input": [1], "layers": [L(20), A("relu"), L(20), A("relu"), L(1)]}

FIXTURES = {
    "mlp_sgd_mse_full": dict(spec=MLP, loss="mse", optimizer={"kind": "sgd", "lr": 0.05}, n=8, targets="values"),
    "mlp_sgd_momentum_decay_minibatch": dict(
        spec=MLP, loss="mse", n=10, targets="values", batch_size=4,
        optimizer={"kind": "sgd", "lr": 0.02, "momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3}),
    "mlp_sgd_nesterov_ce_labels": dict(
        spec={"input": [4], "parameterization": "ntk", "layers": [L(7), A("gelu"), L(5)]}, loss="cross_entropy",
        n=9, targets="labels", batch_size=3, optimizer={"kind": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "mlp_adam_ce_probabilities": dict(
        spec=MLP, loss="cross_entropy", n=8, targets="probabilities",
        optimizer={"kind": "adam", "lr": 1e-2, "weight_decay": 1e-4}),
    "mlp_adam_amsgrad_mse_minibatch": dict(
        spec=MLP, loss="mse", n=7, targets="values", batch_size=3,
        optimizer={"kind": "adam", "lr": 5e-3, "beta1": 0.8, "beta2": 0.99, "amsgrad": True}),
    "cnn_sgd_ce": dict(
        spec={"input": [2, 6, 6], "layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                                             A("relu"), A("maxpool2d", kernel_size=2), A("flatten"), L(4)]},
        loss="cross_entropy", n=6, targets="labels", batch_size=4,
        optimizer={"kind": "sgd", "lr": 0.05, "momentum": 0.5}),
    "residual_adam_mse": dict(
        spec={"input": [4], "layers": [L(6), A("relu"), {"type": "residual", "body": [L(6), A("tanh"), L(6)]},
                                       {"type": "residual", "body": [L(2)], "shortcut": [L(2, bias=False)]}]},
        loss="mse", n=6, targets="values", optimizer={"kind": "adam", "lr": 1e-2}),
    "notebook_alpha_centred": dict(
        spec=NOTEBOOK, loss="mse", n=2, targets="values", alpha=10.0, center=True,
        optimizer={"kind": "sgd", "lr": 1e-3}),
    "linearized_alpha_mse": dict(
        spec=MLP, loss="mse", n=6, targets="values", alpha=2.0, linearized=True, optimizer={"kind": "sgd", "lr": 0.05}),
    "linearized_centred_adam_ce": dict(
        spec=MLP, loss="cross_entropy", n=6, targets="labels", center=True, linearized=True, batch_size=4,
        optimizer={"kind": "adam", "lr": 1e-2, "weight_decay": 1e-3}),
}


def main():
    names = sys.argv[1:] or list(FIXTURES)
    for i, name in enumerate(FIXTURES):
        if name in names:
            make(name, seed=100 + i, **FIXTURES[name])


if __name__ == "__main__":
    main()
