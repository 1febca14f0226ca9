"""abs, sqrt, clamp, where and the reductions max/min (values and indices), amax/amin, var and std,
on every backend: outputs and gradients against NumPy references in float32 and float64, gradcheck in
float64 (inputs away from the kinks), every dim/keepdim spelling, the tie rule, PyTorch itself where it
is installed (boundary rules, corrections, indices), the errors, and checks that a wrong backward fails."""
import warnings

import numpy as np
import pytest
from backend_tools import assert_close, float32_exact

import minires
from minires import ops
from minires.ops import elementwise, reduction

DTYPES = [np.float32, np.float64]
SHAPE = (2, 3, 4)
DIMS = [None, 0, 1, 2, -1, -3, (0, 2), (-1, 0), (1,), (0, 1, 2)]  # every spelling amax/amin/var/std take
INT_DIMS = [0, 1, 2, -1, -2, -3]  # max(x, dim) / min(x, dim) take one int


def data(shape, seed=0, scale=2.0):
    """Random values exact in float32, so one float64 reference serves both dtypes."""
    return float32_exact(scale * np.random.default_rng(seed).standard_normal(shape))


def distinct(shape, seed=0):
    """Well-separated distinct values (no ties), exact in float32."""
    n = int(np.prod(shape))
    return float32_exact((np.random.default_rng(seed).permutation(n) - n / 2).reshape(shape) * 0.25)


def away_from(x, points, gap=0.05):
    """``x`` with every value closer than ``gap`` to one of ``points`` pushed out to ``gap`` from it,
    so central differences (eps = 1e-5) never straddle a kink."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap)
    return float32_exact(x)


def reduce_back(grad, shape):
    """The reference for undoing broadcasting: sum over the added leading axes and the size-1 axes."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def axes_of(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    return tuple(d % ndim for d in ((dim,) if isinstance(dim, int) else dim))


def expand(g, dim, ndim, keepdim):
    """An upstream gradient of a reduction, with the reduced axes put back as size 1."""
    return g if keepdim else np.expand_dims(g, axes_of(dim, ndim))


def dim_id(dim):
    return "all" if dim is None else str(dim).replace(" ", "")


# ---- elementwise: outputs and gradients against NumPy -------------------------------------------

CLAMPS = [(-0.5, 0.5), (None, 0.3), (-0.2, None), (0.5, -0.5), (0, 1)]  # (min, max); min > max gives max


def clamp_reference(x, low, high):
    y = x if low is None else np.maximum(x, low)
    y = y if high is None else np.minimum(y, high)
    passes = np.ones(x.shape, bool)
    if low is not None:
        passes &= x >= low
    if high is not None:
        passes &= x <= high
    return y, passes.astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_abs_and_sqrt_match_numpy(backend, dtype):
    x, upstream = data((3, 5), seed=1), data((3, 5), seed=2, scale=1.0)
    x[0, :2] = 0.0  # the kink of abs: gradient 0 there, as in PyTorch
    positive = np.abs(x) + 0.25
    cases = [(lambda t: t.abs(), x, np.abs(x), np.sign(x)),
             (lambda t: abs(t), x, np.abs(x), np.sign(x)),  # Python's abs() calls Tensor.__abs__
             (ops.abs, x, np.abs(x), np.sign(x)),
             (lambda t: t.sqrt(), positive, np.sqrt(positive), 0.5 / np.sqrt(positive)),
             (ops.sqrt, positive, np.sqrt(positive), 0.5 / np.sqrt(positive))]
    for fn, value, expected, derivative in cases:
        tx = backend.tensor(value.astype(dtype), requires_grad=True)
        y = fn(tx)
        y.backward(backend.array(upstream.astype(dtype)))
        assert_close(y, expected, dtype)
        assert_close(tx.grad, upstream * derivative, dtype, grad=True)
    assert ops.abs(backend.tensor(np.array([-3, 0, 2]))).tolist() == [3, 0, 2]  # ints stay ints


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("low, high", CLAMPS, ids=str)
def test_clamp_matches_numpy_with_pytorchs_boundary_rule(backend, dtype, low, high):
    x = data((4, 6), seed=3)
    bounds = [b for b in (low, high) if b is not None]
    x.flat[:len(bounds)] = bounds  # elements exactly on a bound: the gradient passes there
    upstream = data(x.shape, seed=4, scale=1.0)
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = tx.clamp(low, high) if low is not None else tx.clamp(max=high)
    y.backward(backend.array(upstream.astype(dtype)))
    expected, passes = clamp_reference(x, low, high)
    assert_close(y, expected, dtype)
    assert_close(tx.grad, upstream * passes, dtype, grad=True)
    if low is not None and high is not None and low <= high:
        assert backend.numpy(tx.grad)[0, :2].tolist() == upstream[0, :2].astype(dtype).tolist()
    np.testing.assert_array_equal(ops.clamp(tx, min=low, max=high).numpy(), y.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1), (4,)),
                                    ((3, 1), (2, 1, 4), (3, 4)), ((4,), (2, 3, 4), ())], ids=str)
