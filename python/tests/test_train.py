"""Training and kernel predictions from Python against independent computations: PyTorch's own training
(torch.optim, nn.MSELoss / nn.CrossEntropyLoss, autograd), functorch's Jacobians and jvp, and NumPy's
iterations, eigendecompositions and solves of the function-space formulas. Float64 throughout, ≤ 1e-10
relative where the arithmetic is the same up to rounding."""

import copy

import numpy as np
import pytest

from helpers import jacobians, reference_ntk, rel_error, torch, xntk
from functorch import jvp as functorch_jvp, make_functional  # noqa: E402

nn = torch.nn
TOL = 1e-10


def mlp(seed, outputs=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, outputs)).double()


def cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.GELU(),
                         xntk.torch.Residual([nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()]), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(12, 3)).double()


def data(seed, n, shape, outputs=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    y = torch.randn(n, outputs, generator=g, dtype=torch.float64)
    labels = torch.randint(0, outputs, (n,), generator=g)
    probs = torch.softmax(torch.randn(n, outputs, generator=g, dtype=torch.float64), 1)
    return x, y, labels, probs


def flat(named):
    """The parameters of a state_dict-like mapping as one float64 vector, in its order."""
    return np.concatenate([np.asarray(v.detach() if hasattr(v, "detach") else v, dtype=np.float64).ravel()
                           for v in named.values()])


# ---- losses, jvp, Jacobian ----


def test_loss_equals_torch():
    _, y, labels, probs = data(0, 7, (4,))
    f = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for kind, target, torch_loss in (("mse", y, nn.MSELoss()), ("cross_entropy", labels, nn.CrossEntropyLoss()),
                                     ("cross_entropy", probs, nn.CrossEntropyLoss())):
        ff = f.clone().requires_grad_(True)
        want = torch_loss(ff, target)
        want.backward()
        value, grad = xntk.loss(kind, f, target)
        assert abs(value - want.item()) <= TOL * abs(want.item()), kind
        assert rel_error(grad, ff.grad) <= TOL, kind
    value32, grad32 = xntk.loss("mse", f.float(), y.float())
    assert grad32.dtype == np.float32 and abs(value32 - nn.MSELoss()(f, y).item()) <= 1e-5
    with pytest.raises(xntk.Error, match=r"targets: the label of sample 2 is 3"):
        xntk.loss("cross_entropy", f, torch.tensor([0, 1, 3, 0, 0, 0, 0]))
    with pytest.raises(xntk.Error, match=r"targets has shape \(7, 2\), expected \(7, 3\)"):
        xntk.loss("mse", f, y[:, :2])
    with pytest.raises(xntk.Error, match=r"^kind: expected one of mse, cross_entropy, got 'l1'$"):
        xntk.loss("l1", f, y)


@pytest.mark.parametrize("build,shape", [(mlp, (4,)), (cnn, (2, 4, 4))], ids=["mlp", "cnn"])
def test_jacobian_and_jvp_equal_functorch(build, shape):
    module = build(2)
    net = xntk.from_torch(module, shape)
    x, *_ = data(3, 5, shape)
    J = jacobians(module, x)  # functorch: {state_dict name: (N, O, P)}
    want = np.concatenate([J[net.torch_names[c]].numpy() for c in net.component_names()], axis=2)
    got = xntk.jacobian(net, x)
    assert got.shape == want.shape == (5, 3, net.num_parameters)
    assert rel_error(got, want) <= TOL
    # jvp with random tangents for some parameters (the others zero)
    g = torch.Generator().manual_seed(4)
    names = [n for n, _ in module.named_parameters()]
    tangents = {n: torch.randn(p.shape, generator=g, dtype=torch.float64) if i % 3 != 1 else torch.zeros_like(p)
                for i, (n, p) in enumerate(module.named_parameters())}
    fnet, params = make_functional(module)
    _, want_jvp = functorch_jvp(lambda *p: fnet(p, x), tuple(params), tuple(tangents[n] for n in names))
    given = {n: t for i, (n, t) in enumerate(tangents.items()) if i % 3 != 1}
    assert rel_error(xntk.jvp(net, x, given), want_jvp.detach()) <= TOL
    with pytest.raises(xntk.Error, match=r"x: expected shape \(N, "):
        xntk.jacobian(net, x[:, :1])


# ---- training against torch.optim ----


def torch_train(module, x, y, loss_fn, optimizer, steps, batch=None):
    """PyTorch's training loop; returns the full-batch loss before each step and after the last."""
    losses = []
    n = x.shape[0]
    batch = batch or n
    per_epoch = (n + batch - 1) // batch
    for s in range(steps):
        with torch.no_grad():
            losses.append(loss_fn(module(x), y).item())
        i = (s % per_epoch) * batch
        optimizer.zero_grad()
        loss_fn(module(x[i:i + batch]), y[i:i + batch]).backward()
        optimizer.step()
    with torch.no_grad():
        losses.append(loss_fn(module(x), y).item())
    return losses


CASES = {
    "sgd_momentum_decay_mse": (mlp, (4,), "mse", None,
                               lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
                               xntk.Optimizer.sgd(0.05, momentum=0.9, weight_decay=1e-3)),
    "sgd_nesterov_ce_labels_minibatch": (mlp, (4,), "cross_entropy_labels", 5,
                                         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True),
                                         xntk.Optimizer.sgd(0.1, momentum=0.5, nesterov=True)),
    "adam_amsgrad_ce_probabilities": (mlp, (4,), "cross_entropy_probs", None,
                                      lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7,
                                                                 weight_decay=1e-2, amsgrad=True),
                                      xntk.Optimizer.adam(0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-2,
                                                          amsgrad=True)),
    "adam_residual_cnn_mse_minibatch": (cnn, (2, 4, 4), "mse", 4, lambda p: torch.optim.Adam(p, lr=0.01),
                                        xntk.Optimizer.adam(0.01)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_train_equals_torch_optim(name):
    build, shape, kind, batch, torch_opt, ours = CASES[name]
    module = build(5)
    net = xntk.from_torch(module, shape)
    x, y, labels, probs = data(6, 10, shape)
    target = {"mse": y, "cross_entropy_labels": labels, "cross_entropy_probs": probs}[kind]
    loss = "mse" if kind == "mse" else "cross_entropy"
    loss_fn = nn.MSELoss() if kind == "mse" else nn.CrossEntropyLoss()
    steps = 12
    want = torch_train(module, x, target, loss_fn, torch_opt(module.parameters()), steps, batch)
    logs = []
    last = xntk.train(net, x, target, loss=loss, optimizer=ours, steps=steps, batch_size=batch or 0,
                      on_log=logs.append)
    assert [l["step"] for l in logs] == list(range(steps + 1)) and last == logs[-1]
    got = [l["train_loss"] for l in logs]
    assert rel_error(got, want) <= TOL, (got, want)
    for k, v in module.state_dict().items():
        assert rel_error(net.state_dict()[k], v) <= TOL, k
    per_epoch = (10 + (batch or 10) - 1) // (batch or 10)
    assert logs[-1]["epoch"] == steps // per_epoch and logs[-1]["test_loss"] is None and logs[-1]["probe"] is None


def test_trainer_steps_outputs_and_weight_change():
    module = mlp(7)
    net = xntk.from_torch(module, (4,))
    before = copy.deepcopy(module.state_dict())
    x, y, *_ = data(8, 6, (4,))
    x_test, *_ = data(9, 3, (4,))
    opt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.3)
    tr = xntk.Trainer(net, optimizer=xntk.Optimizer.sgd(0.1, momentum=0.3))
    for _ in range(5):
        opt.zero_grad()
        want = nn.MSELoss()(module(x), y)
        want.backward()
        opt.step()
        assert abs(tr.step(x, y) - want.item()) <= TOL * want.item()
    assert tr.steps == 5
    assert rel_error(tr.outputs(x_test), module(x_test).detach()) <= TOL
    assert rel_error(tr.network_outputs(x_test), module(x_test).detach()) <= TOL
    now, then = flat(module.state_dict()), flat(before)
    overall, per = tr.weight_change()
    assert abs(overall - np.linalg.norm(now - then) / np.linalg.norm(then)) <= TOL * overall
    assert list(per) == net.parameter_names()
    for k in per:
        a, b = module.state_dict()[k].numpy(), before[k].numpy()
        assert abs(per[k] - np.linalg.norm(a - b) / np.linalg.norm(b)) <= TOL * per[k], k
    initial = tr.initial()
    for k, v in before.items():
        np.testing.assert_array_equal(initial.state_dict()[k], v.numpy())
    # the trained model's kernel is the network's NTK now
    K, parts = tr.kernel(x_test, "full", components=True)
    want_k, _ = reference_ntk(module, x_test, None, "full")
    assert rel_error(K, want_k) <= TOL and list(parts) == net.component_names()


