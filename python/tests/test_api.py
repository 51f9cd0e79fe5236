"""The package's API around the kernel: models from JSON and from torch, weights, files, analysis, gradients,
and the errors users meet."""

import ast
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import SOURCE_DIR, jacobians, rel_error, torch, xntk

nn = torch.nn

SPEC = {"input": [3, 8, 8], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"},
    {"type": "residual", "body": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}]},
    {"type": "flatten"}, {"type": "linear", "out_features": 5}]}


def test_sequential_from_dict_and_file_and_json_round_trip(tmp_path):
    net = xntk.Sequential.from_json(SPEC, seed=3)
    assert net.input_shape == (3, 8, 8)
    assert net.output_shape == (5,)
    assert net.dtype == np.float64
    assert net.parameter_names() == ["0.weight", "0.bias", "2.body.0.weight", "2.body.0.bias", "4.weight", "4.bias"]
    assert net.component_names() == ["4.weight", "4.bias", "2.body.0.weight", "2.body.0.bias", "0.weight", "0.bias"]
    assert net.num_parameters == 4 * 3 * 9 + 4 + 4 * 4 * 9 + 4 + 5 * 144 + 5
    path = tmp_path / "model.json"
    text = net.to_json(path)
    assert path.read_text() == text
    again = xntk.Sequential.from_json(path, seed=3)
    assert again.to_json() == text
    assert xntk.Sequential.from_json(json.loads(text), seed=3).spec == net.spec
    for name, value in again.state_dict().items():  # same seed, same weights
        np.testing.assert_array_equal(value, net.state_dict()[name])
    assert "(3, 8, 8)" in repr(net) and "float64" in repr(net)


def test_sequential_float32_and_bad_json():
    net = xntk.Sequential(SPEC, dtype="float32")
    assert net.dtype == np.float32
    assert all(v.dtype == np.float32 for v in net.state_dict().values())
    with pytest.raises(xntk.Error, match=r'layer 1: unknown layer type "relux"'):
        xntk.Sequential({"input": [4], "layers": [{"type": "linear", "out_features": 2}, {"type": "relux"}]})
    with pytest.raises(xntk.Error, match="expected float32 or float64"):
        xntk.Sequential(SPEC, dtype="int64")
    with pytest.raises(xntk.Error, match="nothing.json"):
        xntk.Sequential.from_json("nothing.json")
    assert issubclass(xntk.Error, ValueError)


def test_state_dict_load_weights_and_save_weights(tmp_path):
    net = xntk.Sequential(SPEC, seed=1)
    other = xntk.Sequential(SPEC, seed=2)
    sd = net.state_dict()
    sd["0.bias"][:] = 7  # a copy: the model is not changed through it
    assert not np.any(net.state_dict()["0.bias"] == 7)
    other.load_weights(net.state_dict())
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, net.state_dict()[k])
    # torch tensors of the other dtype are converted
    other.load_weights({k: torch.from_numpy(v).float() for k, v in sd.items()})
    np.testing.assert_array_equal(other.state_dict()["0.bias"], 7)
    path = tmp_path / "w.safetensors"
    net.save_weights(path)
    other.load_weights(path)
    np.testing.assert_array_equal(other.state_dict()["4.weight"], net.state_dict()["4.weight"])
    assert list(xntk.read_safetensors(path)) == net.parameter_names()


