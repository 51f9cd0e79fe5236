#!/usr/bin/python3
"""Benchmark: the trace NTK of torchvision's resnet18(num_classes=10) in eval mode on N 3x32x32 inputs, xntk
against functorch's Jacobian contraction (the functorch NTK tutorial's method 1), in one run.

Usage: /usr/bin/python3 tests/bench/resnet18_vs_functorch.py BUILD/xntk [--n 16] [--dtype float32]
       [--threads 2] [--mem-gb 8] [--timeout 900]

The model is exported by tests/conformance/export_torch.py (PyTorch's default initialisation, seed 0). xntk runs
as `xntk compute --mode trace --stats` (its seconds and peak resident memory); functorch runs in a child
process under an address-space limit (--mem-gb), so that running out of memory is a result rather than a
swapping machine. Prints one JSON line per method, then the ratio and the kernels' agreement.
"""
import argparse, json, multiprocessing as mp, os, resource, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def functorch_trace(model_path, x_path, dtype, threads, mem_gb, out_path, q):
    try:
        resource.setrlimit(resource.RLIMIT_AS, (mem_gb << 30, mem_gb << 30))
        import numpy as np
        import torch
        from functorch import jacrev, make_functional_with_buffers, vmap
        torch.set_num_threads(threads)
        model = torch.load(model_path)
        x = torch.from_numpy(np.load(x_path))
        fnet, params, buffers = make_functional_with_buffers(model)

        def single(p, xi):
            return fnet(p, buffers, xi.unsqueeze(0)).flatten()

        t0 = time.perf_counter()
        jac = vmap(jacrev(single), (None, 0))(params, x)
        k = sum(torch.einsum("Naf,Maf->NM", j.flatten(2), j.flatten(2)) for j in jac)
        seconds = time.perf_counter() - t0
        np.save(out_path, k.detach().double().numpy())
        q.put({"seconds": seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})
    except (MemoryError, RuntimeError) as e:
        q.put({"error": "out of memory" if "memory" in str(e).lower() or isinstance(e, MemoryError) else str(e)[:200]})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("xntk")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mem-gb", type=int, default=8)
    p.add_argument("--timeout", type=int, default=900)
    a = p.parse_args()
    import numpy as np
    import torch
    import torchvision
    sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
    import export_torch
    torch.manual_seed(0)
    tdtype = torch.float32 if a.dtype == "float32" else torch.float64
    model = torchvision.models.resnet18(num_classes=10).to(tdtype).eval()
    x = torch.randn(a.n, 3, 32, 32, dtype=tdtype)
    with tempfile.TemporaryDirectory() as d:
        export_torch.export(model, (3, 32, 32), f"{d}/model.json", f"{d}/w.safetensors", a.dtype)
        np.save(f"{d}/x.npy", x.numpy())
        torch.save(model, f"{d}/model.pt")
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        cmd = [a.xntk, "compute", f"{d}/model.json", "--x1", f"{d}/x.npy", "--weights",
               f"{d}/w.safetensors", "--mode", "trace", "--dtype", a.dtype, "-o", f"{d}/k_xntk.npy", "--stats"]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.timeout)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        stats = json.loads(r.stdout.strip().splitlines()[-1])
        xntk = {"method": "xntk", "n": a.n, "dtype": a.dtype, "threads": a.threads, "stats": stats}
        print(json.dumps(xntk))
        q = mp.get_context("spawn").Queue()
        child = mp.get_context("spawn").Process(target=functorch_trace, args=(f"{d}/model.pt", f"{d}/x.npy", a.dtype,
                                                                             a.threads, a.mem_gb, f"{d}/k_ft.npy", q))
        child.start()
        child.join(a.timeout)
        if child.is_alive():
            child.kill()
            ft = {"error": f"slower than {a.timeout} s"}
        else:
            ft = q.get() if not q.empty() else {"error": f"exited with status {child.exitcode} (out of memory?)"}
        print(json.dumps({"method": "functorch_jacobian_contraction", "mem_gb_limit": a.mem_gb, **ft}))
        compute_s = stats["compute_s"]
        if "seconds" in ft:
            k1, k2 = np.load(f"{d}/k_xntk.npy").astype(np.float64), np.load(f"{d}/k_ft.npy")
            print(f"functorch / xntk (compute): {ft['seconds'] / compute_s:.1f}x;  "
                  f"relative difference {abs(k1 - k2).max() / abs(k2).max():.2e}")
        else:
            print(f"functorch: {ft['error']} (address space limited to {a.mem_gb} GB); xntk {compute_s} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
