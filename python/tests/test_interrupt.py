"""Long calls: the GIL is released while computing, progress is reported, and Ctrl-C (SIGINT) stops a long
ntk call, or a training run, within a second, leaving the process as it was."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import xntk

# A deep, wide MLP on many samples: each step (one layer's components) takes a fraction of a second, the whole
# call far longer than the test waits.
CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import xntk

    method = sys.argv[1]
    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    if method == "explicit":
        layers = []
        for _ in range(60):
            layers += [{"type": "linear", "out_features": 256}, {"type": "tanh"}]
        spec = {"input": [256], "layers": layers + [{"type": "linear", "out_features": 4}]}
        shape = (1500, 256)
    else:  # the generic path's slow part is the per-sample Jacobians, reported a few samples at a time
        conv = {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}
        spec = {"input": [3, 16, 16], "layers": [conv, {"type": "relu"}, conv, {"type": "relu"},
                {"type": "global_avgpool"}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]}
        shape = (400, 3, 16, 16)
    net = xntk.Sequential(spec, seed=0)
    x = np.random.default_rng(0).standard_normal(shape)
    small = x[:5]
    want = xntk.ntk(net, small, method=method)
    xntk.release_cached_memory()
    before = rss_mb()
    started = [False]
    def progress(done, total):
        if not started[0]:
            started[0] = True
            print("started", total, flush=True)
    t0 = time.monotonic()
    try:
        xntk.ntk(net, x, mode="trace", method=method, progress=progress)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", round(time.monotonic() - t0, 3), flush=True)
    # nothing left behind: the same model gives the same kernel, and the memory is back
    again = xntk.ntk(net, small, method=method)
    assert np.array_equal(again, want), "a kernel after the interrupt differs"
    xntk.release_cached_memory()
    after = rss_mb()
    print("rss", round(before), round(after), flush=True)
    assert after <= before + 64, (before, after)
    print("ok", flush=True)
""")


@pytest.mark.parametrize("method", ["explicit", "autograd"])
def test_ctrl_c_stops_a_long_call_within_a_second(method):
    child = subprocess.Popen([sys.executable, "-c", CHILD, method], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=os.environ.copy())
    try:
        line = child.stdout.readline()
        assert line.startswith("started"), (line, child.stderr.read() if child.poll() is not None else "")
        steps = int(line.split()[1])
        time.sleep(0.5)  # well inside the computation
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline()
        latency = time.monotonic() - sent
        child.wait(timeout=120)
        # the rest through the same buffered reader as readline (communicate would miss what it has buffered)
        rest, err = child.stdout.read(), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert line.startswith("interrupted"), (line, rest, err)
    assert latency < 1.0, f"KeyboardInterrupt {latency:.2f} s after SIGINT ({steps} steps)"
    assert child.returncode == 0, err
    assert rest.strip().endswith("ok"), (rest, err)


TRAIN_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import xntk

    layers = []
    for _ in range(3):  # small steps: Ctrl-C is seen between steps, and the test machine may be busy
        layers += [{"type": "linear", "out_features": 128}, {"type": "tanh"}]
    net = xntk.Sequential({"input": [128], "layers": layers + [{"type": "linear", "out_features": 4}]}, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 128)), rng.standard_normal((200, 4))
    seen = []
    def on_log(log):
        seen.append(log["step"])
        if len(seen) == 1:
            print("started", flush=True)
    t0 = time.monotonic()
    try:
        xntk.train(net, x, y, steps=10**6, optimizer=xntk.Optimizer.sgd(1e-4), on_log=on_log)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", round(time.monotonic() - t0, 3), flush=True)
    # the model is usable: its weights are finite and another training step runs
    assert all(np.isfinite(v).all() for v in net.state_dict().values())
    xntk.train(net, x[:10], y[:10], steps=1, optimizer=xntk.Optimizer.sgd(1e-4))
    print("ok", flush=True)
""")


def test_ctrl_c_stops_training_within_a_second():
    child = subprocess.Popen([sys.executable, "-c", TRAIN_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=os.environ.copy())
    try:
        line = child.stdout.readline()
        assert line.startswith("started"), (line, child.stderr.read() if child.poll() is not None else "")
        time.sleep(0.5)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline()
        latency = time.monotonic() - sent
        child.wait(timeout=120)
        # the rest through the same buffered reader as readline (communicate would miss what it has buffered)
        rest, err = child.stdout.read(), child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
    assert line.startswith("interrupted"), (line, rest, err)
    assert latency < 1.0, f"KeyboardInterrupt {latency:.2f} s after SIGINT"
    assert child.returncode == 0, err
    assert rest.strip().startswith("ok"), (rest, err)


def test_progress_is_reported_and_its_exceptions_propagate():
    net = xntk.Sequential({"input": [8], "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                                                    {"type": "linear", "out_features": 2}]})
    x = np.random.default_rng(0).standard_normal((40, 8))
    calls = []
    k = xntk.ntk(net, x, tile=10, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert calls == [(i + 1, total) for i in range(total)] and total == 10 * 2  # 10 tile pairs × 2 layers
    assert np.array_equal(k, xntk.ntk(net, x, tile=10))

    class Stop(Exception):
        pass

    def stop(done, total):
        if done == 3:
            raise Stop("enough")

    with pytest.raises(Stop, match="enough"):
        xntk.ntk(net, x, tile=10, progress=stop)
    with pytest.raises(Stop):
        xntk.ntk(net, x, method="autograd", progress=stop)
    assert np.array_equal(xntk.ntk(net, x, tile=10), k)  # the model is intact


def test_the_gil_is_released_while_computing():
    """A Python thread counting in a loop keeps counting while ntk runs (it could not if the GIL were held)."""
    layers = []
    for _ in range(8):
        layers += [{"type": "linear", "out_features": 512}, {"type": "tanh"}]
    net = xntk.Sequential({"input": [512], "layers": layers + [{"type": "linear", "out_features": 2}]})
    x = np.random.default_rng(0).standard_normal((1500, 512))
    count, stop = [0], threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1

    thread = threading.Thread(target=counter)
    thread.start()
    try:
        time.sleep(0.05)
        start = count[0]
        t0 = time.monotonic()
        xntk.ntk(net, x, mode="trace", threads=1)
        seconds = time.monotonic() - t0
        during = count[0] - start
    finally:
        stop.set()
        thread.join()
    # the main thread held the GIL only for the argument checks and the progress steps
    assert seconds > 0.2, "the computation was too short to tell"
    assert during > 20000 * seconds, (during, seconds)