def test_copy_and_deepcopy_are_independent_models_with_the_same_weights():
    import copy
    bn_spec = {"input": [2, 5, 5], "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3}, {"type": "batchnorm2d"}, {"type": "relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 2}]}
    for dtype in ("float32", "float64"):
        net = xntk.Sequential.from_json(bn_spec, seed=5, dtype=dtype)
        x = np.random.default_rng(1).standard_normal((4, 2, 5, 5)).astype(dtype)
        for c in (net.copy(), copy.copy(net), copy.deepcopy(net), net.astype(dtype)):
            assert c is not net and c.dtype == net.dtype
            assert c.parameter_names() == net.parameter_names()
            for (k, a), (k2, b) in zip(net.state_dict().items(), c.state_dict().items()):
                assert k == k2 and np.array_equal(a, b)
            assert np.array_equal(c.forward(x), net.forward(x))
        # independent: new weights in the copy leave the original as it was
        c = net.copy()
        before = net.state_dict()
        c.load_weights({k: v + 1 for k, v in before.items()})
        assert all(np.array_equal(v, net.state_dict()[k]) for k, v in before.items())
        assert not np.array_equal(c.forward(x), net.forward(x))


def test_load_weights_errors_leave_the_model_unchanged():
    net = xntk.Sequential(SPEC, seed=1)
    before = net.state_dict()
    good = {k: v + 1 for k, v in before.items()}
    cases = [
        ({k: v for k, v in good.items() if k != "4.bias"}, r'missing tensor "4.bias" of shape \(5,\)'),
        ({**good, "9.weight": np.zeros(3)}, r'unexpected tensor "9.weight"'),
        ({**good, "4.weight": np.zeros((5, 3))}, r'"4.weight" has shape \(5, 3\), expected \(5, 144\)'),
        ({**good, "0.bias": np.array([1.0, np.nan, 0, 0])}, r'"0.bias" holds a non-finite value at flat index 1'),
        ({**good, "0.bias": np.array([1j, 0, 0, 0])}, r"expected real numbers"),
    ]
    for values, message in cases:
        with pytest.raises(xntk.Error, match=message):
            net.load_weights(values)
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(v, before[k])


def test_load_weights_reads_a_torch_save_file(tmp_path):
    torch.manual_seed(4)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    net = xntk.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double(), (3,))
    pt = tmp_path / "model.pt"
    torch.save(module.state_dict(), pt)
    net.load_weights(pt)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v.numpy())
    with pytest.raises(xntk.Error, match=r"model\.pt: a PyTorch file \(torch\.save\), not safetensors"):
        xntk.read_safetensors(pt)
    whole = tmp_path / "whole.pt"
    torch.save(module, whole)  # a pickled module, not a state_dict: refused by weights_only
    with pytest.raises(xntk.Error, match=r"whole\.pt: a PyTorch file that torch\.load\(weights_only=True\) cannot read"):
        net.load_weights(whole)
    other = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], other)
    with pytest.raises(xntk.Error, match=r"list\.pt: a PyTorch file holding list; expected torch\.save"):
        net.load_weights(other)
    # a safetensors file whose header length starts with byte 0x80 is still read as safetensors
    st = tmp_path / "w.safetensors"
    net.save_weights(st)
    raw = st.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    pad = (0x80 - length) % 256
    header = raw[8:8 + length] + b" " * pad  # JSON may end in spaces; the data offsets follow the header
    st.write_bytes((length + pad).to_bytes(8, "little") + header + raw[8 + length:])
    assert st.read_bytes()[0] == 0x80
    net.load_weights(st)
    np.testing.assert_array_equal(net.state_dict()["2.bias"], module.state_dict()["2.bias"].numpy())


def test_forward_equals_torch():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5)).double()
    net = xntk.from_torch(module, (3, 8, 8))
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert rel_error(net.forward(x), module(x).detach()) <= 1e-13
    assert rel_error(net(x.numpy()), module(x).detach()) <= 1e-13


def test_from_torch_names_dtypes_and_residual_keys():
    module = nn.Sequential(nn.Linear(4, 6), xntk.torch.Residual([nn.Linear(6, 6), nn.Tanh()], nn.Linear(6, 6)),
                           nn.Linear(6, 2))
    assert list(module.state_dict()) == ["0.weight", "0.bias", "1.body.0.weight", "1.body.0.bias",
                                         "1.shortcut.0.weight", "1.shortcut.0.bias", "2.weight", "2.bias"]
    net = xntk.from_torch(module, 4)
    assert net.dtype == np.float32 and net.parameter_names() == list(module.state_dict())
    assert net.spec["layers"][1]["type"] == "residual"
    assert xntk.from_torch(module, (4,), dtype=torch.float64).dtype == np.float64
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(net.state_dict()[k], v.numpy())
    assert xntk.from_torch(module.double(), [4]).dtype == np.float64