def test_linearized_training_with_alpha_and_centring_equals_torch():
    """f_lin(x; θ) = f(x; θ₀) + J(x; θ₀)(θ − θ₀) with the Jacobian from functorch, trained by torch.optim on the
    flat θ; the model is α·(f_lin − f₀) and the loss divided by α² (the lazy-training notebook)."""
    alpha = 2.5
    module = mlp(10)
    net = xntk.from_torch(module, (4,))
    x, y, *_ = data(11, 8, (4,))
    x_test, *_ = data(12, 3, (4,))
    names = [n for n, _ in module.named_parameters()]
    J = jacobians(module, x)
    Jt = jacobians(module, x_test)
    Jx = torch.cat([J[n] for n in names], 2)    # (N, O, P) in state_dict order
    Jxt = torch.cat([Jt[n] for n in names], 2)
    theta0 = torch.from_numpy(flat(module.state_dict()))
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=0.05, momentum=0.9, weight_decay=1e-3)
    tr = xntk.Trainer(net, linearized=True, transform=xntk.Transform(alpha, center=True),
                      optimizer=xntk.Optimizer.sgd(0.05, momentum=0.9, weight_decay=1e-3))
    for _ in range(10):
        opt.zero_grad()
        out = alpha * torch.einsum("nop,p->no", Jx, theta - theta0)
        want = nn.MSELoss()(out, y)
        (want / alpha ** 2).backward()
        opt.step()
        assert abs(tr.step(x, y) - want.item()) <= TOL * want.item()
    assert rel_error(flat(net.state_dict()), theta.detach()) <= TOL
    want_out = alpha * torch.einsum("nop,p->no", Jxt, theta.detach() - theta0)
    assert rel_error(tr.outputs(x_test), want_out) <= TOL
    assert rel_error(tr.linearized_outputs(x_test), want_out) <= TOL
    # the linearised model's kernel is α²·Θ at θ₀
    want_k, _ = reference_ntk(module, x_test, None, "trace")
    assert rel_error(tr.kernel(x_test), alpha ** 2 * want_k) <= TOL