def test_where_matches_numpy_and_unbroadcasts_each_gradient(backend, dtype, shapes):
    c_shape, a_shape, b_shape = shapes
    rng = np.random.default_rng(5)
    condition = rng.random(c_shape) < 0.5
    a, b = data(a_shape, seed=6), data(b_shape, seed=7)
    out_shape = np.broadcast_shapes(c_shape, a_shape, b_shape)
    upstream = data(out_shape, seed=8, scale=1.0)
    ta, tb = backend.tensor(a.astype(dtype), requires_grad=True), backend.tensor(b.astype(dtype), requires_grad=True)
    y = ops.where(backend.tensor(condition), ta, tb)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(y, np.where(condition, a, b), dtype)
    mask = np.broadcast_to(condition, out_shape)
    assert_close(ta.grad, reduce_back(np.where(mask, upstream, 0.0), a_shape), dtype, grad=True)
    assert_close(tb.grad, reduce_back(np.where(mask, 0.0, upstream), b_shape), dtype, grad=True)


def test_where_takes_comparisons_arrays_lists_and_numbers(backend):
    x = backend.tensor(np.array([-1.5, 0.5, 2.0], np.float32), requires_grad=True)
    relu = ops.where(x > 0, x, 0.0)  # a number takes the tensor's dtype
    assert relu.dtype == np.float32 and relu.tolist() == [0.0, 0.5, 2.0]
    relu.sum().backward()
    assert backend.numpy(x.grad).tolist() == [0.0, 1.0, 1.0]
    assert ops.where(np.array([True, False, True]), x, -x).tolist() == [-1.5, -0.5, 2.0]  # a NumPy condition
    assert ops.where([False, True, False], 1.0, x).tolist() == [-1.5, 1.0, 2.0]  # a list, a number first
    both = ops.where(backend.tensor(np.array([True, False])), 1.0, 0.0)
    assert both.dtype == np.float32 and both.tolist() == [1.0, 0.0]
    with_y = backend.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    ops.where(x > 0, x.detach(), with_y).sum().backward()  # only one input needs a gradient
    assert backend.numpy(with_y.grad).tolist() == [1.0, 0.0, 0.0]


def test_float32_stays_float32_and_gradients_keep_each_inputs_dtype(backend):
    x = backend.tensor(np.array([0.25, 1.0, 4.0], np.float32), requires_grad=True)
    for y in (x.clamp(np.float64(0.5), np.float64(2.0)), x.sqrt(), abs(x), ops.where(x > 1, x, 0),
              x.var(), x.std(correction=0), x.amax(), x.min(0).values):
        assert y.dtype == np.float32, y
        y.sum().backward()
        assert x.grad.dtype == np.float32
    wide = backend.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)  # float64
    x.grad = None
    mixed = ops.where(x > 1, x, wide)
    assert mixed.dtype == np.float64  # promoted, as in PyTorch
    mixed.sum().backward()
    assert x.grad.dtype == np.float32 and wide.grad.dtype == np.float64


# ---- elementwise: gradcheck, away from the kinks ------------------------------------------------

def test_elementwise_gradcheck(backend):
    x = away_from(data((3, 4), seed=9), points=[-0.5, 0.0, 0.3, 0.5])
    condition = backend.tensor(np.random.default_rng(10).random((2, 3, 4)) < 0.5)
    cases = [(lambda t: t.abs(), [x]),
             (lambda t: t.sqrt(), [np.abs(x) + 0.1]),
             (lambda t: t.clamp(-0.5, 0.5), [x]),
             (lambda t: t.clamp(max=0.3), [x]),
             (lambda t: t.clamp(min=0.0), [x]),
             (lambda a, b: ops.where(condition, a, b), [data((3, 1), seed=11), data((2, 1, 4), seed=12)])]
    for fn, inputs in cases:
        backend.gradcheck(fn, [backend.tensor(v, requires_grad=True) for v in inputs])


