#!/usr/bin/python3
"""Draws the lazy-training study's figures from the JSON lines written by the lazy_training example.

Usage: /usr/bin/python3 examples/lazy_training/plot.py LOG_DIR [OUT_DIR]

Reads LOG_DIR/<standard|ntk>_w<width>_<net|lin>.jsonl (one StepLog per line, docs/dynamics.md) and writes to
OUT_DIR (default LOG_DIR) with matplotlib's Agg backend:
  lazy_weight_change.png  relative weight change ||theta - theta0|| / ||theta0|| against step, per width
  lazy_loss.png           training loss against step, per width, the linearised network dashed
  lazy_scaling.png        kernel change ||K_t - K_0||_F / ||K_0||_F and weight change of the networks against
                          width, log-log, with least-squares slopes: at the last logged probe (over the widths
                          that reached it) and, if some runs are shorter, at the last probe all reached
"""
import glob
import json
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PARAMS = ("standard", "ntk")


def load(directory):
    runs = {}
    for path in glob.glob(os.path.join(directory, "*.jsonl")):
        m = re.fullmatch(r"(standard|ntk)_w(\d+)_(net|lin)\.jsonl", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if lines:
            runs[(m.group(1), int(m.group(2)), m.group(3))] = lines
    return runs


def widths_of(runs, param):
    return sorted({w for (p, w, _) in runs if p == param})


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) == 3 else src
    os.makedirs(dst, exist_ok=True)
    runs = load(src)
    if not runs:
        sys.exit(f"no <param>_w<width>_<net|lin>.jsonl logs in {src}")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    plt.rcParams.update({"font.size": 9, "axes.grid": True})

    def per_width(field, fname, ylabel, title, logy):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, param in zip(axes, PARAMS):
            low = []
            for i, w in enumerate(widths_of(runs, param)):
                for kind, style in (("net", "-"), ("lin", "--")):
                    lines = runs.get((param, w, kind))
                    if not lines:
                        continue
                    label = f"width {w}" if kind == "net" else None
                    low += [l[field] for l in lines if l[field] and l[field] > 0]
                    ax.plot([l["step"] for l in lines], [l[field] for l in lines], style,
                            color=colors[i % len(colors)], label=label, lw=1.4)
            ax.set_title(f"{param} parameterisation")
            ax.set_xlabel("step")
            if logy:
                ax.set_yscale("log")
                if low:  # step 0's zero weight change has no logarithm
                    ax.set_ylim(bottom=0.5 * min(low))
            ax.legend()
            ax.set_ylabel(ylabel)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.path.join(dst, fname), dpi=90)
        plt.close(fig)

    per_width("weight_change", "lazy_weight_change.png", r"$\Vert\theta-\theta_0\Vert/\Vert\theta_0\Vert$",
              "Relative weight change (network solid, linearised dashed)", True)
    per_width("train_loss", "lazy_loss.png", "training loss (mse)",
              "Training loss (network solid, linearised dashed)", True)

    # scaling with width at the last step every network run reached (its last probe)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (metric, label) in zip(axes, (("kernel_change", r"$\Vert\Theta_t-\Theta_0\Vert_F/\Vert\Theta_0\Vert_F$"),
                                          ("weight_change", r"$\Vert\theta_t-\theta_0\Vert/\Vert\theta_0\Vert$"))):
        for i, param in enumerate(PARAMS):
            nets = {w: runs[(param, w, "net")] for w in widths_of(runs, param) if (param, w, "net") in runs}
            if not nets:
                continue
            lasts = {w: max(l["step"] for l in lines if "probe" in l) for w, lines in nets.items()}
            for j, last in enumerate(sorted({min(lasts.values()), max(lasts.values())}, reverse=True)):
                ws, vs = [], []
                for w, lines in sorted(nets.items()):
                    at = [l for l in lines if l["step"] == last and "probe" in l]
                    if not at:
                        continue
                    v = at[0]["probe"]["kernel_change"] if metric == "kernel_change" else at[0]["weight_change"]
                    if v and v > 0:
                        ws.append(w)
                        vs.append(v)
                if not ws:
                    continue
                text = ""
                if len(ws) >= 2:
                    slope, icpt = np.polyfit(np.log10(ws), np.log10(vs), 1)
                    ax.plot(ws, 10 ** (icpt + slope * np.log10(ws)), ":", color="gray", lw=1)
                    text = f", slope {slope:.2f}"
                ax.plot(ws, vs, "os"[j] + "-", color=colors[i], alpha=1.0 if j == 0 else 0.55,
                        label=f"{param}, step {last}{text}", lw=1.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel(label)
        ax.legend()
    axes[0].set_title("NTK change on the probe")
    axes[1].set_title("weight change")
    fig.tight_layout()
    fig.savefig(os.path.join(dst, "lazy_scaling.png"), dpi=90)
    plt.close(fig)
    print("wrote", ", ".join(os.path.join(dst, f) for f in ("lazy_weight_change.png", "lazy_loss.png",
                                                             "lazy_scaling.png")))


if __name__ == "__main__":
    main()