def test_probe_metrics_equal_numpy_on_functorch_kernels():
    module = mlp(13)
    reference = copy.deepcopy(module)
    net = xntk.from_torch(module, (4,))
    x, y, *_ = data(14, 8, (4,))
    probe, probe_y, *_ = data(15, 5, (4,))
    x_test, y_test, *_ = data(16, 4, (4,))
    J0 = jacobians(reference, probe)
    k0, _ = reference_ntk(reference, probe, None, "trace", J0, J0)
    f0 = reference(probe).detach().numpy()
    torch_train(reference, x, y, nn.MSELoss(), torch.optim.SGD(reference.parameters(), lr=0.2), 4)
    kt, parts = reference_ntk(reference, probe, None, "trace")
    logs = []
    xntk.train(net, x, y, steps=4, optimizer=xntk.Optimizer.sgd(0.2), ntk_every=2, log_every=2, probe=probe,
               probe_y=probe_y, x_test=x_test, y_test=y_test, on_log=logs.append)
    assert [l["step"] for l in logs] == [0, 2, 4]
    assert all(l["probe"] is not None for l in logs)
    first, last = logs[0]["probe"], logs[-1]["probe"]
    assert first["kernel_change"] == 0 and abs(first["alignment_initial"] - 1) <= TOL
    assert abs(logs[-1]["test_loss"] - nn.MSELoss()(reference(x_test), y_test).item()) <= TOL * logs[-1]["test_loss"]
    eig = np.linalg.eigvalsh(kt)
    fro = np.linalg.norm
    yy = probe_y.numpy() @ probe_y.numpy().T
    names = [n for n, _ in reference.named_parameters()]
    expected = {
        "trace": np.trace(kt), "lambda_max": eig[-1], "lambda_min": eig[0], "condition": eig[-1] / eig[0],
        "kernel_change": fro(kt - k0) / fro(k0), "alignment_initial": np.sum(kt * k0) / (fro(kt) * fro(k0)),
        "alignment_targets": np.sum(kt * yy) / (fro(kt) * fro(yy)),
    }
    for key, value in expected.items():
        assert abs(last[key] - value) <= 1e-9 * abs(value), (key, last[key], value)
    shares = {k: np.trace(v) / np.trace(kt) for k, v in parts.items()}
    assert list(last["component_share"]) == net.component_names()
    for k, v in last["component_share"].items():
        assert abs(v - shares[net.torch_names[k]]) <= 1e-9, k
    # the gap between the network and its linearisation at θ₀, with functorch's Jacobian
    d = flat(reference.state_dict()) - flat(mlp(13).state_dict())  # θ − θ₀ (the same seed builds θ₀)
    f_lin = f0 + np.einsum("nop,p->no", np.concatenate([J0[n].numpy() for n in names], 2), d)
    f = reference(probe).detach().numpy()
    gap = np.sqrt(np.mean((f - f_lin) ** 2))
    assert abs(last["linearization_gap"] - gap) <= 1e-9 * gap
    assert abs(last["linearization_gap_relative"] - gap / np.sqrt(np.mean((f_lin - f0) ** 2))) <= 1e-9