# ---- reductions: max and min with and without dim -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", INT_DIMS)
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_and_min_along_a_dim_give_values_and_indices(backend, name, dim, keepdim, dtype):
    x, np_values, np_index = distinct(SHAPE, seed=13), getattr(np, name), getattr(np, f"arg{name}")
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    result = getattr(tx, name)(dim, keepdim) if keepdim else getattr(tx, name)(dim=dim)
    values, indices = result  # it unpacks like PyTorch's torch.return_types.max ...
    assert result.values is values and result.indices is indices  # ... and has the names
    assert type(result).__name__ == name and repr(result).startswith(f"{name}(values=tensor(")
    expected_index = np_index(x, axis=dim, keepdims=keepdim)
    assert_close(values, np_values(x, axis=dim, keepdims=keepdim), dtype)
    assert indices.dtype == np.int64 and indices.shape == expected_index.shape
    np.testing.assert_array_equal(indices.numpy(), expected_index)
    assert indices.grad_fn is None and not indices.requires_grad  # outside the graph
    upstream = data(values.shape, seed=14, scale=1.0)
    values.backward(backend.array(upstream.astype(dtype)))
    one_hot = x == np_values(x, axis=dim, keepdims=True)  # distinct values: exactly one per slice
    assert_close(tx.grad, expand(upstream, dim, x.ndim, keepdim) * one_hot, dtype, grad=True)
    by_function = getattr(ops, name)(tx, dim, keepdim)
    np.testing.assert_array_equal(by_function.values.numpy(), values.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["max", "min"])
def test_max_and_min_without_dim_give_the_0d_extreme(backend, name, dtype):
    x = distinct(SHAPE, seed=15)
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = getattr(tx, name)()
    assert isinstance(y, minires.Tensor) and y.shape == ()
    assert_close(y, getattr(np, name)(x), dtype)
    y.backward()
    assert_close(tx.grad, (x == getattr(np, name)(x)).astype(np.float64), dtype, grad=True)
    assert getattr(ops, name)(tx).item() == y.item()


# ---- reductions: amax, amin, var, std over every dim spelling --------------------------------

def var_reference(x, dim, keepdim, correction):
    axes = axes_of(dim, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    d = x - x.mean(axis=axes, keepdims=True)
    var = (d * d).sum(axis=axes, keepdims=keepdim) / (n - correction)
    return var, d, n - correction


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=dim_id)
def test_amax_and_amin_over_every_dim_spelling(backend, dim, keepdim, dtype):
    x = distinct(SHAPE, seed=16)
    for name, np_fn in (("amax", np.max), ("amin", np.min)):
        tx = backend.tensor(x.astype(dtype), requires_grad=True)
        y = getattr(tx, name)(dim, keepdim)
        assert_close(y, np_fn(x, axis=dim, keepdims=keepdim), dtype)
        upstream = data(y.shape, seed=17, scale=1.0)
        y.backward(backend.array(upstream.astype(dtype)))
        one_hot = x == np_fn(x, axis=dim, keepdims=True)
        assert_close(tx.grad, expand(upstream, dim, x.ndim, keepdim) * one_hot, dtype, grad=True)
        numpy_spelling = getattr(tx, name)(axis=dim, keepdims=keepdim)
        np.testing.assert_array_equal(numpy_spelling.numpy(), y.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=dim_id)
def test_var_and_std_over_every_dim_spelling(backend, dim, keepdim, dtype):
    x = data(SHAPE, seed=18)
    for correction in (1, 0, 0.5):  # 1 is the default: the unbiased estimate
        var, d, dof = var_reference(x, dim, keepdim, correction)
        std = np.sqrt(var)
        np.testing.assert_allclose(var, np.var(x, axis=dim, ddof=correction, keepdims=keepdim), rtol=1e-12)
        kwargs = {} if correction == 1 else {"correction": correction}
        for name, expected, derivative in (("var", var, 2 * d / dof),
                                           ("std", std, d / (dof * np.sqrt(var_reference(x, dim, True, correction)[0])))):
            tx = backend.tensor(x.astype(dtype), requires_grad=True)
            y = getattr(tx, name)(dim, keepdim=keepdim, **kwargs)
            assert_close(y, expected, dtype)
            upstream = data(y.shape, seed=19, scale=1.0)
            y.backward(backend.array(upstream.astype(dtype)))
            assert_close(tx.grad, expand(upstream, dim, x.ndim, keepdim) * derivative, dtype, grad=True)
            assert tx.grad.dtype == dtype


