#!/usr/bin/python3
"""`xntk analyze` of two builds on random float64 trace kernels, alternating: the eigensolver's wall time.

Usage: /usr/bin/python3 tests/bench/analyze_bench.py NEW/xntk OLD/xntk [--sizes 4000,8000] [--rounds 3]
       [--dir /tmp]

Each size gets one kernel K = A Aᵀ / N with A an (N × N) standard normal matrix (seed 0), written once as
DIR/analyze_bench_N.npy (8 N² bytes) and removed at the end. Each round runs `xntk analyze K --json` once per
build in fresh processes, alternating which goes first; OPENBLAS_CORETYPE is removed from the environment
(it slows OpenBLAS; docs/benchmarks.md). Prints one JSON line per size (both builds' wall times, their
medians, the ratio new / old of the medians: below 1 the new build is faster) and checks that both builds
report the same eigenvalues to 1e-10 relative to max|λ|.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def analyze(binary, path, env):
    start = time.perf_counter()
    out = subprocess.run([binary, "analyze", path, "--json"], capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{binary} analyze {path}: exit {out.returncode}: {out.stderr.strip()}")
    return wall, json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("new")
    p.add_argument("old")
    p.add_argument("--sizes", default="4000,8000")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default="/tmp")
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    for n in (int(s) for s in args.sizes.split(",")):
        path = os.path.join(args.dir, f"analyze_bench_{n}.npy")
        a = np.random.default_rng(0).standard_normal((n, n))
        k = a @ a.T / n
        del a
        np.save(path, k)
        del k
        try:
            walls = {"new": [], "old": []}
            summary = {}
            for r in range(args.rounds):
                order = ["new", "old"] if r % 2 == 0 else ["old", "new"]
                for which in order:
                    wall, j = analyze(getattr(args, which), path, env)
                    walls[which].append(round(wall, 3))
                    summary[which] = j
            new_ev, old_ev = np.array(summary["new"]["eigenvalues"]), np.array(summary["old"]["eigenvalues"])
            error = float(np.max(np.abs(new_ev - old_ev)) / np.max(np.abs(old_ev)))
            if error > 1e-10:
                sys.exit(f"N = {n}: the eigenvalues differ by {error:.3g} relative to max|λ|")
            med = {w: statistics.median(t) for w, t in walls.items()}
            print(json.dumps({"n": n, "new": walls["new"], "old": walls["old"], "new_median": med["new"],
                              "old_median": med["old"], "ratio": round(med["new"] / med["old"], 3), "eigenvalue_error": error,
                              "new_eigensolver": summary["new"].get("eigensolver", "?"),
                              "old_eigensolver": summary["old"].get("eigensolver", "(not reported)")}),
                  flush=True)
        finally:
            os.remove(path)


if __name__ == "__main__":
    main()