# ---- predictions against NumPy ----


def kernels(seed, n=6, m=3, outputs=2):
    module = mlp(seed, outputs)
    x, y, *_ = data(seed + 1, n, (4,), outputs)
    xt, *_ = data(seed + 2, m, (4,), outputs)
    net = xntk.from_torch(module, (4,))
    K = {mode: reference_ntk(module, x, None, mode)[0] for mode in ("full", "trace", "diagonal")}
    Kt = {mode: reference_ntk(module, xt, x, mode)[0] for mode in ("full", "trace", "diagonal")}
    f0, f0t = module(x).detach().numpy(), module(xt).detach().numpy()
    return net, x, xt, y.numpy(), K, Kt, f0, f0t


def as_matrix(k, mode, outputs):
    """A kernel in any mode as the (N·O × M·O) matrix it acts as (trace: Θ/O ⊗ I)."""
    n, m = k.shape[:2]
    if mode == "full":
        return k.transpose(0, 2, 1, 3).reshape(n * outputs, m * outputs)
    if mode == "diagonal":
        out = np.zeros((n, outputs, m, outputs))
        for o in range(outputs):
            out[:, o, :, o] = k[:, :, o]
        return out.reshape(n * outputs, m * outputs)
    return np.kron(k / outputs, np.eye(outputs))