def test_var_and_std_take_unbiased_as_pytorch_does(backend):
    x = data((3, 5), seed=20)
    t = backend.tensor(x)
    same = [(t.var(), np.var(x, ddof=1)), (t.var(unbiased=False), np.var(x)), (t.var(False), np.var(x)),
            (t.std(1, True), np.std(x, axis=1, ddof=1)), (t.std(1, False, True), np.std(x, axis=1, keepdims=True)),
            (t.std(0, correction=2), np.std(x, axis=0, ddof=2)), (ops.var(t, (0, 1), correction=0), np.var(x)),
            (ops.std(t, 1, keepdim=True), np.std(x, axis=1, ddof=1, keepdims=True)),
            (t.var(axis=0, keepdims=True), np.var(x, axis=0, ddof=1, keepdims=True))]
    for ours, expected in same:
        assert_close(ours, expected, np.float64)


def test_reductions_gradcheck(backend):
    x, ties_free = data(SHAPE, seed=21), distinct(SHAPE, seed=22)
    cases = [(lambda t: t.var(), x), (lambda t: t.var(1, keepdim=True), x), (lambda t: t.var((0, 2), correction=0), x),
             (lambda t: t.std(), x), (lambda t: t.std(-1), x), (lambda t: t.std((0, 1), keepdim=True, correction=2), x),
             (lambda t: t.max(1).values, ties_free), (lambda t: t.min(-1, keepdim=True).values, ties_free),
             (lambda t: t.max(), ties_free), (lambda t: t.min(), ties_free),
             (lambda t: t.amax((0, 2)), ties_free), (lambda t: t.amin(0, keepdim=True), ties_free)]
    for fn, value in cases:
        backend.gradcheck(fn, [backend.tensor(value, requires_grad=True)])


def test_ties_share_the_gradient_equally(backend):
    """Our rule for every max/min backward, with or without dim (PyTorch's for amax/amin and max()):
    the tied elements split the gradient, so each output element still hands out exactly its own."""
    x = backend.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 4.0]]), requires_grad=True)
    values, indices = x.max(1)
    assert indices.tolist() == [1, 0, 0]  # the first of the tied elements, as in PyTorch
    values.backward(backend.array(np.array([1.0, 6.0, -2.0])))
    np.testing.assert_allclose(backend.numpy(x.grad), [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0], [-2.0, 0.0, 0.0]])
    x.grad = None
    x.min().backward()  # 0.0 once
    np.testing.assert_allclose(backend.numpy(x.grad), [[0, 0, 0], [0, 0, 0], [0, 1, 0]])
    x.grad = None
    x.amin(1).sum().backward()  # the middle row ties three ways
    np.testing.assert_allclose(backend.numpy(x.grad), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])


def test_zero_dim_and_constant_inputs(backend):
    scalar = backend.tensor(np.array(2.5), requires_grad=True)
    for dim in (0, -1):
        for keepdim in (False, True):
            values, indices = scalar.max(dim, keepdim)  # PyTorch: the element, at index 0
            assert values.shape == () and values.item() == 2.5 and indices.shape == () and indices.item() == 0
    assert scalar.amin(0).item() == 2.5 and scalar.amax().item() == 2.5
    constant = backend.tensor(np.full((2, 3), 1.5), requires_grad=True)
    s = constant.std(1)
    s.sum().backward()  # d std / dx is 0/0 here: PyTorch gives 0, so do we
    assert s.tolist() == [0.0, 0.0] and backend.numpy(constant.grad).tolist() == [[0.0] * 3] * 2
    with pytest.warns(RuntimeWarning, match="degrees of freedom"):
        one = backend.tensor(np.array([3.0])).var()  # n = 1, correction 1: 0/0, NaN as in PyTorch
    assert np.isnan(one.item())
    with pytest.warns(RuntimeWarning, match="degrees of freedom"):
        assert backend.tensor(np.array([1.0, 2.0])).std(correction=2).item() == np.inf


