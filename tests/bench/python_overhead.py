#!/usr/bin/python3
"""The cost of calling xntk from Python: xntk.ntk against the C++ benchmark's own call on workload 3
(torchntk_mlp_1000: MLP 784-100-100-1 tanh, N = 1000, X2 omitted, full mode, float32), in alternating runs.

Usage: /usr/bin/python3 tests/bench/python_overhead.py BUILD [--rounds 6] [--repeats 21] [--threads 2]

Each round runs `BUILD/tests/xntk_bench torchntk_mlp_1000` (the median of --repeats timed calls after a
warm-up) and a Python process doing the same through `xntk.ntk` (same model and seed, the same number of
samples, one warm-up, the median of --repeats calls timed around xntk.ntk), in alternating order; each in a
fresh process, with OPENBLAS_CORETYPE unset. Prints one line per round and the medians over the rounds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

PYTHON_SIDE = r"""
import json, statistics, sys, time
import numpy as np
import xntk

repeats, threads = int(sys.argv[1]), int(sys.argv[2])
layers = [{"type": "linear", "out_features": 100}, {"type": "tanh"}, {"type": "linear", "out_features": 100},
          {"type": "tanh"}, {"type": "linear", "out_features": 1}]
net = xntk.Sequential({"input": [784], "layers": layers}, seed=0, dtype="float32")
x = np.random.default_rng(1).standard_normal((1000, 784)).astype(np.float32)
k = xntk.ntk(net, x, mode="full", threads=threads)  # warm-up
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    k = xntk.ntk(net, x, mode="full", threads=threads)
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": statistics.median(times), "seconds_min": times[0], "shape": list(k.shape)}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("build")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["PYTHONPATH"] = os.path.join(os.path.abspath(a.build), "python")
    bench = os.path.join(a.build, "tests", "xntk_bench")

    def cpp():
        out = subprocess.run([bench, "--threads", str(a.threads), "--repeats", str(a.repeats), "torchntk_mlp_1000"],
                             env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["seconds"]

    def python():
        out = subprocess.run([sys.executable, "-c", PYTHON_SIDE, str(a.repeats), str(a.threads)], env=env,
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["seconds"]

    rows = []
    for r in range(a.rounds):
        if r % 2 == 0:
            c, py = cpp(), python()
        else:
            py, c = python(), cpp()
        rows.append((c, py))
        print(f"round {r + 1} ({'C++ first' if r % 2 == 0 else 'Python first'}): C++ {c * 1e3:.3f} ms, "
              f"Python {py * 1e3:.3f} ms, ratio {py / c:.3f}", flush=True)
    c_med = statistics.median(c for c, _ in rows)
    py_med = statistics.median(py for _, py in rows)
    ratio_med = statistics.median(py / c for c, py in rows)
    print(f"medians over {a.rounds} rounds (each a median of {a.repeats} calls, {a.threads} threads): "
          f"C++ {c_med * 1e3:.3f} ms, Python {py_med * 1e3:.3f} ms; ratio of medians {py_med / c_med:.3f}, "
          f"median of the per-round ratios {ratio_med:.3f}")


if __name__ == "__main__":
    main()
