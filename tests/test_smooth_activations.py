"""sigmoid, tanh, softmax and log_softmax on every backend: outputs and gradients against per-element
math-module references, gradcheck, the identities (rows sum to 1, log_softmax = log softmax),
extreme inputs (no NaN, no warnings, PyTorch's limits), PyTorch itself where it is installed,
the errors, and the nn Modules."""
import math
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from backend_tools import assert_close, cases_on_backends, float32_exact

import minires
import minires.functional as F
from minires import nn

SHAPES = [(7,), (4, 3), (2, 3, 5), (2, 3, 4, 5)]
AXIS_CASES = [((5,), 0), ((5,), -1), ((4, 3), 0), ((4, 3), 1), ((2, 3, 5), 0), ((2, 3, 5), 1), ((2, 3, 5), -1),
              ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -2)]


def shape_id(shape):
    return "x".join(map(str, shape))


def axis_id(case):
    shape, dim = case
    return f"{shape_id(shape)}-dim{dim}"


def data(shape, seed=0, scale=3.0):
    """Random values exact in float32, so one float64 reference serves both dtypes."""
    return float32_exact(scale * np.random.default_rng(seed).standard_normal(shape))


@contextmanager
def no_float_warnings():
    """Fail on any warning and on overflow, 0/0 or x/0 in NumPy. (Underflow to 0 is the right
    answer for e^-1000, and NumPy ignores it by default, as we do here.)"""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


# ---- loop references, one element at a time with the math module -----------------------------

def ref_sigmoid(x):
    return np.vectorize(lambda v: 1.0 / (1.0 + math.exp(-v)))(x)


def ref_sigmoid_grad(x):
    return np.vectorize(lambda v: math.exp(-v) / (1.0 + math.exp(-v)) ** 2)(x)


def ref_tanh(x):
    return np.vectorize(math.tanh)(x)


def ref_tanh_grad(x):
    return np.vectorize(lambda v: 1.0 / math.cosh(v) ** 2)(x)


def rows(x, dim):
    """x with ``dim`` moved last, as a list of 1-D rows, and how to put results back."""
    moved = np.moveaxis(np.asarray(x, np.float64), dim, -1)
    return moved.reshape(-1, moved.shape[-1]), lambda r: np.moveaxis(r.reshape(moved.shape), -1, dim)


def ref_softmax(x, dim):
    flat, back = rows(x, dim)
    out = np.empty_like(flat)
    for r, row in enumerate(flat):
        exps = [math.exp(v) for v in row]  # the test data is small: no overflow without the shift
        out[r] = [e / math.fsum(exps) for e in exps]
    return back(out)


def ref_log_softmax(x, dim):
    flat, back = rows(x, dim)
    out = np.empty_like(flat)
    for r, row in enumerate(flat):
        out[r] = [v - math.log(math.fsum(math.exp(u) for u in row)) for v in row]
    return back(out)


def ref_softmax_family_grad(x, upstream, dim, log):
    """dL/dx_j = sum_i g_i dy_i/dx_j, from the full Jacobian of each row:
    softmax: dy_i/dx_j = p_i (delta_ij - p_j); log_softmax: dy_i/dx_j = delta_ij - p_j."""
    p_rows, back = rows(ref_softmax(x, dim), dim)
    g_rows, _ = rows(upstream, dim)
    out = np.empty_like(p_rows)
    for r, (p, g) in enumerate(zip(p_rows, g_rows)):
        n = len(p)
        for j in range(n):
            out[r, j] = math.fsum(g[i] * ((i == j) - p[j]) * (1.0 if log else p[i]) for i in range(n))
    return back(out)


# ---- outputs and gradients ---------------------------------------------------------------------