# ---- errors ------------------------------------------------------------------------------------

def test_errors_name_the_problem(backend):
    x = backend.tensor(np.zeros((2, 3)), requires_grad=True)
    ints = backend.tensor(np.array([[1, 2], [3, 4]]))
    for fn, name in [(ops.sqrt, "sqrt"), (lambda t: t.std(), "std"), (lambda t: t.var(0), "var")]:
        with pytest.raises(TypeError, match=rf"^{name}: input must be a floating-point tensor, got dtype int64"):
            fn(ints)
    for fn, name in [(x.var, "var"), (x.std, "std"), (x.amax, "amax"), (x.amin, "amin"), (x.max, "max"),
                     (x.min, "min"), (x.sum, "sum"), (x.mean, "mean")]:
        for dim in (2, -3):
            with pytest.raises(IndexError, match=rf"^{name}: dim {dim} is out of range for a tensor with 2 "
                                                 r"dimensions \(expected a dim in \[-2, 1\]\)"):
                fn(dim)
    with pytest.raises(IndexError, match="^var: dim 2 is out of range"):
        x.var((0, 2))
    with pytest.raises(ValueError, match="out of range"):  # also a ValueError, as NumPy's AxisError is
        x.sum(axis=2)
    with pytest.raises(ValueError, match="more than once"):
        x.var((1, -1))
    with pytest.raises(TypeError, match="dim must be an int"):
        x.amax(1.0)
    with pytest.raises(TypeError, match=r"^max: dim must be one int, got \(0, 1\); amax"):
        x.max((0, 1))
    with pytest.raises(TypeError, match="min: keepdim needs a dim"):
        x.min(keepdim=True)
    with pytest.raises(TypeError, match=r"where\(a > b, a, b\)"):
        x.max(x)
    with pytest.raises(RuntimeError, match="^clamp: at least one of 'min' or 'max' must not be None"):
        x.clamp()
    with pytest.raises(TypeError, match="clamp: min must be a number"):
        x.clamp(x)
    with pytest.raises(TypeError, match="where: condition must be a bool tensor"):
        ops.where(x, x, x)
    with pytest.raises(TypeError, match="var: give correction= or unbiased=, not both"):
        x.var(unbiased=True, correction=1)
    with pytest.raises(TypeError, match="unbiased must be True or False"):
        x.std(0, 1)
    with pytest.raises(RuntimeError, match="max: cannot reduce an empty dimension"):
        backend.tensor(np.zeros((0, 3))).max()
    with pytest.raises(TypeError, match="numpy.ndarray, not a minires Tensor"):
        ops.abs(np.zeros(3))


def test_ops_namespace_exports():
    for name in ("abs", "sqrt", "clamp", "where", "max", "min", "amax", "amin", "var", "std"):
        assert name in ops.__all__ and callable(getattr(ops, name))
    assert minires.max is ops.max  # the top-level max is PyTorch's too


# ---- a wrong backward fails these tests -------------------------------------------------------

WRONG_BACKWARDS = {
    "abs": (elementwise.Abs, lambda self, g: g, lambda t: t.abs()),  # forgets the sign
    "sqrt": (elementwise.Sqrt, lambda self, g: g / self.saved_tensors[0], lambda t: (t * t + 0.5).sqrt()),
    "clamp": (elementwise.Clamp, lambda self, g: g, lambda t: t.clamp(-0.5, 0.5)),  # passes everywhere
    "where": (elementwise.Where, lambda self, g: (None, g, g), lambda t: ops.where(t > 0, t, 2 * t)),
    "var": (reduction.Var, lambda self, g: reduction._expand_back(g, self.saved_tensors[0].shape, self.axes,
                                                                  self.keepdims) * self.saved_tensors[0] / self.dof,
            lambda t: t.var(1)),  # drops the 2
    "std": (reduction.Std, lambda self, g: reduction._expand_back(g, self.saved_tensors[0].shape, self.axes,
                                                                  self.keepdims) * self.saved_tensors[0],
            lambda t: t.std(0)),
    "max": (reduction.Max, lambda self, g: reduction._expand_back(g, self.saved_tensors[0].shape, self.axes,
                                                                  self.keepdims) + 0 * self.saved_tensors[0],
            lambda t: t.max(1).values),  # gives the gradient to every element
}