def softmax(f):
    e = np.exp(f - f.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("mode", ["full", "trace", "diagonal"])
def test_predict_steps_equals_the_numpy_iteration(mode):
    net, x, xt, y, K, Kt, f0, f0t = kernels(20)
    n, o = y.shape
    A, At = as_matrix(K[mode], mode, o), as_matrix(Kt[mode], mode, o)
    lr, steps = 0.5, [0, 1, 7, 40]
    for loss in ("mse", "cross_entropy"):
        labels = np.arange(n) % o
        target = y if loss == "mse" else np.eye(o)[labels]
        F, Ft, want, want_t = f0.ravel().copy(), f0t.ravel().copy(), [], []
        for k in range(max(steps) + 1):
            if k in steps:
                want.append(F.reshape(n, o).copy())
                want_t.append(Ft.reshape(-1, o).copy())
            Fm = F.reshape(n, o)
            g = (2 / (n * o)) * (Fm - target) if loss == "mse" else (softmax(Fm) - target) / n
            F, Ft = F - lr * A @ g.ravel(), Ft - lr * At @ g.ravel()
        p = xntk.predict_steps(K[mode], target, lr, steps, loss, k_test=Kt[mode], f0_train=f0, f0_test=f0t)
        assert p.train.shape == (4, n, o) and p.test.shape == (4, 3, o)
        assert rel_error(p.train, np.array(want)) <= TOL, loss
        assert rel_error(p.test, np.array(want_t)) <= TOL, loss
        if loss == "cross_entropy":  # labels give the same as their one-hot rows
            q = xntk.predict_steps(K[mode], labels, lr, steps, loss, k_test=Kt[mode], f0_train=f0, f0_test=f0t)
            assert rel_error(q.train, p.train) <= TOL
    same = xntk.predict(K[mode], y, lr, steps=steps, k_test=Kt[mode], f0_train=f0, f0_test=f0t)
    assert rel_error(same.train, xntk.predict_steps(K[mode], y, lr, steps, k_test=Kt[mode], f0_train=f0,
                                                    f0_test=f0t).train) == 0


@pytest.mark.parametrize("mode", ["full", "trace"])
def test_predict_time_equals_eigendecomposition_and_solve(mode):
    net, x, xt, y, K, Kt, f0, f0t = kernels(30)
    n, o = y.shape
    A, At = as_matrix(K[mode], mode, o), as_matrix(Kt[mode], mode, o)
    lr, times = 0.3, [0.0, 0.5, 4.0]
    w, V = np.linalg.eigh(A)
    c = lr * 2 / (n * o)
    r = (y - f0).ravel()
    want = [y.ravel() - V @ (np.exp(-c * w * t) * (V.T @ r)) for t in times]
    want_t = [f0t.ravel() + At @ (V @ ((1 - np.exp(-c * w * t)) / w * (V.T @ r))) for t in times]
    p = xntk.predict_time(K[mode], y, lr, times, k_test=Kt[mode], f0_train=f0, f0_test=f0t)
    assert rel_error(p.train, np.array(want).reshape(3, n, o)) <= TOL
    assert rel_error(p.test, np.array(want_t).reshape(3, -1, o)) <= TOL
    ridge = 1e-2
    inf = xntk.predict(K[mode], y, lr, time=[np.inf], ridge=ridge, k_test=Kt[mode], f0_train=f0, f0_test=f0t)
    sol = np.linalg.solve(A + ridge * np.eye(n * o), r)
    assert rel_error(inf.test[0], (f0t.ravel() + At @ sol).reshape(-1, o)) <= TOL
    assert rel_error(inf.train[0], (f0.ravel() + A @ sol).reshape(n, o)) <= TOL
    # without a test kernel there is no test prediction; f0 defaults to zero
    q = xntk.predict_time(K[mode], y, lr, 0.5)
    assert q.test is None
    want0 = y.ravel() - V @ (np.exp(-c * w * 0.5) * (V.T @ y.ravel()))
    assert rel_error(q.train[0], want0.reshape(n, o)) <= TOL


def test_linearized_training_equals_the_kernel_prediction():
    """The key property, end to end in Python: k full-batch SGD steps of the linearised network move the outputs
    as the kernel's k-step formula says."""
    module = mlp(40, 2)
    net = xntk.from_torch(module, (4,))
    x, y, *_ = data(41, 6, (4,), 2)
    xt, *_ = data(42, 3, (4,), 2)
    K, Kt = xntk.ntk(net, x), xntk.ntk(net, xt, x)
    f0, f0t = net.forward(x), net.forward(xt)
    p = xntk.predict_steps(K, y, 0.2, [9], k_test=Kt, f0_train=f0, f0_test=f0t)
    tr = xntk.Trainer(net, linearized=True, optimizer=xntk.Optimizer.sgd(0.2))
    for _ in range(9):
        tr.step(x, y)
    assert rel_error(tr.outputs(x), p.train[0]) <= TOL
    assert rel_error(tr.outputs(xt), p.test[0]) <= TOL


# ---- errors ----


def test_bad_arguments_are_named():
    net = xntk.from_torch(mlp(50), (4,))
    x, y, labels, _ = data(51, 6, (4,))
    before = net.state_dict()
    cases = [
        (lambda: xntk.train(net, x, y), r"^steps: give a number of steps or epochs"),
        (lambda: xntk.train(net, x, y[:5], steps=1), r"^y: expected 6 samples first \(as the inputs\), got shape"),
        (lambda: xntk.train(net, x[:, :3], y, steps=1), r"^x: expected shape \(N, 4\)"),
        (lambda: xntk.train(net, x, y, steps=1, optimizer=xntk.Optimizer.sgd(0.0)),
         r"the learning rate must be positive and finite"),
        (lambda: xntk.train(net, x, y, steps=1, loss="hinge"), r"^loss: expected one of mse, cross_entropy"),
        (lambda: xntk.train(net, x, y, steps=-1), r"^steps: expected a non-negative integer, got -1"),
        (lambda: xntk.train(net, x, y, steps=1, x_test=x), r"^x_test, y_test: give both"),
        (lambda: xntk.train(net, x, y, steps=1, probe_mode="sum"), r"^probe_mode: expected one of"),
        (lambda: xntk.train(net, x, labels + 5, steps=1, loss="cross_entropy"), r"the label of sample 0 is"),
        (lambda: xntk.Trainer(net, optimizer=xntk.Optimizer(kind="rmsprop")), r"^optimizer.kind: expected one of"),
        (lambda: xntk.Optimizer.adam(betas=0.9), r"^betas: expected a pair"),
        (lambda: xntk.predict_steps(np.zeros((6, 5)), y, 0.1, 1), r"^k_train: the training kernel has shape \(6, 5\)"),
        (lambda: xntk.predict_steps(np.eye(6), y[:4], 0.1, 1), r"^y: the targets have shape \(4, 3\)"),
        (lambda: xntk.predict_steps(np.eye(6), y, -1.0, 1), r"^lr: predictions: the learning rate must be positive"),
        (lambda: xntk.predict_steps(np.eye(6), y, 0.1, 1, k_test=np.zeros((2, 5))), r"^k_test: the test kernel"),
        (lambda: xntk.predict_steps(np.eye(6), labels, 0.1, 1, "cross_entropy"), r"^f0_train: cross-entropy on labels"),
        (lambda: xntk.predict_time(np.eye(6), y, 0.1, [-1.0]), r"^times: predictions: a time must be non-negative"),
        (lambda: xntk.predict(np.eye(6), y, 0.1), r"^predict: give exactly one of steps="),
        (lambda: xntk.predict(np.eye(6), y, 0.1, time=1.0, loss="cross_entropy"), r"^loss: continuous time is for mse"),
    ]
    for call, message in cases:
        with pytest.raises(xntk.Error, match=message):
            call()
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
        xntk.train(net, x, y, steps=1, lr=0.1)
    with pytest.raises(TypeError, match="on_log: expected a callable"):
        xntk.train(net, x, y, steps=1, on_log=3)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_divergence_stops_naming_the_step_and_exceptions_from_on_log_propagate():
    net = xntk.from_torch(mlp(60), (4,))
    x, y, *_ = data(61, 6, (4,))
    logs = []
    with pytest.raises(xntk.Error, match=r"at step \d+|after step \d+"):
        xntk.train(net, x, y * 1e150, steps=50, optimizer=xntk.Optimizer.sgd(1e10), on_log=logs.append)
    assert logs and logs[0]["step"] == 0  # the logs up to the failure were delivered

    class Stop(Exception):
        pass

    def stop(log):
        if log["step"] == 2:
            raise Stop()

    net = xntk.from_torch(mlp(60), (4,))
    with pytest.raises(Stop):
        xntk.train(net, x, y, steps=10, optimizer=xntk.Optimizer.sgd(0.1), on_log=stop)
    trained = xntk.from_torch(mlp(60), (4,))
    xntk.train(trained, x, y, steps=2, optimizer=xntk.Optimizer.sgd(0.1))
    for k, v in trained.state_dict().items():  # stopped right after the second step's log
        np.testing.assert_array_equal(net.state_dict()[k], v)


def test_float32_training_follows_float64():
    module = mlp(70)
    net64 = xntk.from_torch(module, (4,))
    net32 = net64.astype("float32")
    x, y, *_ = data(71, 6, (4,))
    a = xntk.train(net64, x, y, steps=5, optimizer=xntk.Optimizer.sgd(0.1))
    b = xntk.train(net32, x.float(), y.float(), steps=5, optimizer=xntk.Optimizer.sgd(0.1))
    assert abs(a["train_loss"] - b["train_loss"]) <= 1e-4 * a["train_loss"]
    assert rel_error(net32.state_dict()["4.weight"], net64.state_dict()["4.weight"]) <= 1e-4