ELEMENTWISE = {
    "sigmoid": (F.sigmoid, ref_sigmoid, ref_sigmoid_grad),
    "tanh": (F.tanh, ref_tanh, ref_tanh_grad),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("shape", SHAPES, emulated=[(4, 3)], ids=shape_id)
def test_elementwise_output_and_gradient_match_the_math_reference(backend, shape, dtype, name):
    fn, ref, ref_grad = ELEMENTWISE[name]
    x, upstream = data(shape), data(shape, seed=1, scale=1.0)
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = fn(tx)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(y, ref(x), dtype)
    assert_close(tx.grad, upstream * ref_grad(x), dtype, grad=True)


SOFTMAX_FAMILY = {
    "softmax": (F.softmax, ref_softmax, False),
    "log_softmax": (F.log_softmax, ref_log_softmax, True),
}


@pytest.mark.parametrize("name", sorted(SOFTMAX_FAMILY))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", AXIS_CASES, emulated=[((4, 3), 1)], ids=axis_id)
def test_softmax_family_output_and_gradient_match_the_loop_reference(backend, case, dtype, name):
    fn, ref, log = SOFTMAX_FAMILY[name]
    shape, dim = case
    x, upstream = data(shape), data(shape, seed=1, scale=1.0)
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = fn(tx, dim=dim)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(y, ref(x, dim), dtype)
    assert_close(tx.grad, ref_softmax_family_grad(x, upstream, dim, log), dtype, grad=True)
    assert y.dtype == dtype and tx.grad.dtype == dtype


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@cases_on_backends("shape", SHAPES, emulated=[(4, 3)], ids=shape_id)
def test_elementwise_gradcheck(backend, shape, name):
    x = backend.tensor(data(shape, seed=2, scale=2.0), requires_grad=True)
    backend.gradcheck(ELEMENTWISE[name][0], (x,))


@pytest.mark.parametrize("name", sorted(SOFTMAX_FAMILY))
@cases_on_backends("case", AXIS_CASES, emulated=[((4, 3), 0)], ids=axis_id)
def test_softmax_family_gradcheck(backend, case, name):
    shape, dim = case
    fn = SOFTMAX_FAMILY[name][0]
    x = backend.tensor(data(shape, seed=3, scale=2.0), requires_grad=True)
    backend.gradcheck(lambda t: fn(t, dim), (x,))


def test_gradcheck_sees_a_wrong_softmax_backward(backend, monkeypatch):
    """The gradchecks above can fail: drop the - sum(g y) term and softmax's check must catch it."""
    from minires.ops.smooth import SoftmaxFunction

    monkeypatch.setattr(SoftmaxFunction, "backward", lambda self, grad: self.saved_tensors[0] * grad)
    x = backend.tensor(data((3, 4), seed=4), requires_grad=True)
    with pytest.raises(minires.GradcheckError):
        minires.gradcheck(lambda t: F.softmax(t, 1), (x,))


# ---- identities ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", AXIS_CASES, emulated=[((2, 3, 5), 1)], ids=axis_id)
def test_softmax_sums_to_one_and_log_softmax_is_its_log(backend, case, dtype):
    shape, dim = case
    x = backend.tensor(data(shape, seed=5, scale=10.0).astype(dtype))
    p = F.softmax(x, dim)
    p_np = p.numpy().astype(np.float64)
    assert (p_np > 0).all()
    np.testing.assert_allclose(p_np.sum(axis=dim), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)
    assert_close(F.log_softmax(x, dim), np.log(p_np), dtype, scale=max(1.0, float(np.abs(np.log(p_np)).max())))
    shifted = F.softmax(x + 100.0, dim)  # softmax(x + c) = softmax(x)
    assert_close(shifted, p_np, dtype, scale=1.0)


# ---- extreme inputs ------------------------------------------------------------------------

EXTREMES = [-np.inf, -1000.0, -100.0, -30.0, -1.0, -0.0, 0.0, 1.0, 30.0, 100.0, 1000.0, np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_of_extremes_are_pytorchs_limits_without_nan_or_warnings(backend, dtype):
    for fn, low, high in [(F.sigmoid, 0.0, 1.0), (F.tanh, -1.0, 1.0)]:
        x = backend.tensor(np.array(EXTREMES, dtype), requires_grad=True)
        with no_float_warnings():
            y = fn(x)
            y.backward(backend.array(np.ones(len(EXTREMES), dtype)))
        out, grad = y.numpy(), backend.numpy(x.grad)
        assert out.dtype == dtype and grad.dtype == dtype
        assert not np.isnan(out).any() and not np.isnan(grad).any()
        np.testing.assert_array_equal(out[[0, 1, -2, -1]], np.array([low, low, high, high], dtype))  # exact
        np.testing.assert_array_equal(grad[[0, 1, -2, -1]], 0)
        assert ((out >= low) & (out <= high)).all()
        assert (np.diff(out) >= 0).all()  # monotone all the way out
    np.testing.assert_array_equal(F.sigmoid(backend.tensor(np.array([0.0], dtype))).numpy(), [0.5])
    # Far out on the negative side sigmoid is tiny but, in float64, not 0 and to full relative precision:
    # sigmoid(-100) = e^-100 / (1 + e^-100), where 1 - sigmoid(100) would give exactly 0.
    if dtype == np.float64:
        tiny = F.sigmoid(backend.tensor(np.array([-100.0, -700.0]))).numpy()
        np.testing.assert_allclose(tiny, [math.exp(-100.0), math.exp(-700.0)], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_of_huge_and_masked_inputs_is_finite_without_warnings(backend, dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [1000.0, 1000.0, -np.inf], [-1000.0, -1000.0, -1000.0]], dtype)
    expected_p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    expected_log = np.array([[0.0, -2000.0, -1000.0], [-math.log(2), -math.log(2), -np.inf],
                             [-math.log(3)] * 3])
    for fn, expected in [(F.softmax, expected_p), (F.log_softmax, expected_log)]:
        tx = backend.tensor(x, requires_grad=True)
        with no_float_warnings():
            y = fn(tx, 1)
            y.backward(backend.array(np.ones(x.shape, dtype)))
        out, grad = y.numpy(), backend.numpy(tx.grad)
        assert out.dtype == dtype and not np.isnan(out).any() and np.isfinite(grad).all()
        np.testing.assert_allclose(out, expected, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
        assert out[1, 2] == (0.0 if fn is F.softmax else -np.inf)  # a -inf logit: exactly 0, or -inf
    # With an all-ones upstream the gradient of softmax is 0 (rows sum to 1 whatever x is) and that of
    # log_softmax is 1 - 3 p: for the masked row p = [1/2, 1/2, 0], so [-1/2, -1/2, 1].
    np.testing.assert_allclose(grad[1], [-0.5, -0.5, 1.0], atol=4 * np.finfo(dtype).eps)


def test_nan_propagates_as_in_pytorch(backend):
    x = backend.tensor(np.array([np.nan, 1.0]))
    for fn in (F.sigmoid, F.tanh):
        out = fn(x).numpy()
        assert np.isnan(out[0]) and not np.isnan(out[1])
    assert np.isnan(F.softmax(x, 0).numpy()).all()  # a NaN in a row spoils the whole row, as in torch


# ---- small cases, dtypes and views -------------------------------------------------------------

def test_zero_dim_empty_and_strided_inputs(backend):
    scalar = backend.tensor(np.array(3.0))
    for dim in (0, -1):
        assert F.softmax(scalar, dim).numpy() == 1.0 and F.log_softmax(scalar, dim).numpy() == 0.0
        assert F.softmax(scalar, dim).shape == ()
    for fn in (F.softmax, F.log_softmax):
        for shape, dim in [((2, 0), 1), ((0, 3), 1), ((0, 3), 0)]:  # PyTorch returns an empty tensor too
            empty = backend.tensor(np.zeros(shape), requires_grad=True)
            y = fn(empty, dim)
            y.backward(backend.array(np.zeros(shape)))
            assert y.shape == shape and empty.grad.shape == shape
    x = data((4, 6), seed=6)
    view = backend.tensor(x).transpose(1, 0)  # not C-contiguous
    assert_close(F.softmax(view, 1), ref_softmax(x.T, 1), np.float64)
    assert_close(F.sigmoid(view), ref_sigmoid(x.T), np.float64)


def test_ops_namespace_exports_the_same_functions():
    assert minires.ops.sigmoid is F.sigmoid and minires.ops.tanh is F.tanh
    assert minires.ops.softmax is F.softmax and minires.ops.log_softmax is F.log_softmax
    for name in ("sigmoid", "tanh", "softmax", "log_softmax"):
        assert name in minires.ops.__all__ and name in F.__all__


# ---- errors -----------------------------------------------------------------------------------

def test_errors_name_the_problem(backend):
    ints = backend.tensor(np.array([[1, 2], [3, 4]], np.int64))
    for fn in (F.sigmoid, F.tanh, lambda t: F.softmax(t, 1), lambda t: F.log_softmax(t, 1)):
        with pytest.raises(TypeError, match="must be a floating-point tensor, got dtype int64"):
            fn(ints)
    x = backend.tensor(np.zeros((2, 3)))
    for fn, name in [(F.softmax, "softmax"), (F.log_softmax, "log_softmax")]:
        for dim in (2, -3):
            with pytest.raises(IndexError, match=rf"^{name}: dim {dim} is out of range for a tensor with 2 "
                                                 r"dimensions \(expected a dim in \[-2, 1\]\)"):
                fn(x, dim)
        with pytest.raises(TypeError, match=rf"^{name}: dim must be an int .*got 1.0"):
            fn(x, 1.0)
        with pytest.raises(TypeError, match="dim must be an int"):
            fn(x, True)
        with pytest.raises(TypeError, match="dim"):
            fn(x)  # dim is required, as PyTorch recommends
    with pytest.raises(IndexError, match="out of range for a tensor with 0 dimensions"):
        F.softmax(backend.tensor(np.array(1.0)), 1)
    with pytest.raises(TypeError, match="numpy.ndarray, not a minires Tensor"):
        F.sigmoid(np.zeros(3))


# ---- against PyTorch ----------------------------------------------------------------------------

@cases_on_backends("case", AXIS_CASES, emulated=[((4, 3), 1)], ids=axis_id)
def test_outputs_and_gradients_match_pytorch(backend, case):
    torch = pytest.importorskip("torch")
    shape, dim = case
    x, upstream = data(shape, seed=7), data(shape, seed=8, scale=1.0)
    pairs = [(F.sigmoid, torch.sigmoid), (F.tanh, torch.tanh),
             (lambda t: F.softmax(t, dim), lambda t: torch.softmax(t, dim)),
             (lambda t: F.log_softmax(t, dim), lambda t: torch.log_softmax(t, dim))]
    for ours, theirs in pairs:
        tx = backend.tensor(x, requires_grad=True)
        y = ours(tx)
        y.backward(backend.array(upstream))
        torch_x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        torch_y = theirs(torch_x)
        torch_y.backward(torch.tensor(upstream))
        assert_close(y, torch_y.detach().numpy(), np.float64)
        assert_close(tx.grad, torch_x.grad.numpy(), np.float64, grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extremes_match_pytorch(backend, dtype):
    torch = pytest.importorskip("torch")
    x = np.array(EXTREMES, dtype)
    torch_x = torch.tensor(x)
    np.testing.assert_array_equal(F.tanh(backend.tensor(x)).numpy(), torch.tanh(torch_x).numpy())
    ours, theirs = F.sigmoid(backend.tensor(x)).numpy(), torch.sigmoid(torch_x).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=2 * np.finfo(dtype).eps, atol=np.finfo(dtype).tiny)
    rows_x = np.array([[1000.0, -1000.0, 0.0], [5.0, -np.inf, 1.0]], dtype)
    for ours_fn, theirs_fn in [(F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)]:
        np.testing.assert_allclose(ours_fn(backend.tensor(rows_x), 1).numpy(), theirs_fn(torch.tensor(rows_x), 1).numpy(),
                                   rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


# ---- the Modules ------------------------------------------------------------------------------

def test_modules_equal_the_functions_and_show_their_dim(backend):
    x = backend.tensor(data((2, 3, 4), seed=9).astype(np.float32))
    cases = [(nn.Sigmoid(), F.sigmoid(x), "Sigmoid()"), (nn.Tanh(), F.tanh(x), "Tanh()"),
             (nn.Softmax(dim=1), F.softmax(x, 1), "Softmax(dim=1)"),
             (nn.LogSoftmax(-1), F.log_softmax(x, -1), "LogSoftmax(dim=-1)")]
    for module, expected, text in cases:
        out = module(x)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out.numpy(), expected.numpy())
        assert repr(module) == text
        assert list(module.parameters()) == []
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3), nn.LogSoftmax(dim=1))
    assert "(1): Tanh()" in repr(model) and "(3): LogSoftmax(dim=1)" in repr(model)


def test_softmax_modules_need_an_int_dim():
    for cls in (nn.Softmax, nn.LogSoftmax):
        with pytest.raises(TypeError):
            cls()
        with pytest.raises(TypeError, match=rf"^{cls.__name__}: dim must be an int"):
            cls(dim=None)
        with pytest.raises(IndexError, match="out of range"):
            cls(dim=3)(minires.tensor(np.zeros((2, 3), np.float32)))


def test_modules_match_pytorch_modules():
    torch = pytest.importorskip("torch")
    x = data((3, 5), seed=10)
    for ours, theirs in [(nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Tanh(), torch.nn.Tanh()),
                         (nn.Softmax(dim=0), torch.nn.Softmax(dim=0)), (nn.LogSoftmax(dim=1), torch.nn.LogSoftmax(dim=1))]:
        assert repr(ours) == repr(theirs)
        assert_close(ours(minires.tensor(x)), theirs(torch.tensor(x)).numpy(), np.float64)


def test_tensor_methods_are_the_functional_ops():
    x = minires.tensor(np.array([[-1.0, 0.5, 2.0]]))
    np.testing.assert_array_equal(x.sigmoid().numpy(), F.sigmoid(x).numpy())
    np.testing.assert_array_equal(x.tanh().numpy(), F.tanh(x).numpy())
    np.testing.assert_array_equal(x.softmax(1).numpy(), F.softmax(x, dim=1).numpy())
    np.testing.assert_array_equal(x.log_softmax(dim=-1).numpy(), F.log_softmax(x, -1).numpy())
