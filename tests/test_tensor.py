"""Tensor basics and the autograd engine: construction, dtypes, devices, grad mode,
backward (errors, accumulation, retain_graph, retain_grad), deep graphs and freeing."""
import sys

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Tensor


# ---- construction and dtypes ---------------------------------------------------------------

def test_float_list_becomes_float32():
    t = minires.tensor([[1.0, 2.0], [3.0, 4.5]])
    assert isinstance(t, Tensor)
    assert t.dtype == np.float32
    assert t.shape == (2, 2)
    np.testing.assert_array_equal(t.numpy(), np.array([[1.0, 2.0], [3.0, 4.5]], dtype=np.float32))


def test_python_float_scalar_becomes_float32_zero_dim():
    t = minires.tensor(2.5)
    assert t.dtype == np.float32
    assert t.shape == ()
    assert t.item() == 2.5


def test_mixed_int_float_list_becomes_float32():
    assert minires.tensor([1, 2.5]).dtype == np.float32


def test_float64_numpy_array_stays_float64():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = minires.tensor(a)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), a)


def test_float32_numpy_array_stays_float32():
    assert minires.tensor(np.ones(3, dtype=np.float32)).dtype == np.float32


def test_tensor_copies_numpy_data():
    a = np.zeros(3)
    t = minires.tensor(a)
    a[0] = 7.0
    assert t.numpy()[0] == 0.0


@pytest.mark.parametrize("data", [[1, 2, 3], np.array([1, 2, 3], dtype=np.int32)])
def test_int_data_stays_int(data):
    t = minires.tensor(data)
    assert t.dtype.kind == "i"
    if isinstance(data, np.ndarray):
        assert t.dtype == data.dtype
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])


def test_explicit_dtype_is_used():
    t = minires.tensor([1, 2], dtype=np.float64)
    assert t.dtype == np.float64
    t2 = minires.tensor(np.ones(2, dtype=np.float32), dtype=np.float64)
    assert t2.dtype == np.float64


@pytest.mark.parametrize("data", [[1, 2, 3], np.array([1, 2], dtype=np.int64), True])
def test_requires_grad_on_non_float_raises_type_error(data):
    with pytest.raises(TypeError, match="floating-point"):
        minires.tensor(data, requires_grad=True)


def test_requires_grad_flag_and_leaf():
    t = minires.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad is True
    assert t.is_leaf and t.grad_fn is None and t.grad is None
    assert minires.tensor([1.0]).requires_grad is False


# ---- properties and conversions --------------------------------------------------------------

def test_shape_dtype_device_numpy():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    t = minires.tensor(a)
    assert t.shape == (2, 3, 4)
    assert t.ndim == 3 and t.numel() == 24 and t.size() == (2, 3, 4) and t.size(1) == 3 and t.dim() == 3
    assert t.dtype == np.float64
    assert t.device == "cpu"
    out = t.numpy()
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a)


def test_item_single_element_and_error():
    assert minires.tensor([[3.5]]).item() == 3.5
    assert isinstance(minires.tensor([4]).item(), int)
    with pytest.raises(ValueError):
        minires.tensor([1.0, 2.0]).item()


def test_detach_cuts_graph():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    d = y.detach()
    assert d.grad_fn is None
    assert d.requires_grad is False
    np.testing.assert_array_equal(d.numpy(), [3.0, 6.0])
    # Using the detached tensor does not send gradient back to x.
    z = (d * x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad, [3.0, 6.0])  # only the direct path d * x


def test_to_cpu_is_noop():
    t = minires.tensor([1.0, 2.0], requires_grad=True)
    assert t.to("cpu") is t
    assert t.cpu() is t
    assert t.to("CPU").device == "cpu"


def test_to_unknown_device_raises():
    with pytest.raises(ValueError):
        minires.tensor([1.0]).to("tpu")


@pytest.mark.skipif(minires.cuda_is_available(), reason="a usable GPU is present; the error path cannot happen")
def test_to_cuda_without_gpu_explains_why():
    t = minires.tensor([1.0, 2.0])
    with pytest.raises(RuntimeError) as info:
        t.to("cuda")
    message = str(info.value)
    assert "cuda" in message.lower()
    _, reason = minires.backends.cuda_status()
    assert reason in message  # says *why* (CuPy missing / no driver / no device)
    with pytest.raises(RuntimeError, match="cuda"):
        minires.tensor([1.0], device="cuda")