@pytest.mark.parametrize("name", sorted(WRONG_BACKWARDS))
def test_a_wrong_backward_is_caught(backend, monkeypatch, name):
    cls, wrong, fn = WRONG_BACKWARDS[name]
    x = backend.tensor(away_from(distinct((3, 4), seed=23), points=[-0.5, 0.0, 0.5]), requires_grad=True)
    backend.gradcheck(fn, [x])  # right as written ...
    monkeypatch.setattr(cls, "backward", wrong)
    with pytest.raises(minires.GradcheckError):  # ... and caught once broken
        minires.gradcheck(fn, [x])


# ---- against PyTorch (float64) -----------------------------------------------------------------

def _torch_pair(torch, backend, value):
    return backend.tensor(value, requires_grad=True), torch.tensor(value, dtype=torch.float64, requires_grad=True)


def _compare_with_torch(torch, backend, ours_fn, theirs_fn, value, seed=0):
    ours_x, torch_x = _torch_pair(torch, backend, value)
    ours, theirs = ours_fn(ours_x), theirs_fn(torch_x)
    upstream = data(tuple(theirs.shape), seed=seed, scale=1.0)
    ours.backward(backend.array(upstream))
    theirs.backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.numpy(ours_x.grad), torch_x.grad.numpy(), rtol=1e-11, atol=1e-12)


def test_elementwise_match_pytorch_at_the_kinks_too(backend):
    torch = pytest.importorskip("torch")
    x = data((4, 5), seed=24)
    x.flat[:6] = [0.0, -0.5, 0.5, 0.3, -0.2, np.nan]  # the kink of abs, the clamp bounds, a NaN
    pairs = [(lambda t: t.abs(), torch.abs), (lambda t: t.clamp(-0.5, 0.5), lambda t: t.clamp(-0.5, 0.5)),
             (lambda t: t.clamp(max=0.3), lambda t: t.clamp(max=0.3)),
             (lambda t: t.clamp(min=-0.2), lambda t: torch.clamp(t, min=-0.2)),
             (lambda t: t.clamp(0.5, -0.5), lambda t: t.clamp(0.5, -0.5))]
    for k, (ours, theirs) in enumerate(pairs):
        _compare_with_torch(torch, backend, ours, theirs, x, seed=k)
    roots = np.abs(data((3, 4), seed=25))
    roots.flat[:2] = [0.0, -1.0]  # sqrt(0) = 0 with gradient inf; sqrt(-1) = NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        _compare_with_torch(torch, backend, lambda t: t.sqrt(), torch.sqrt, roots)


def test_where_matches_pytorch(backend):
    torch = pytest.importorskip("torch")
    condition = np.random.default_rng(26).random((2, 3, 4)) < 0.5
    a, b = data((3, 1), seed=27), data((4,), seed=28)
    ours_a, torch_a = _torch_pair(torch, backend, a)
    ours_b, torch_b = _torch_pair(torch, backend, b)
    ours = ops.where(backend.tensor(condition), ours_a, ours_b)
    theirs = torch.where(torch.tensor(condition), torch_a, torch_b)
    upstream = data(ours.shape, seed=29, scale=1.0)
    ours.backward(backend.array(upstream))
    theirs.backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(backend.numpy(ours_a.grad), torch_a.grad.numpy(), rtol=1e-11)
    np.testing.assert_allclose(backend.numpy(ours_b.grad), torch_b.grad.numpy(), rtol=1e-11)


