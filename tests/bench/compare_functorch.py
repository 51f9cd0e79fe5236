#!/usr/bin/python3
"""Side-by-side timings: the functorch NTK tutorial's two methods (Jacobian contraction and NTK-vector
products) against xntk on the reference workloads 1-5 of docs/benchmarks.md, in one session.

Usage: /usr/bin/python3 tests/bench/compare_functorch.py BUILD/tests/xntk_bench [--threads 2]
       [--workloads a,b] [--timeout 600] [--mem-gb 16]

Needs Debian's python3-torch (functorch ships with it). Each functorch method runs in a child process
under an address-space limit (--mem-gb), so running out of memory is reported as a result instead of
swapping the machine; a method slower than --timeout seconds is reported as such. Prints one JSON
line per workload and method, then a table with the ratio functorch / xntk.
"""
import argparse, json, multiprocessing as mp, resource, statistics, subprocess, sys, time

# name: (model, x1 shape, x2 shape or None when X2 is omitted, mode) — the same as tests/bench/bench.cpp
WORKLOADS = {
    "tutorial_cnn_20x5": ("tutorial_cnn", (20, 3, 32, 32), (5, 3, 32, 32), "full"),
    "tutorial_cnn_100": ("tutorial_cnn", (100, 3, 32, 32), None, "full"),
    "torchntk_mlp_1000": ("mlp:784,100,100,1:tanh", (1000, 784), None, "full"),
    "nt_fcn2048_16": ("mlp:3072,2048,2048,2048,8:relu", (16, 3072), None, "full"),
    "mlp3072_4096_trace": ("mlp:3072,1024,1024,10:relu", (4096, 3072), None, "trace"),
}


def build(model):
    import torch.nn as nn
    if model == "tutorial_cnn":
        return nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3),
                             nn.Flatten(), nn.Linear(21632, 10))
    _, sizes, act = model.split(":")
    sizes = [int(s) for s in sizes.split(",")]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append({"relu": nn.ReLU, "tanh": nn.Tanh}[act]())
    return nn.Sequential(*layers)


def method_jacobian_contraction(fnet, params, x1, x2, mode):
    from functorch import vmap, jacrev
    j1 = [j.flatten(2) for j in vmap(jacrev(fnet), (None, 0))(params, x1)]
    j2 = [j.flatten(2) for j in vmap(jacrev(fnet), (None, 0))(params, x2)]
    expr = {"full": "Naf,Mbf->NMab", "trace": "Naf,Maf->NM"}[mode]
    import torch
    return torch.stack([torch.einsum(expr, a, b) for a, b in zip(j1, j2)]).sum(0)


def method_ntk_vps(fnet, params, x1, x2, mode):
    import torch
    from functorch import vmap, vjp, jvp

    def pair(a, b):
        out, pull = vjp(lambda p: fnet(p, a), params)

        def column(v):
            return jvp(lambda p: fnet(p, b), (params,), pull(v))[1]

        return vmap(column)(torch.eye(out.numel(), dtype=out.dtype).view(out.numel(), -1))

    k = vmap(vmap(pair, (None, 0)), (0, None))(x1, x2)
    return k if mode == "full" else torch.einsum("NMKK->NM", k)


def child(name, method, threads, mem_gb, queue):
    try:
        limit = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import torch
        from functorch import make_functional
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model, s1, s2, mode = WORKLOADS[name]
        fnet, params = make_functional(build(model))
        single = lambda p, x: fnet(p, x.unsqueeze(0)).squeeze(0)
        x1 = torch.randn(*s1)
        x2 = torch.randn(*s2) if s2 else x1
        f = {"jacobian_contraction": method_jacobian_contraction, "ntk_vps": method_ntk_vps}[method]
        t = time.perf_counter()
        f(single, params, x1, x2, mode)  # warm-up
        first = time.perf_counter() - t
        times = [first]
        if first < 10:  # repeat the fast ones; the median is then over 3 timed runs after the warm-up
            times = []
            for _ in range(3):
                t = time.perf_counter()
                f(single, params, x1, x2, mode)
                times.append(time.perf_counter() - t)
        queue.put({"seconds": statistics.median(times)})
    except (RuntimeError, MemoryError) as e:
        msg = str(e).splitlines()[0][:160]
        queue.put({"error": "out of memory" if "memory" in msg.lower() or "alloc" in msg.lower() else msg})


def functorch_time(name, method, threads, mem_gb, timeout):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(name, method, threads, mem_gb, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return {"error": f"slower than {timeout} s (stopped)"}
    if p.exitcode != 0 and q.empty():
        return {"error": f"killed (exit {p.exitcode}), likely out of memory"}
    return q.get() if not q.empty() else {"error": "no result"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", help="path to the xntk_bench binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--mem-gb", type=float, default=16)
    args = ap.parse_args()
    rows = []
    for name in args.workloads.split(","):
        out = subprocess.run([args.bench, "--threads", str(args.threads), name], capture_output=True, text=True)
        x = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({"tool": "xntk", **x}), flush=True)
        for method in ("jacobian_contraction", "ntk_vps"):
            r = functorch_time(name, method, args.threads, args.mem_gb, args.timeout)
            line = {"tool": "functorch", "workload": name, "method": method, **r}
            if "seconds" in r and "seconds" in x:
                line["ratio_to_xntk"] = r["seconds"] / x["seconds"]
            print(json.dumps(line), flush=True)
            rows.append((name, method, r, x))
    print(f"\n{'workload':<22} {'functorch method':<22} {'functorch s':>12} {'xntk s':>10} {'ratio':>10}")
    for name, method, r, x in rows:
        fs = f"{r['seconds']:.4g}" if "seconds" in r else r["error"][:30]
        ratio = f"{r['seconds'] / x['seconds']:.1f}x" if "seconds" in r and "seconds" in x else "-"
        print(f"{name:<22} {method:<22} {fs:>12} {x.get('seconds', float('nan')):>10.4g} {ratio:>10}")


if __name__ == "__main__":
    main()