# ---- grad mode --------------------------------------------------------------------------------

def test_no_grad_records_nothing():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with minires.no_grad():
        assert minires.is_grad_enabled() is False
        y = (x * x + 1.0).sum()
    assert minires.is_grad_enabled() is True
    assert y.grad_fn is None
    assert y.requires_grad is False
    with pytest.raises(RuntimeError):
        y.backward()


def test_enable_grad_inside_no_grad():
    x = minires.tensor([1.0], requires_grad=True)
    with minires.no_grad():
        with minires.enable_grad():
            y = x * 2.0
        z = x * 2.0
    assert y.grad_fn is not None
    assert z.grad_fn is None


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError):
        with minires.no_grad():
            raise KeyError("boom")
    assert minires.is_grad_enabled() is True


# ---- backward errors -------------------------------------------------------------------------

def test_backward_non_scalar_without_grad_raises():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="single-element"):
        y.backward()


def test_backward_non_scalar_with_grad():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    y.backward(np.array([1.0, 0.5, -1.0], dtype=np.float32))
    np.testing.assert_allclose(x.grad, [2.0, 2.0, -6.0])


def test_backward_grad_shape_mismatch_raises():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError):
        y.backward(np.ones(4))


def test_backward_twice_raises():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_backward_twice_with_retain_graph():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0, 8.0])  # accumulated, not overwritten
    with pytest.raises(RuntimeError):
        y.backward()  # the second call did not retain


# ---- gradient accumulation ---------------------------------------------------------------------

def test_tensor_used_several_times_accumulates():
    xv = np.array([-1.5, 0.0, 2.0, 3.0], dtype=np.float32)
    x = minires.tensor(xv, requires_grad=True)
    y = (x * x + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * xv + 1)


def test_intermediate_used_several_times_accumulates():
    xv = np.array([0.5, -2.0, 1.0])
    x = minires.tensor(xv, requires_grad=True)
    h = x * 3.0
    y = (h * h + h - h * 2.0).sum()  # 9x^2 + 3x - 6x
    y.backward()
    np.testing.assert_allclose(x.grad, 18 * xv - 3, rtol=1e-12)


def test_residual_like_accumulates():
    # y = f(x) + x with f(x) = exp(x) * w: dy/dx = w exp(x) + 1 (the skip path adds 1).
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((3, 4))
    wv = rng.standard_normal((3, 4))
    x = minires.tensor(xv, requires_grad=True)
    w = minires.tensor(wv, requires_grad=True)
    y = (x.exp() * w + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, wv * np.exp(xv) + 1.0, rtol=1e-12)
    np.testing.assert_allclose(w.grad, np.exp(xv), rtol=1e-12)


def test_residual_block_chain_gradcheck():
    rng = np.random.default_rng(2)
    x = minires.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    w1 = minires.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True)
    w2 = minires.tensor(rng.standard_normal((4, 4)) * 0.5, requires_grad=True)

    def net(x):
        h = x
        for w in (w1, w2, w1):  # w1 used twice too
            h = (h @ w) * 0.5 + h
        return h

    minires.gradcheck(net, [x], params=[w1, w2])


def test_leaf_grad_accumulates_across_backward_calls():
    xv = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    x = minires.tensor(xv, requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * xv)
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * xv + 5.0)
    x.zero_grad()
    assert x.grad is None
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0, 5.0])


def test_first_grad_is_a_copy_not_shared():
    # Add hands the same array to both of its inputs; each leaf must own its .grad.
    a = minires.tensor([1.0, 2.0], requires_grad=True)
    b = minires.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad.data[0] = 100.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_retain_grad_on_intermediate():
    xv = np.array([1.0, 2.0, 3.0])
    x = minires.tensor(xv, requires_grad=True)
    h = x * x
    h.retain_grad()
    y = (h * 3.0).sum()
    y.backward()
    np.testing.assert_allclose(h.grad, [3.0, 3.0, 3.0])
    np.testing.assert_allclose(x.grad, 6 * xv)


def test_intermediate_without_retain_grad_has_no_grad():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    (h * 3.0).sum().backward()
    assert h.grad is None


def test_retain_grad_on_intermediate_used_twice_gets_total():
    x = minires.tensor([2.0], requires_grad=True)
    h = x * 1.0
    h.retain_grad()
    y = (h * h + h).sum()  # dy/dh = 2h + 1 = 5
    y.backward()
    np.testing.assert_allclose(h.grad, [5.0])


