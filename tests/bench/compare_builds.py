#!/usr/bin/python3
"""Two builds of xntk side by side on the benchmark's workloads (docs/benchmarks.md), in one run.

Usage: tests/bench/compare_builds.py NEW/tests/xntk_bench OLD/tests/xntk_bench [--rounds 5] [--workloads a,b]
       [--threads 2] [--dtype float32] [--repeats R]

Each round runs every workload once in each build, alternating which goes first, each in a fresh process
(`xntk_bench --child`, which times the median of its own repeats after a warm-up). A workload's figure
for a build is the median over the rounds of those medians; the ratio is new / old (below 1: the new build
is faster), with the spread of the per-round ratios. Both get the same OPENBLAS_CORETYPE: none, unless OpenBLAS
falls back to SSE3 kernels on this CPU (blas_env.py asks NEW which). Prints a JSON line per workload and a
table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import blas_env

DEFAULT = ["tutorial_cnn_20x5", "tutorial_cnn_100", "torchntk_mlp_1000", "nt_fcn2048_16", "mlp3072_4096_trace"]


def run(binary, workload, threads, dtype, repeats):
    env = dict(os.environ)  # OPENBLAS_CORETYPE as blas_env set it, the same for both builds
    extra = ["--repeats", str(repeats)] if repeats else []
    out = subprocess.run([binary, "--child", workload, "--threads", str(threads), "--dtype", dtype] + extra,
                         capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        d = json.loads(line)
        if "error" in d:
            sys.exit(f"{binary} {workload}: {d['error']}")
        return d["seconds"]
    sys.exit(f"{binary} {workload}: no result (exit {out.returncode}): {out.stderr.strip()[:300]}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("new")
    p.add_argument("old")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workloads", default=",".join(DEFAULT))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=0, help="timed repeats per child (default: the workload's own)")
    a = p.parse_args()
    blas_env.set_environment(a.new)
    workloads = a.workloads.split(",")
    times = {w: {"new": [], "old": []} for w in workloads}
    for r in range(a.rounds):
        for w in workloads:
            order = ["new", "old"] if r % 2 == 0 else ["old", "new"]
            for which in order:
                times[w][which].append(run(a.new if which == "new" else a.old, w, a.threads, a.dtype, a.repeats))
    rows = []
    for w in workloads:
        new, old = times[w]["new"], times[w]["old"]
        ratios = [n / o for n, o in zip(new, old)]
        d = {"workload": w, "new_s": statistics.median(new), "old_s": statistics.median(old),
             "ratio": statistics.median(new) / statistics.median(old), "round_ratios_min": min(ratios),
             "round_ratios_max": max(ratios), "rounds": a.rounds, "new_all": new, "old_all": old}
        print(json.dumps(d))
        rows.append(d)
    print(f"\n{'workload':24} {'new (s)':>10} {'old (s)':>10} {'new/old':>8} {'per-round ratios':>18}")
    for d in rows:
        print(f"{d['workload']:24} {d['new_s']:10.4g} {d['old_s']:10.4g} {d['ratio']:8.3f} "
              f"{d['round_ratios_min']:8.3f}–{d['round_ratios_max']:.3f}")


if __name__ == "__main__":
    main()
