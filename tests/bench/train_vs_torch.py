#!/usr/bin/python3
"""Training benchmarks, xntk against PyTorch on the same CPU threads (docs/benchmarks.md, "Training").

Usage: /usr/bin/python3 tests/bench/train_vs_torch.py BUILD/tests/train_bench [--threads 2] [--repeats 5]
       [--reps 20] [--only sgd_mlp,sgd_cnn,notebook]

  sgd_mlp   one SGD step (forward, cross-entropy, backward, update) of an MLP 784-1000-1000-10 on 256 samples,
            float32 (median of --reps steps after 2 warm-ups, per repeat)
  sgd_cnn   the same for the functorch NTK tutorial's CNN on 32 samples of 3x32x32
  notebook  a torchntk-notebook-style run: MLP 30-500-1 (ReLU), 20000 samples, batch 256, shuffled, 10 epochs of
            SGD on mse; after every epoch (and before the first) the training loss on all samples, the NTK of 500
            probe points (functorch's Jacobian contraction) and its spectrum (torch.linalg.eigvalsh); end to end

The xntk side runs in a child process (train_bench) with OMP_NUM_THREADS set; the PyTorch side in this
process with torch.set_num_threads. The two alternate (A B A B ...), --repeats times each; prints one JSON line
per measurement and then the medians and the ratio torch / xntk (> 1: xntk faster). xntk's notebook run does
more than PyTorch's per epoch (kernel components, alignments, the linearisation gap on the probe).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import blas_env


def torch_sgd_step(model, reps):
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    if model == "cnn":
        net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3),
                            nn.Flatten(), nn.Linear(21632, 10))
        x = torch.randn(32, 3, 32, 32)
    else:
        net = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10))
        x = torch.randn(256, 784)
    y = torch.arange(x.shape[0]) % 10
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for r in range(reps + 2):
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        if r >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_notebook():
    import torch
    import torch.nn as nn
    from functorch import jacrev, make_functional, vmap
    torch.manual_seed(0)
    n, probes = 20000, 500
    x = torch.randn(n, 30)
    y = torch.where(x[:, :1] > 0, 1.0, -1.0)
    probe = torch.randn(probes, 30)
    net = nn.Sequential(nn.Linear(30, 500), nn.ReLU(), nn.Linear(500, 1))
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss()
    g = torch.Generator().manual_seed(0)

    def log():
        with torch.no_grad():
            loss_fn(net(x), y).item()
        fnet, params = make_functional(net)
        jac = vmap(jacrev(fnet), (None, 0))(params, probe)
        jac = [j.flatten(2) for j in jac]  # (P, O, p) per parameter tensor
        k = torch.stack([torch.einsum("Naf,Maf->NM", j, j) for j in jac]).sum(0)
        return torch.linalg.eigvalsh(k)[-1].item()

    t = time.perf_counter()
    lam = log()
    for _ in range(10):
        perm = torch.randperm(n, generator=g)
        for b in range(0, n, 256):
            idx = perm[b:b + 256]
            opt.zero_grad()
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        lam = log()
    return time.perf_counter() - t, lam


def xntk_run(binary, args, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))  # OPENBLAS_CORETYPE as blas_env set it
    out = subprocess.run([binary, *args, "--threads", str(threads)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--only", default="sgd_mlp,sgd_cnn,notebook")
    a = ap.parse_args()
    blas_env.set_environment(a.binary)  # before torch loads OpenBLAS
    import torch
    torch.set_num_threads(a.threads)
    results = {}
    for name in a.only.split(","):
        xs, ts = [], []
        for r in range(a.repeats):
            if name.startswith("sgd_"):
                model = name[4:]
                x = xntk_run(a.binary, ["sgd_step", model, "--reps", str(a.reps)], a.threads)["median_s"]
                t = torch_sgd_step(model, a.reps)
            else:
                x = xntk_run(a.binary, ["notebook"], a.threads)["seconds"]
                t, _ = torch_notebook()
            xs.append(x)
            ts.append(t)
            print(json.dumps({"bench": name, "repeat": r, "xntk_s": x, "torch_s": t}), flush=True)
        results[name] = (statistics.median(xs), statistics.median(ts), min(xs), max(xs), min(ts), max(ts))
    print(f"\n{a.threads} threads, {a.repeats} alternating repeats; medians (min-max)")
    print(f"{'bench':10} {'xntk s':>24} {'torch s':>24} {'torch/xntk':>10}")
    for name, (x, t, x0, x1, t0, t1) in results.items():
        print(f"{name:10} {x:9.4g} ({x0:.4g}-{x1:.4g}) {t:9.4g} ({t0:.4g}-{t1:.4g}) {t / x:10.2f}")


if __name__ == "__main__":
    sys.exit(main())