def test_backward_on_leaf_with_grad():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    x.backward(np.array([0.5, 0.25]))
    np.testing.assert_allclose(x.grad, [0.5, 0.25])


def test_input_without_requires_grad_gets_no_grad():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    c = minires.tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [3.0, 4.0])


# ---- deep graphs, freeing ------------------------------------------------------------------------

def test_1000_layer_chain_backward_no_recursion_error():
    layers = 1000
    assert 2 * layers > sys.getrecursionlimit()  # 2,000 nodes: deep enough to break a recursive walk
    x = minires.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    h = x
    for _ in range(layers):
        h = h * 1.001 + 0.01
    h.sum().backward()
    np.testing.assert_allclose(x.grad, [1.001 ** layers] * 2, rtol=1e-9)


def test_5000_op_chain_backward_no_recursion_error():
    ops = 5000
    assert ops > sys.getrecursionlimit()
    x = minires.tensor([0.5], dtype=np.float64, requires_grad=True)
    h = x
    for k in range(ops):
        h = h + 1.0 if k % 2 else -h  # alternating add and neg: an even number of negations
    h.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_graph_freed_after_backward():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h1 = x * x
    h2 = h1.exp()
    h3 = h2 / 2.0
    y = h3.sum()
    fns = [t.grad_fn for t in (h1, h2, h3, y)]
    assert all(fn is not None for fn in fns)
    assert fns[0].saved_tensors is not None and len(fns[0].saved_tensors) == 2
    y.backward()
    for fn in fns:
        assert fn.saved_tensors is None, f"{fn} kept its saved arrays"
        assert fn.inputs is None, f"{fn} kept links to its inputs"


def test_graph_kept_with_retain_graph():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * x
    y = h.sum()
    y.backward(retain_graph=True)
    assert h.grad_fn.saved_tensors is not None
    assert h.grad_fn.inputs is not None


# ---- dtypes through ops ----------------------------------------------------------------------------

SCALAR_OPS = {
    "x+s": lambda x: x + 2.5,
    "s+x": lambda x: 2.5 + x,
    "x-s": lambda x: x - 2.5,
    "s-x": lambda x: 2.5 - x,
    "x*s": lambda x: x * 0.1,
    "s*x": lambda x: 0.1 * x,
    "x/s": lambda x: x / 3.0,
    "s/x": lambda x: 3.0 / x,
    "x**s": lambda x: x ** 2.5,
    "x**int": lambda x: x ** 3,
    "pow(s,x)": lambda x: minires.pow(2.0, x),
    "x*np.float64": lambda x: x * np.float64(0.1),
    "x*int": lambda x: x * 2,
}


@pytest.mark.parametrize("name", list(SCALAR_OPS))
def test_python_scalar_keeps_float32(name):
    xv = np.array([0.5, 1.0, 2.0], dtype=np.float32)
    x = minires.tensor(xv, requires_grad=True)
    y = SCALAR_OPS[name](x)
    assert y.dtype == np.float32, f"{name} upcast to {y.dtype}"
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_rpow_operator_number_to_tensor_power():
    # minires.pow(number, Tensor) is supported, so the operator spelling should be too.
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = 2.0 ** x
    np.testing.assert_allclose(y.numpy(), [2.0, 4.0])
    assert y.dtype == np.float32


def test_int_tensor_times_float_scalar_promotes():
    # NumPy and PyTorch both give [0.5, 1.0, 1.5]; the scalar must not be truncated to int.
    t = minires.tensor([1, 2, 3])
    np.testing.assert_allclose((t * 0.5).numpy(), [0.5, 1.0, 1.5])
    np.testing.assert_allclose((t + 0.5).numpy(), [1.5, 2.5, 3.5])


FLOAT32_GRAD_OPS = {
    "add": lambda x: x + x,
    "mul": lambda x: x * x,
    "div": lambda x: x / (x * x + 1.0),
    "exp": lambda x: x.exp(),
    "log": lambda x: (x * x + 1.0).log(),
    "pow": lambda x: x ** 2,
    "sum_axis": lambda x: x.sum(axis=1),
    "mean_axis": lambda x: x.mean(axis=0),
    "max_all": lambda x: x.max(),
    "max_axis": lambda x: x.max(dim=1).values,
    "matmul": lambda x: x @ x.T,
    "getitem": lambda x: x[[0, 0, 1]],
    "concat": lambda x: minires.concatenate([x, x], axis=1),
    "pad": lambda x: F.pad(x, (1, 1, 1, 1)),
}


