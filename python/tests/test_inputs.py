"""Inputs: C-contiguous arrays of the model's dtype are read in place; anything else is converted once or
refused with a message naming the argument and what was expected."""

import numpy as np
import pytest

from helpers import rel_error, torch, xntk

SPEC = {"input": [6], "layers": [{"type": "linear", "out_features": 5}, {"type": "tanh"},
                                 {"type": "linear", "out_features": 3}]}


def last_inputs():
    return xntk._xntk._debug_last_inputs()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_contiguous_input_of_the_model_dtype_is_not_copied(dtype):
    """The C++ core saw the very data pointers of the arrays given (the module records them for this test)."""
    net = xntk.Sequential(SPEC, dtype=dtype)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((7, 6)).astype(dtype)
    x2 = rng.standard_normal((4, 6)).astype(dtype)
    xntk.ntk(net, x1, x2)
    assert last_inputs() == (x1.ctypes.data, x2.ctypes.data)
    xntk.ntk(net, x1, mode="trace")
    assert last_inputs() == (x1.ctypes.data, 0)
    # a C-contiguous view into a larger array is read in place as well
    big = rng.standard_normal((20, 6)).astype(dtype)
    view = big[5:12]
    xntk.ntk(net, view)
    assert last_inputs()[0] == view.ctypes.data
    # and torch tensors, through their NumPy view of the same memory
    t1, t2 = torch.from_numpy(x1), torch.randn(3, 6, dtype=getattr(torch, np.dtype(dtype).name))
    xntk.ntk(net, t1, t2, mode="diagonal")
    assert last_inputs() == (t1.data_ptr(), t2.data_ptr())
    t3 = torch.randn(4, 6, dtype=t2.dtype, requires_grad=True)
    xntk.ntk(net, t3)
    assert last_inputs()[0] == t3.data_ptr()


def test_other_inputs_are_converted_once_to_the_same_kernel():
    net = xntk.Sequential(SPEC, seed=4)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6))
    want = xntk.ntk(net, x)
    for value in (np.asfortranarray(x), x.T.copy().T, np.repeat(x, 2, axis=1)[:, ::2], x.astype(">f8")):
        assert not (value.flags.c_contiguous and value.dtype == np.float64 and value.dtype.isnative)
        assert rel_error(xntk.ntk(net, value), want) == 0
        assert last_inputs()[0] != value.ctypes.data  # a converted copy
    for value in (x.tolist(), torch.from_numpy(x.T.copy()).T):  # a list, a non-contiguous tensor
        assert rel_error(xntk.ntk(net, value), want) == 0
    # float32 data into a float64 model, integers, float16 and a float32 tensor
    x32 = x.astype(np.float32)
    assert rel_error(xntk.ntk(net, x32), xntk.ntk(net, x32.astype(np.float64))) == 0
    xi = np.arange(30).reshape(5, 6) % 4
    assert rel_error(xntk.ntk(net, xi), xntk.ntk(net, xi.astype(np.float64))) == 0
    assert rel_error(xntk.ntk(net, torch.from_numpy(x32)), xntk.ntk(net, x32.astype(np.float64))) == 0
    assert rel_error(xntk.ntk(net, torch.from_numpy(x).half()), xntk.ntk(net, x.astype(np.float16))) == 0
    # the input is not modified, and the result owns its memory
    before = x.copy()
    k = xntk.ntk(net, x)
    np.testing.assert_array_equal(x, before)
    assert k.flags.writeable and k.flags.c_contiguous


def test_bad_inputs_are_refused_with_the_expected_and_given_shape():
    net = xntk.Sequential({"input": [3, 4, 4], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2}]})
    x = np.zeros((2, 3, 4, 4))
    cases = [
        (lambda: xntk.ntk(net, np.zeros((2, 4, 4, 3))),
         r"^x1: expected shape \(N, 3, 4, 4\) \(samples first, then the model's input shape \(3, 4, 4\)\), "
         r"got \(2, 4, 4, 3\)$"),
        (lambda: xntk.ntk(net, x, np.zeros((3, 4, 4))), r"^x2: expected shape \(N, 3, 4, 4\).*got \(3, 4, 4\)$"),
        (lambda: xntk.ntk(net, np.zeros((0, 3, 4, 4))), r"^x1: expected at least one sample"),
        (lambda: xntk.ntk(net, x.astype(complex)), r"^x1: expected real numbers \(float32 or float64\), got dtype "
                                                   r"complex128$"),
        (lambda: xntk.ntk(net, np.full((2, 3, 4, 4), "a")), r"^x1: expected real numbers"),
        (lambda: xntk.ntk(net, torch.zeros(2, 3, 4, 4, dtype=torch.bool)), r"^x1: expected real numbers.*torch.bool"),
        (lambda: xntk.ntk(net, x, mode="sum"), r"^mode: expected one of full, trace, diagonal, got 'sum'$"),
        (lambda: xntk.ntk(net, x, method="jvp"), r"^method: expected one of explicit, autograd, got 'jvp'$"),
        (lambda: xntk.ntk(net, x, dtype="float16"), r"^dtype: expected float32 or float64, got 'float16'$"),
        (lambda: xntk.ntk(net, x, threads=0), r"^threads: expected an integer >= 1 or None, got 0$"),
        (lambda: xntk.ntk(net, x, tile=-1), r"^tile: expected an integer >= 1 or None, got -1$"),
        (lambda: net.forward(np.zeros((2, 48))), r"^x: expected shape \(N, 3, 4, 4\)"),
    ]
    for call, message in cases:
        with pytest.raises(xntk.Error, match=message):
            call()
    with pytest.raises(TypeError, match="net: expected an xntk.Sequential"):
        xntk.ntk(torch.nn.Linear(2, 2), x)
    with pytest.raises(TypeError, match="progress: expected a callable"):
        xntk.ntk(net, x, progress=3)


def test_dtypes_by_any_name():
    net = xntk.Sequential(SPEC)
    x = np.ones((2, 6))
    for name in ("float32", np.float32, np.dtype("float32"), torch.float32):
        assert xntk.ntk(net, x, dtype=name).dtype == np.float32
    for name in ("float64", np.float64, torch.float64, None):
        assert xntk.ntk(net, x, dtype=name).dtype == np.float64


def test_threads_and_tiles_give_the_same_kernel():
    net = xntk.Sequential(SPEC, seed=2)
    x = np.random.default_rng(3).standard_normal((9, 6))
    want = xntk.ntk(net, x, mode="full")
    assert rel_error(xntk.ntk(net, x, threads=1), want) <= 1e-13
    assert rel_error(xntk.ntk(net, x, tile=2), want) <= 1e-13
    assert rel_error(xntk.ntk(net, x, memory_budget=1 << 30), want) <= 1e-13
