"""The OpenBLAS kernel set the benchmark scripts give every process they compare.

OpenBLAS falls back to Prescott's SSE3 kernels on CPU models it does not know (Debian's 0.3.21 on an Intel
Xeon of model 207: 37 GFLOP/s of float32 GEMM against 214 with SkylakeX's). xntk's programs then re-execute
themselves with OPENBLAS_CORETYPE set (lib/backend/cpu/blas.hpp, reexec_for_blas); a comparison must give
the other side (an older xntk build, PyTorch) the same kernels, so the scripts set OPENBLAS_CORETYPE for
both, by the same rule, only where OpenBLAS's own choice has no AVX2 kernels. Any OPENBLAS_CORETYPE the
caller set is removed first (it may be set to a slow one in this environment; docs/benchmarks.md).
"""
import os
import subprocess
import sys

AVX2_CORES = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"}


def openblas_core():
    """OpenBLAS's own choice on this CPU, without OPENBLAS_CORETYPE ('' when it cannot be loaded)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = ("import ctypes; l = ctypes.CDLL('libopenblas.so.0'); l.openblas_get_corename.restype = ctypes.c_char_p;"
            "print(l.openblas_get_corename().decode())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def coretype():
    """The OPENBLAS_CORETYPE to use, or None where OpenBLAS's choice stands (xntk's own rule)."""
    core, flags = openblas_core(), cpu_flags()
    if not core or core.lower() in AVX2_CORES or not {"avx2", "fma"} <= flags:
        return None
    return "SKYLAKEX" if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags else "HASWELL"


def set_environment():
    """Sets os.environ for this process and its children; returns what it set (None: nothing)."""
    os.environ.pop("OPENBLAS_CORETYPE", None)
    c = coretype()
    if c:
        os.environ["OPENBLAS_CORETYPE"] = c
        print(f"OpenBLAS chose {openblas_core()} kernels on this CPU: OPENBLAS_CORETYPE={c} for every process "
              "compared", file=sys.stderr)
    return c