@pytest.mark.parametrize("name", list(FLOAT32_GRAD_OPS))
def test_float32_gradients_stay_float32_when_accumulated(name):
    # Two backward passes make the leaf add a second gradient to its .grad: if an op's
    # backward produced float64, x.grad silently becomes float64 there.
    x = minires.tensor(np.array([[0.5, 1.5, -1.0], [2.0, -0.5, 0.25]], dtype=np.float32), requires_grad=True)
    fn = FLOAT32_GRAD_OPS[name]
    fn(x).sum().backward()
    assert x.grad.dtype == np.float32
    first = x.grad.clone()
    fn(x).sum().backward()
    assert x.grad.dtype == np.float32, f"{name}: gradient upcast to {x.grad.dtype}"
    np.testing.assert_allclose(x.grad, 2 * first, rtol=1e-6)


def test_pow_zero_exponent_gradient_is_zero_at_zero():
    # d/dx x**0 = 0 everywhere (PyTorch gives 0 at x = 0 as well), not NaN.
    x = minires.tensor([0.0, 1.0, -2.0], dtype=np.float64, requires_grad=True)
    with np.errstate(all="ignore"):
        (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])


def test_repr_mentions_grad_fn_and_dtype():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    assert "Mul" in repr(y)
    assert "float32" in repr(y)
    assert "requires_grad=True" in repr(x)


def test_no_grad_in_one_thread_leaves_recording_on_in_the_others():
    import threading

    inside, other_thread = threading.Event(), {}

    def train_step():
        inside.wait()  # while the main thread is inside no_grad()
        x = minires.tensor([1.0, 2.0], requires_grad=True)
        other_thread["enabled"] = minires.is_grad_enabled()
        other_thread["graph"] = (x * x).sum().grad_fn is not None

    worker = threading.Thread(target=train_step)
    worker.start()
    with minires.no_grad():
        inside.set()
        worker.join()
        assert not minires.is_grad_enabled()
    assert other_thread == {"enabled": True, "graph": True}
    assert minires.is_grad_enabled()


# ---- the PyTorch-shaped surface ---------------------------------------------------------

def test_one_element_tensors_convert_to_python_numbers_and_truth_values():
    loss = minires.tensor(2.5)
    assert float(loss) == 2.5 and int(minires.tensor([3])) == 3
    assert bool(minires.tensor([1.0])) is True and not minires.tensor(0.0)
    with pytest.raises(RuntimeError, match="Boolean value of a Tensor with 3 values is ambiguous"):
        bool(minires.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="one element"):
        float(minires.tensor([1.0, 2.0]))


def test_comparisons_are_elementwise_bool_tensors_outside_the_graph_and_tensors_stay_hashable():
    a = minires.tensor([1.0, -2.0, 3.0], requires_grad=True)
    b = minires.tensor([1.0, 2.0, -3.0])
    results = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= 1.0, ">": a > 0, ">=": a >= b}
    expected = {"==": [True, False, False], "!=": [False, True, True], "<": [False, True, False],
                "<=": [True, True, False], ">": [True, False, True], ">=": [True, False, True]}
    for name, result in results.items():
        assert isinstance(result, minires.Tensor) and result.dtype == np.bool_, name
        assert result.tolist() == expected[name], name
        assert result.grad_fn is None and not result.requires_grad, name
    assert {a: "a", b: "b"}[a] == "a" and len({a, b, a}) == 2  # hashed by identity


@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), (-1, False)])
def test_argmax_and_argmin_follow_numpy_with_pytorchs_names(dim, keepdim):
    data = np.random.default_rng(0).standard_normal((3, 4))
    t = minires.tensor(data)
    for found, numpy_find in ((t.argmax(dim, keepdim), data.argmax), (t.argmin(dim=dim, keepdim=keepdim), data.argmin)):
        expected = numpy_find(axis=dim, keepdims=keepdim and dim is not None)
        assert found.dtype == np.int64 and found.shape == np.shape(expected)
        np.testing.assert_array_equal(found.numpy(), expected)