def test_from_torch_class_based_model_maps_its_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
            self.flat = nn.Flatten()
            self.classifier = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.classifier(self.flat(self.features(x)))

    module = Net()
    net = xntk.from_torch(module, (1, 6, 6))
    assert net.parameter_names() == ["0.0.weight", "0.0.bias", "2.weight", "2.bias"]
    assert net.torch_names == {"0.0.weight": "features.0.weight", "0.0.bias": "features.0.bias",
                               "2.weight": "classifier.weight", "2.bias": "classifier.bias"}
    # the module's own state_dict loads into it too
    other = xntk.from_torch(Net(), (1, 6, 6))
    other.load_weights(module.state_dict())
    np.testing.assert_array_equal(other.state_dict()["2.weight"], module.classifier.weight.detach().numpy())


def test_from_torch_refuses_what_it_cannot_map():
    class Skip(nn.Module):  # a residual connection written in forward: not the chain of its children
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Tanh()

        def forward(self, x):
            return self.b(self.a(x)) + x

    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))

        def forward(self, x):
            return self.features(x)

    shared = nn.Linear(4, 4)
    cases = [
        (Holder(), (3, 8, 8), r"^features\.3 \(BatchNorm2d\): in training mode"),
        (nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False).eval()), (2, 3, 3),
         r"^0 \(BatchNorm2d\): track_running_stats=False not supported"),
        (nn.Sequential(nn.Conv2d(4, 4, 3), nn.GroupNorm(2, 4)), (4, 4, 4), r"^1 \(GroupNorm\): not supported"),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")), (2, 6, 6), r"padding_mode='reflect'"),
        (nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), (2, 5, 5), r"^0 \(MaxPool2d\): ceil_mode=True"),
        (nn.Sequential(nn.AvgPool2d(2, count_include_pad=False)), (2, 4, 4), r"count_include_pad=False"),
        (nn.Sequential(nn.AdaptiveMaxPool2d(2)), (2, 4, 4), r"^0 \(AdaptiveMaxPool2d\): not supported"),
        (nn.Sequential(nn.Flatten(2)), (2, 4, 4), r"start_dim=2 not supported"),
        (nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout())), (4,), r"^1\.0 \(Dropout\): in training mode"),
        (nn.Sequential(shared, nn.ReLU(), shared), (4,), r"^2 \(Linear\): the same module as 0"),
        (nn.Sequential(nn.Linear(4, 5), nn.Linear(6, 2)), (4,), r"^1 \(Linear\): in_features is 6"),
        (nn.Sequential(nn.Linear(4, 4), Skip()), (4,), r"^1 \(Skip\): its forward is not its children applied in "
                                                       r"order \(a → b\)"),
        (nn.BatchNorm1d(4), (4,), r"^the model \(BatchNorm1d\): in training mode"),
    ]
    for module, shape, message in cases:
        with pytest.raises(xntk.Error, match=message):
            xntk.from_torch(module, shape)
    with pytest.raises(xntk.Error, match="input_shape"):
        xntk.from_torch(nn.Linear(3, 2), (0, 3))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        xntk.from_torch("model", (3,))


def test_single_modules_and_a_residual_at_the_top():
    lin = nn.Linear(3, 2)
    net = xntk.from_torch(lin, (3,))
    assert net.torch_names == {"0.weight": "weight", "0.bias": "bias"}
    res = xntk.torch.Residual(nn.Linear(3, 3))
    assert xntk.from_torch(res, (3,)).torch_names["0.body.0.weight"] == "body.0.weight"


