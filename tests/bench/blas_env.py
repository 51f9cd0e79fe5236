"""The OpenBLAS kernel set the benchmark scripts give every process they compare.

OpenBLAS falls back to Prescott's SSE3 kernels on CPU models it does not know (Debian's 0.3.21 on an Intel
Xeon of model 207: 37 GFLOP/s of float32 GEMM against 214 with SkylakeX's). xntk's programs then re-execute
themselves with OPENBLAS_CORETYPE set (lib/backend/cpu/blas.hpp, reexec_for_blas); a comparison must give
the other side (an older xntk build, PyTorch) the same kernels, so the scripts ask this build's benchmark
program which value xntk would set (`--blas-coretype`) and set it for both. Any OPENBLAS_CORETYPE the caller
set is removed first (it may be set to a slow one in this environment; docs/benchmarks.md).
"""
import os
import subprocess
import sys


def set_environment(binary):
    """Sets os.environ for this process and its children; returns what it set (None: nothing)."""
    os.environ.pop("OPENBLAS_CORETYPE", None)
    out = subprocess.run([binary, "--blas-coretype"], capture_output=True, text=True, check=True).stdout.strip()
    if not out:
        return None
    os.environ["OPENBLAS_CORETYPE"] = out
    print(f"OpenBLAS does not know this CPU and would run its generic kernels: OPENBLAS_CORETYPE={out} (what "
          "xntk sets for itself) for every process compared", file=sys.stderr)
    return out