def test_sum_and_mean_take_dim_and_keepdim_or_numpys_axis_and_keepdims():
    data = np.arange(24.0).reshape(2, 3, 4)
    t = minires.tensor(data, requires_grad=True)
    np.testing.assert_allclose(t.sum(dim=1).numpy(), data.sum(axis=1))
    np.testing.assert_allclose(t.sum(1, keepdim=True).numpy(), data.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(t.mean(dim=(0, 2)).numpy(), data.mean(axis=(0, 2)))
    np.testing.assert_allclose(t.sum(axis=2, keepdims=True).numpy(), data.sum(axis=2, keepdims=True))
    t.mean(dim=0).sum().backward()
    np.testing.assert_allclose(t.grad, np.full(data.shape, 0.5))
    with pytest.raises(TypeError, match="not both"):
        t.sum(dim=0, axis=0)


def test_view_is_reshape_and_requires_grad_freezes_a_leaf():
    t = minires.tensor(np.arange(6.0))
    assert t.view(2, 3).shape == (2, 3) and t.view((3, 2)).shape == (3, 2)
    w = minires.tensor([1.0, 2.0], requires_grad=True)
    assert w.requires_grad_(False) is w and not w.requires_grad
    assert (w * 3).sum().grad_fn is None  # frozen: no graph is recorded through it
    w.requires_grad_()
    assert w.requires_grad
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="floating-point"):
        minires.tensor([1, 2]).requires_grad_()


def test_the_surface_matches_torch():
    torch = pytest.importorskip("torch")
    data = np.random.default_rng(1).standard_normal((3, 5))
    ours, theirs = minires.tensor(data), torch.tensor(data)
    assert ours.size() == tuple(theirs.size()) and ours.size(1) == theirs.size(1)
    assert ours.numel() == theirs.numel() and ours.dim() == theirs.dim()
    np.testing.assert_array_equal(ours.argmax(1).numpy(), theirs.argmax(1).numpy())
    np.testing.assert_array_equal(ours.argmin(dim=0, keepdim=True).numpy(), theirs.argmin(dim=0, keepdim=True).numpy())
    np.testing.assert_allclose(ours.sum(dim=1, keepdim=True).numpy(), theirs.sum(dim=1, keepdim=True).numpy())
    np.testing.assert_array_equal((ours > 0).numpy(), (theirs > 0).numpy())
    assert float(ours[0, 0]) == float(theirs[0, 0])


# ---- .grad is a Tensor; NumPy meets a Tensor ----------------------------------------------------
def test_grad_is_a_tensor_like_its_leaf_and_accumulates_into_the_same_object():
    x = minires.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    grad = x.grad
    assert isinstance(grad, minires.Tensor) and not grad.requires_grad and grad.grad_fn is None
    assert (grad.shape, grad.dtype, grad.device) == (x.shape, x.dtype, x.device)
    (x * 3.0).sum().backward()
    assert x.grad is grad  # as in PyTorch: a second backward adds into the gradient you already hold
    np.testing.assert_array_equal(grad.numpy(), [5.0, 7.0, 9.0])


def test_assigning_grad_checks_type_and_shape_with_a_fix_in_the_message():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"minires\.tensor"):
        x.grad = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        x.grad = minires.zeros(3)
    with pytest.raises(ValueError, match="float64"):
        x.grad = minires.zeros(2, dtype=np.float64)
    x.grad = minires.ones(2)
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


def test_manual_sgd_on_data_updates_the_array_in_place():
    # PyTorch's  p.data -= lr * p.grad : the array stays the same array, outside the graph.
    w = minires.tensor([1.0, -2.0], requires_grad=True)
    array = w.data
    (w * w).sum().backward()
    w.data -= 0.25 * w.grad
    assert w.data is array and type(w.data) is np.ndarray
    np.testing.assert_array_equal(w.data, [0.5, -1.0])


def test_numpy_operators_with_a_tensor_stay_in_the_graph():
    x = minires.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = np.array([3.0, 4.0]) * x + np.array([1.0, 1.0])
    assert isinstance(y, minires.Tensor) and y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    assert (np.array([0.0, 5.0]) < x).tolist() == [True, False]


def test_numpy_functions_refuse_a_tensor_that_requires_grad_and_accept_one_that_does_not():
    x = minires.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"t\.exp\(\)"):
        np.exp(x)
    np.testing.assert_allclose(np.exp(x.detach()), [1.0, np.e], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(x.detach()), [0.0, 1.0])


def test_clone_copies_and_passes_the_gradient_back():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    assert y.data is not x.data and y.grad_fn is not None
    (y * 2.0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