def test_export_torch_then_the_command_line(tmp_path, cli):
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(2, 3, 3, padding="same"), nn.GELU(), nn.AvgPool2d(2), nn.Flatten(),
                           nn.Linear(3 * 3 * 3, 4)).double()
    model, weights = tmp_path / "m.json", tmp_path / "w.safetensors"
    net = xntk.export_torch(module, (2, 6, 6), model, weights)
    x = np.random.default_rng(0).standard_normal((6, 2, 6, 6))
    np.save(tmp_path / "x.npy", x)
    subprocess.run([cli, "compute", str(model), "--x1", str(tmp_path / "x.npy"), "--weights", str(weights),
                    "--mode", "trace", "-o", str(tmp_path / "k.npy")], check=True)
    assert rel_error(np.load(tmp_path / "k.npy"), xntk.ntk(net, x, mode="trace")) <= 1e-12


def test_safetensors_round_trip_keeps_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    a32 = rng.standard_normal((3, 4)).astype(np.float32)
    a64 = rng.standard_normal(5)
    p = tmp_path / "t.safetensors"
    xntk.write_safetensors(p, {"a": a32, "b": torch.from_numpy(a32.copy())}, metadata={"note": "x"})
    back = xntk.read_safetensors(p)
    assert list(back) == ["a", "b"] and back["a"].dtype == np.float32
    np.testing.assert_array_equal(back["b"], a32)
    assert xntk.read_safetensors_metadata(p) == {"note": "x"}
    xntk.write_safetensors(p, {"z": a64, "a": a32})  # mixed: float64 holds both exactly
    back = xntk.read_safetensors(p)
    assert list(back) == ["z", "a"] and back["a"].dtype == np.float64
    np.testing.assert_array_equal(back["a"], a32)
    xntk.write_safetensors(p, {"z": a64, "a": a32}, dtype="float32")
    assert xntk.read_safetensors(p)["z"].dtype == np.float32
    with pytest.raises(xntk.Error, match=r"tensors\['i'\]: dtype int64"):
        xntk.write_safetensors(p, {"i": np.arange(3)})
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(xntk.Error, match="t.safetensors"):
        xntk.read_safetensors(p)