@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions_match_pytorch(backend, keepdim):
    torch = pytest.importorskip("torch")
    x, ties_free = data(SHAPE, seed=30), distinct(SHAPE, seed=31)
    cases = []
    for dim in (0, 1, -1, (0, 2), (2, 0, 1)):
        cases.append((x, lambda t, d=dim: t.amax(d, keepdim), lambda t, d=dim: t.amax(d, keepdim)))
        cases.append((x, lambda t, d=dim: t.amin(d, keepdim), lambda t, d=dim: torch.amin(t, d, keepdim)))
        for correction in (None, 0, 1, 2, 0.5):
            kw = {} if correction is None else {"correction": correction}
            cases.append((x, lambda t, d=dim, kw=kw: t.var(d, keepdim=keepdim, **kw),
                          lambda t, d=dim, kw=kw: t.var(d, keepdim=keepdim, **kw)))
            cases.append((x, lambda t, d=dim, kw=kw: t.std(d, keepdim=keepdim, **kw),
                          lambda t, d=dim, kw=kw: torch.std(t, d, keepdim=keepdim, **kw)))
        for unbiased in (True, False):
            cases.append((x, lambda t, d=dim, u=unbiased: t.std(d, u, keepdim),
                          lambda t, d=dim, u=unbiased: t.std(d, u, keepdim)))
    for dim in INT_DIMS:  # values and indices along one dim; no ties, where PyTorch routes by index
        for name in ("max", "min"):
            cases.append((ties_free, lambda t, d=dim, n=name: getattr(t, n)(d, keepdim).values,
                          lambda t, d=dim, n=name: getattr(t, n)(d, keepdim).values))
            ours = getattr(backend.tensor(ties_free), name)(dim, keepdim)
            theirs = getattr(torch.tensor(ties_free), name)(dim, keepdim)
            np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
            assert ours.indices.shape == tuple(theirs.indices.shape)
    if not keepdim:  # over everything: no keepdim in PyTorch's max() / std()
        cases += [(x, lambda t: t.var(), lambda t: t.var()), (x, lambda t: t.std(False), lambda t: t.std(False)),
                  (ties_free, lambda t: t.max(), lambda t: t.max()), (ties_free, lambda t: t.min(), torch.min)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # correction 2 over dim 0 (2 elements): both warn, both give inf
        for k, (value, ours, theirs) in enumerate(cases):
            _compare_with_torch(torch, backend, ours, theirs, value, seed=k)


def test_nan_propagates_as_in_pytorch(backend):
    torch = pytest.importorskip("torch")
    x = data((3, 4), seed=32)
    x[1, 2] = x[2, 0] = np.nan
    pairs = [(lambda t: t.var(0), lambda t: t.var(0)), (lambda t: t.std(1, keepdim=True), lambda t: t.std(1, keepdim=True)),
             (lambda t: t.amin(1), lambda t: t.amin(1))]
    with np.errstate(invalid="ignore"):  # amin's backward: no element equals a NaN minimum, 0/0 (PyTorch's NaN too)
        for ours, theirs in pairs:  # NaN in the same places, values and gradients
            _compare_with_torch(torch, backend, ours, theirs, x)
    for ours, theirs in [(backend.tensor(x).max(1), torch.tensor(x).max(1)), (backend.tensor(x).min(0), torch.tensor(x).min(0))]:
        np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())
        np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())  # the NaN's index
    assert np.isnan(backend.tensor(x).max().item()) and np.isnan(backend.tensor(x).amax((0, 1)).item())


def test_ties_follow_pytorchs_amax_and_max_without_dim(backend):
    torch = pytest.importorskip("torch")
    ties = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for ours, theirs in [(lambda t: t.max(), lambda t: t.max()), (lambda t: t.min(), lambda t: t.min()),
                         (lambda t: t.amax(1), lambda t: t.amax(1)), (lambda t: t.amin(0), lambda t: t.amin(0)),
                         (lambda t: t.amax((0, 1), keepdim=True), lambda t: t.amax((0, 1), keepdim=True))]:
        _compare_with_torch(torch, backend, ours, theirs, ties)
    # max(x, dim) itself: the same values and first indices as PyTorch; PyTorch sends the gradient to
    # the index alone, we split it among the ties (documented in minires.ops.reduction).
    ours, theirs = backend.tensor(ties).max(1), torch.tensor(ties).max(1)
    np.testing.assert_array_equal(ours.indices.numpy(), theirs.indices.numpy())
    np.testing.assert_array_equal(ours.values.numpy(), theirs.values.numpy())


def test_constant_std_and_degenerate_corrections_match_pytorch(backend):
    torch = pytest.importorskip("torch")
    constant = np.full((2, 3), 1.5)
    _compare_with_torch(torch, backend, lambda t: t.std(1), lambda t: t.std(1), constant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn that the degrees of freedom are <= 0
        for correction in (3, 4):
            ours = backend.tensor(np.array([1.0, 2.0, 4.0])).var(correction=correction)
            theirs = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).var(correction=correction)
            assert ours.item() == theirs.item() == np.inf
        assert np.isnan(backend.tensor(np.array([3.0])).std().item()) and torch.tensor([3.0]).std().isnan()