def test_analyze_gives_the_fields_of_the_command_line(tmp_path, cli):
    torch.manual_seed(2)
    module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    net = xntk.from_torch(module, (4,))
    x = torch.randn(6, 4)
    for mode in ("full", "trace", "diagonal"):
        k, parts = xntk.ntk(net, x, mode=mode, components=True)
        ours = xntk.analyze(k, parts)
        assert ours == xntk.analyze((k, parts))
        kp, cp = tmp_path / "k.npy", tmp_path / "c.safetensors"
        np.save(kp, k)
        xntk.write_safetensors(cp, {**parts, "total": k})
        out = subprocess.run([cli, "analyze", str(kp), "--components", str(cp), "--json"], check=True,
                             capture_output=True, text=True).stdout
        theirs = json.loads(out)
        from_files = xntk.analyze(kp, cp)
        assert list(from_files) == list(theirs)
        assert from_files["file"] == str(kp) and ours["file"] is None and ours["dtype"] == "float32"
        for key in theirs:
            if key != "file":
                assert _close(from_files[key], theirs[key], key, abs(theirs["lambda_max"])), key
    k = xntk.ntk(net.astype("float64"), x, mode="trace")
    eig = np.linalg.eigvalsh(k)
    summary = xntk.analyze(k)
    assert summary["condition"] == pytest.approx(eig[-1] / eig[0], rel=1e-8)
    assert "components" not in summary
    with pytest.raises(xntk.Error, match="not symmetric"):
        xntk.analyze(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(xntk.Error, match=r"components\['total'\] differs"):
        xntk.analyze(k, {"total": k * 2})


# Eigenvalue fields: LAPACK's dsyevd splits its sums by the thread count (this process's, which PyTorch sets,
# and the command's differ), so they agree to its backward error, a few ε·λmax, not bit for bit; a condition
# number λmax/λmin then to ε·λmax/|λmin| relative. Everything else to 1e-12 relative.
_EIGEN_KEYS = {"lambda_min", "lambda_max", "eigenvalues", "tolerance"}


def _close(a, b, key=None, scale=0.0):
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, key, scale) for x, y in zip(a, b))
    if isinstance(a, dict):
        s = abs(a["lambda_max"]) if isinstance(a.get("lambda_max"), float) else scale
        return list(a) == list(b) and all(_close(a[k], b[k], k, s) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        rel = 1e-12 * max(abs(a), abs(b), 1e-300)
        if key in _EIGEN_KEYS:
            return abs(a - b) <= max(rel, 1e-12 * scale)
        if key == "condition":
            return abs(a - b) <= 1e-12 * max(abs(a), abs(b)) ** 2
        return abs(a - b) <= rel
    if key == "note":  # it quotes λmin
        return re.sub(r"λmin = \S+", "λmin", a) == re.sub(r"λmin = \S+", "λmin", b)
    return a == b


def test_gradient_and_jacobians_equal_torch():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ELU(), nn.Flatten(), nn.Linear(12, 2)).double()
    net = xntk.from_torch(module, (2, 4, 4))
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    c = torch.randn(3, 2, dtype=torch.float64)
    (module(x) * c).sum().backward()
    g = xntk.gradient(net, x, c)
    assert list(g) == net.parameter_names()
    for name, p in module.named_parameters():
        assert rel_error(g[name], p.grad) <= 1e-12, name
    J = xntk.jacobians(net, x)
    for name, j in jacobians(module, x).items():
        assert rel_error(J[name], j) <= 1e-12, name
    with pytest.raises(xntk.Error, match=r"cotangent: expected shape \(N, 2\)"):
        xntk.gradient(net, x, c[:, :1])


def test_import_does_not_load_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, xntk; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_stubs_cover_the_compiled_module():
    import xntk._xntk as core

    stub = os.path.join(os.path.dirname(xntk.__file__), "_xntk.pyi")
    tree = ast.parse(open(stub).read())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {t.target.id for t in tree.body if isinstance(t, ast.AnnAssign)}
    public = {n for n in dir(core) if not n.startswith("__")}
    assert public <= declared, public - declared
    for cls, base in (("Model32", "_Model"), ("Model64", "_Model"), ("Trainer32", "_Trainer"),
                      ("Trainer64", "_Trainer")):
        methods = {n for n in dir(getattr(core, cls)) if not n.startswith("_")}
        stubbed = set()
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in (cls, base):
                stubbed |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
        assert methods <= stubbed, methods - stubbed
    assert os.path.exists(os.path.join(os.path.dirname(xntk.__file__), "py.typed"))
    assert SOURCE_DIR


def test_blas_info_and_the_import_warning_about_openblas_fallback_kernels():
    info = xntk.blas_info()
    assert set(info) == {"library", "core", "better_coretype"}
    assert info["library"] in ("openblas (openmp)", "openblas (pthreads)", "eigen")
    assert (info["core"] == "") == (info["library"] == "eigen")
    assert info["better_coretype"] in ("", "SKYLAKEX", "HASWELL")
    # the import warns exactly where a better kernel set exists and OPENBLAS_CORETYPE is not set; with the
    # suggested one set, OpenBLAS runs it and there is nothing to suggest
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = "import warnings; warnings.simplefilter('always'); import xntk; print(xntk.blas_info()['core'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert ("OPENBLAS_CORETYPE=" in out.stderr) == (info["better_coretype"] != "")
    if info["better_coretype"]:
        env["OPENBLAS_CORETYPE"] = info["better_coretype"]
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert "OPENBLAS_CORETYPE=" not in out.stderr
        assert out.stdout.strip().lower() == info["better_coretype"].lower()
