"""Every basic op: forward against NumPy, backward against central differences (gradcheck,
float64, random inputs with fixed seeds), hand-computed gradients for broadcasting,
repeated indices and ties, error messages, and gradcheck's own ability to fail."""
import numpy as np
import pytest

import minires
from minires import functional as F
from minires.ops.batch_norm import BatchNormFunction


def make(shape, seed, kind="normal", requires_grad=True):
    """A float64 tensor of random values; 'positive' draws from [0.5, 2] (for log, division, powers)."""
    rng = np.random.default_rng(seed)
    if kind == "positive":
        data = rng.uniform(0.5, 2.0, size=shape)
    else:
        data = rng.standard_normal(shape)
    return minires.tensor(data, requires_grad=requires_grad)


# Each case: (minires function, the same computation in NumPy, [(shape, kind), ...] for the inputs).
N, P = "normal", "positive"
CASES = {
    # arithmetic, same shapes
    "add": (lambda a, b: a + b, np.add, [((3, 4), N), ((3, 4), N)]),
    "sub": (lambda a, b: a - b, np.subtract, [((3, 4), N), ((3, 4), N)]),
    "mul": (lambda a, b: a * b, np.multiply, [((3, 4), N), ((3, 4), N)]),
    "div": (lambda a, b: a / b, np.divide, [((3, 4), N), ((3, 4), P)]),
    "neg": (lambda a: -a, np.negative, [((3, 4), N)]),
    "neg_fn": (minires.neg, np.negative, [((2, 3), N)]),
    "add_fn": (minires.add, np.add, [((2, 3), N), ((2, 3), N)]),
    "sub_fn": (minires.sub, np.subtract, [((2, 3), N), ((2, 3), N)]),
    "mul_fn": (minires.mul, np.multiply, [((2, 3), N), ((2, 3), N)]),
    "div_fn": (minires.div, np.divide, [((2, 3), N), ((2, 3), P)]),
    # arithmetic with broadcasting (3,1) <-> (2,3,4): backward must sum over the broadcast axes
    "add_bcast_small_left": (lambda a, b: a + b, np.add, [((3, 1), N), ((2, 3, 4), N)]),
    "add_bcast_small_right": (lambda a, b: a + b, np.add, [((2, 3, 4), N), ((3, 1), N)]),
    "sub_bcast_small_left": (lambda a, b: a - b, np.subtract, [((3, 1), N), ((2, 3, 4), N)]),
    "sub_bcast_small_right": (lambda a, b: a - b, np.subtract, [((2, 3, 4), N), ((3, 1), N)]),
    "mul_bcast_small_left": (lambda a, b: a * b, np.multiply, [((3, 1), N), ((2, 3, 4), N)]),
    "mul_bcast_small_right": (lambda a, b: a * b, np.multiply, [((2, 3, 4), N), ((3, 1), N)]),
    "div_bcast_small_left": (lambda a, b: a / b, np.divide, [((3, 1), N), ((2, 3, 4), P)]),
    "div_bcast_small_right": (lambda a, b: a / b, np.divide, [((2, 3, 4), N), ((3, 1), P)]),
    "mul_bcast_both": (lambda a, b: a * b, np.multiply, [((2, 1, 4), N), ((3, 1), N)]),
    "add_bcast_row": (lambda a, b: a + b, np.add, [((3, 4), N), ((4,), N)]),
    # powers
    "pow_int": (lambda a: a ** 3, lambda a: a ** 3, [((3, 4), N)]),
    "pow_two": (lambda a: a ** 2, lambda a: a ** 2, [((3, 4), N)]),
    "pow_frac": (lambda a: a ** 2.5, lambda a: a ** 2.5, [((3, 4), P)]),
    "pow_neg": (lambda a: a ** -1.5, lambda a: a ** -1.5, [((3, 4), P)]),
    "pow_sqrt": (lambda a: minires.pow(a, 0.5), np.sqrt, [((3, 4), P)]),
    "pow_tensor": (lambda a, b: a ** b, np.power, [((3, 4), P), ((3, 4), N)]),
    "pow_tensor_fn": (minires.pow, np.power, [((3, 4), P), ((3, 4), N)]),
    "pow_tensor_bcast": (lambda a, b: a ** b, np.power, [((2, 3, 4), P), ((3, 1), N)]),
    "pow_number_base": (lambda b: minires.pow(2.0, b), lambda b: 2.0 ** b, [((3, 4), N)]),
    # exp / log
    "exp": (lambda a: a.exp(), np.exp, [((3, 4), N)]),
    "exp_fn": (minires.exp, np.exp, [((2, 3, 2), N)]),
    "log": (lambda a: a.log(), np.log, [((3, 4), P)]),
    "log_fn": (minires.log, np.log, [((2, 3, 2), P)]),
    # matmul
    "matmul_2d": (lambda a, b: a @ b, np.matmul, [((3, 4), N), ((4, 5), N)]),
    "matmul_fn": (minires.matmul, np.matmul, [((3, 4), N), ((4, 2), N)]),
    "matmul_batched": (lambda a, b: a @ b, np.matmul, [((2, 3, 4), N), ((2, 4, 5), N)]),
    "matmul_batched_bcast_right": (lambda a, b: a @ b, np.matmul, [((2, 3, 4), N), ((4, 5), N)]),
    "matmul_batched_bcast_left": (lambda a, b: a @ b, np.matmul, [((3, 4), N), ((2, 4, 5), N)]),
    "matmul_batched_bcast_one": (lambda a, b: a @ b, np.matmul, [((1, 3, 4), N), ((2, 4, 5), N)]),
    "matmul_4d_bcast": (lambda a, b: a @ b, np.matmul, [((2, 1, 3, 4), N), ((3, 4, 2), N)]),
    "matmul_vec_mat": (lambda a, b: a @ b, np.matmul, [((4,), N), ((4, 5), N)]),
    "matmul_mat_vec": (lambda a, b: a @ b, np.matmul, [((3, 4), N), ((4,), N)]),
    "matmul_vec_vec": (lambda a, b: a @ b, np.matmul, [((4,), N), ((4,), N)]),
    "matmul_vec_batched": (lambda a, b: a @ b, np.matmul, [((4,), N), ((2, 4, 5), N)]),
    "matmul_batched_vec": (lambda a, b: a @ b, np.matmul, [((2, 3, 4), N), ((4,), N)]),
    # shape ops
    "reshape": (lambda a: a.reshape(6, 4), lambda a: a.reshape(6, 4), [((2, 3, 4), N)]),
    "reshape_tuple": (lambda a: a.reshape((4, -1)), lambda a: a.reshape(4, -1), [((2, 3, 4), N)]),
    "reshape_fn": (lambda a: minires.reshape(a, (-1,)), lambda a: a.reshape(-1), [((2, 3, 4), N)]),
    "transpose_T": (lambda a: a.T, lambda a: a.T, [((3, 4), N)]),
    "T": (lambda a: a.T, lambda a: a.transpose(), [((2, 3, 4), N)]),
    "permute_axes": (lambda a: a.permute(1, 0, 2), lambda a: a.transpose(1, 0, 2), [((2, 3, 4), N)]),
    "permute_cycle": (lambda a: a.permute((2, 0, 1)), lambda a: a.transpose(2, 0, 1), [((2, 3, 4), N)]),
    "transpose_swaps_two": (lambda a: a.transpose(0, 2), lambda a: a.swapaxes(0, 2), [((2, 3, 4), N)]),
    "transpose_negative": (lambda a: minires.transpose(a, -1, 0), lambda a: a.swapaxes(2, 0), [((2, 3, 4), N)]),
    "permute_negative": (lambda a: minires.permute(a, (-1, 0, 1)), lambda a: a.transpose(2, 0, 1),
                           [((2, 3, 4), N)]),
    "flatten": (lambda a: a.flatten(), lambda a: a.reshape(-1), [((2, 3, 4), N)]),
    "flatten_start1": (lambda a: minires.flatten(a, 1), lambda a: a.reshape(2, -1), [((2, 3, 4), N)]),
    "flatten_0_1": (lambda a: a.flatten(0, 1), lambda a: a.reshape(6, 4), [((2, 3, 4), N)]),
    # indexing
    "getitem_slice": (lambda a: a[1:3], lambda a: a[1:3], [((4, 5), N)]),
    "getitem_slices_step": (lambda a: a[::2, 1::2], lambda a: a[::2, 1::2], [((4, 5), N)]),
    "getitem_reverse": (lambda a: a[::-1, 2], lambda a: a[::-1, 2], [((4, 5), N)]),
    "getitem_int": (lambda a: a[2], lambda a: a[2], [((4, 5), N)]),
    "getitem_negative_int": (lambda a: a[-1, -2], lambda a: a[-1, -2], [((4, 5), N)]),
    "getitem_ellipsis_newaxis": (lambda a: a[..., None, 1], lambda a: a[..., None, 1], [((2, 3, 4), N)]),
    "getitem_int_array_repeated": (lambda a: a[[0, 0, 2, 0]], lambda a: a[[0, 0, 2, 0]], [((4, 5), N)]),
    "getitem_np_array_repeated": (lambda a: a[np.array([3, 1, 3])], lambda a: a[np.array([3, 1, 3])],
                                  [((4, 5), N)]),
    "getitem_pairs_repeated": (lambda a: a[[0, 0, 3], [1, 1, 4]], lambda a: a[[0, 0, 3], [1, 1, 4]],
                               [((4, 5), N)]),
    "getitem_slice_and_array": (lambda a: a[:, [2, 2, 0]], lambda a: a[:, [2, 2, 0]], [((4, 5), N)]),
    "getitem_bool_mask": (lambda a: a[np.array([True, False, True, True])],
                          lambda a: a[np.array([True, False, True, True])], [((4, 5), N)]),
    # concatenation and padding
    "concat_axis0": (lambda a, b, c: minires.concatenate([a, b, c], axis=0),
                     lambda a, b, c: np.concatenate([a, b, c], axis=0), [((2, 3), N), ((1, 3), N), ((3, 3), N)]),
    "concat_axis1": (lambda a, b, c: minires.concatenate([a, b, c], axis=1),
                     lambda a, b, c: np.concatenate([a, b, c], axis=1), [((2, 3), N), ((2, 1), N), ((2, 4), N)]),
    "concat_axis_neg": (lambda a, b: minires.cat([a, b], dim=-1), lambda a, b: np.concatenate([a, b], axis=-1),
                        [((2, 3, 2), N), ((2, 3, 3), N)]),
    "concat_same_tensor_twice": (lambda a: minires.concatenate([a, a], axis=0),
                                 lambda a: np.concatenate([a, a], axis=0), [((2, 3), N)]),
    "pad_two_axes": (lambda a: F.pad(a, (0, 1, 1, 2)), lambda a: np.pad(a, ((1, 2), (0, 1))),
                     [((3, 4), N)]),
    "pad_last_axis_only": (lambda a: F.pad(a, (1, 1)), lambda a: np.pad(a, ((0, 0), (1, 1))), [((2, 3), N)]),
    "pad_value": (lambda a: F.pad(a, (2, 0, 0, 1), value=-3.0),
                  lambda a: np.pad(a, ((0, 1), (2, 0)), constant_values=-3.0), [((2, 3), N)]),
    "pad_torch_style_2d": (lambda a: F.pad(a, (1, 2, 0, 1)), lambda a: np.pad(a, ((0, 1), (1, 2))),
                           [((3, 4), N)]),
    "pad_torch_style_4d": (lambda a: F.pad(a, (2, 0, 1, 1)),
                           lambda a: np.pad(a, ((0, 0), (0, 0), (1, 1), (2, 0))), [((2, 2, 3, 3), N)]),
    "pad_torch_style_last_axis_only": (lambda a: F.pad(a, (0, 3)), lambda a: np.pad(a, ((0, 0), (0, 3))),
                                       [((2, 3), N)]),
}

# Reductions: every axis spelling, with and without keepdims.
AXES = [None, 0, 1, 2, -1, (0, 2), (-1, 0), (0, 1, 2)]
for _name, _np_fn in (("sum", np.sum), ("mean", np.mean), ("amax", np.max), ("amin", np.min)):
    for _axis in AXES:
        for _keep in (False, True):
            CASES[f"{_name}_axis{_axis}_keep{_keep}"] = (
                (lambda a, n=_name, ax=_axis, k=_keep: getattr(a, n)(axis=ax, keepdims=k)),
                (lambda a, f=_np_fn, ax=_axis, k=_keep: f(a, axis=ax, keepdims=k)),
                [((2, 3, 4), N)],
            )
CASES["sum_fn"] = (lambda a: minires.sum(a, 1), lambda a: a.sum(1), [((3, 4), N)])
CASES["mean_fn"] = (lambda a: minires.mean(a, (0, 1), True), lambda a: a.mean((0, 1), keepdims=True), [((3, 4), N)])
CASES["max_fn"] = (lambda a: minires.max(a, -1).values, lambda a: a.max(-1), [((3, 4), N)])
CASES["max_all"] = (lambda a: minires.max(a), np.max, [((3, 4), N)])
CASES["sum_1d"] = (lambda a: a.sum(), np.sum, [((5,), N)])


def _inputs(name):
    specs = CASES[name][2]
    seed = sum(map(ord, name))  # fixed, and different per case
    return [make(shape, seed + k, kind) for k, (shape, kind) in enumerate(specs)]


@pytest.mark.parametrize("name", list(CASES))
def test_forward_matches_numpy(name):
    fn, np_fn, _ = CASES[name]
    inputs = _inputs(name)
    out = fn(*inputs)
    expected = np.asarray(np_fn(*[t.numpy() for t in inputs]))
    assert isinstance(out, minires.Tensor)
    assert out.shape == expected.shape
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name):
    fn, _, _ = CASES[name]
    inputs = _inputs(name)
    result = minires.gradcheck(fn, inputs)
    assert result.passed
    assert result.comparisons >= sum(min(t.numel(), 48) for t in inputs)


@pytest.mark.parametrize("name", ["add", "mul", "matmul_2d", "exp", "sum_axis1_keepFalse", "getitem_int"])
def test_float32_forward(name):
    fn, np_fn, _ = CASES[name]
    inputs = [minires.tensor(t.numpy().astype(np.float32), requires_grad=True) for t in _inputs(name)]
    out = fn(*inputs)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), np_fn(*[t.numpy() for t in inputs]), rtol=1e-5, atol=1e-6)


# ---- broadcasting: hand-computed un-broadcast gradients ------------------------------------------

@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("small_first", [True, False])
def test_broadcast_backward_sums_over_copies(op, small_first):
    rng = np.random.default_rng(7)
    sv = rng.uniform(0.5, 2.0, size=(3, 1))
    bv = rng.uniform(0.5, 2.0, size=(2, 3, 4))
    s = minires.tensor(sv, requires_grad=True)
    b = minires.tensor(bv, requires_grad=True)
    g = rng.standard_normal((2, 3, 4))
    lhs, rhs = (s, b) if small_first else (b, s)
    lv, rv = (sv, bv) if small_first else (bv, sv)
    y = {"add": lambda: lhs + rhs, "sub": lambda: lhs - rhs, "mul": lambda: lhs * rhs, "div": lambda: lhs / rhs}[op]()
    assert y.shape == (2, 3, 4)
    y.backward(g)
    # Full-shape partial derivatives, then summed over the broadcast axes (0 and 2) by hand.
    d_lhs = {"add": np.ones_like(g), "sub": np.ones_like(g), "mul": rv * np.ones_like(g),
             "div": 1.0 / rv * np.ones_like(g)}[op] * g
    d_rhs = {"add": np.ones_like(g), "sub": -np.ones_like(g), "mul": lv * np.ones_like(g),
             "div": -lv / rv ** 2 * np.ones_like(g)}[op] * g
    d_small, d_big = (d_lhs, d_rhs) if small_first else (d_rhs, d_lhs)
    assert s.grad.shape == (3, 1)
    assert b.grad.shape == (2, 3, 4)
    np.testing.assert_allclose(s.grad, d_small.sum(axis=(0, 2)).reshape(3, 1), rtol=1e-12)
    np.testing.assert_allclose(b.grad, d_big, rtol=1e-12)


def test_broadcast_add_gradient_counts_copies():
    s = minires.tensor(np.zeros((3, 1)), requires_grad=True)
    b = minires.tensor(np.zeros((2, 3, 4)), requires_grad=True)
    (s + b).sum().backward()
    np.testing.assert_array_equal(s.grad, np.full((3, 1), 8.0))  # each element copied 2 * 4 times
    np.testing.assert_array_equal(b.grad, np.ones((2, 3, 4)))


def test_matmul_batched_broadcast_gradient_sums_batch():
    a = minires.tensor(np.ones((2, 3, 4)), requires_grad=True)
    w = minires.tensor(np.ones((4, 5)), requires_grad=True)
    (a @ w).sum().backward()
    assert w.grad.shape == (4, 5)
    np.testing.assert_array_equal(w.grad, np.full((4, 5), 6.0))  # 2 batches * 3 rows
    np.testing.assert_array_equal(a.grad, np.full((2, 3, 4), 5.0))


def test_matmul_vector_shapes():
    v = minires.tensor(np.arange(4.0), requires_grad=True)
    m = minires.tensor(np.ones((4, 5)), requires_grad=True)
    assert (v @ m).shape == (5,)
    assert (m.T @ v).shape == (5,)
    dot = v @ v
    assert dot.shape == ()
    assert dot.item() == 14.0
    dot.backward()
    np.testing.assert_array_equal(v.grad, 2 * np.arange(4.0))


# ---- indexing: repeated indices add up -----------------------------------------------------------

def test_getitem_repeated_indices_accumulate():
    x = minires.tensor(np.arange(10.0).reshape(5, 2), requires_grad=True)
    y = x[[0, 0, 3, 0, 4]]
    y.backward(np.ones((5, 2)))
    np.testing.assert_array_equal(x.grad[:, 0], [3.0, 0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(x.grad[:, 1], [3.0, 0.0, 0.0, 1.0, 1.0])


def test_getitem_repeated_pairs_accumulate_weighted():
    x = minires.tensor(np.zeros((3, 3)), requires_grad=True)
    y = x[[1, 1, 2], [0, 0, 2]]
    y.backward(np.array([2.0, 5.0, -1.0]))
    expected = np.zeros((3, 3))
    expected[1, 0] = 7.0
    expected[2, 2] = -1.0
    np.testing.assert_array_equal(x.grad, expected)


def test_getitem_with_tensor_index():
    x = minires.tensor(np.arange(4.0), requires_grad=True)
    idx = minires.tensor([1, 1, 3])
    y = x[idx]
    np.testing.assert_array_equal(y.numpy(), [1.0, 1.0, 3.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 0.0, 1.0])


# ---- max with ties ---------------------------------------------------------------------------------

def test_max_ties_share_gradient_axis_none():
    x = minires.tensor(np.array([[3.0, 1.0], [3.0, 3.0]]), requires_grad=True)
    y = x.max()
    assert y.item() == 3.0
    y.backward()
    np.testing.assert_allclose(x.grad, [[1 / 3, 0.0], [1 / 3, 1 / 3]])


def test_max_ties_share_gradient_per_row():
    x = minires.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 4.0]]), requires_grad=True)
    y = x.amax(axis=1)
    np.testing.assert_array_equal(y.numpy(), [3.0, 2.0, 5.0])
    y.backward(np.array([1.0, 6.0, -2.0]))
    np.testing.assert_allclose(x.grad, [[0.0, 0.5, 0.5], [2.0, 2.0, 2.0], [-2.0, 0.0, 0.0]])


def test_max_ties_share_gradient_keepdims_axis0():
    x = minires.tensor(np.array([[4.0, 1.0], [4.0, 2.0], [0.0, 2.0]]), requires_grad=True)
    y = x.amax(axis=0, keepdims=True)
    assert y.shape == (1, 2)
    y.backward(np.array([[2.0, 4.0]]))
    np.testing.assert_allclose(x.grad, [[1.0, 0.0], [1.0, 2.0], [0.0, 2.0]])


def test_max_tie_total_gradient_is_conserved():
    x = minires.tensor(np.full((2, 3, 4), 1.5), requires_grad=True)
    x.amax(axis=(0, 2)).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3, 4), 1 / 8))
    np.testing.assert_allclose(x.grad.sum(), 3.0)  # one unit per output element


# ---- concatenate / pad backward by hand -----------------------------------------------------------

def test_concatenate_backward_splits_gradient():
    a = minires.tensor(np.zeros((2, 1)), requires_grad=True)
    b = minires.tensor(np.zeros((2, 2)), requires_grad=True)
    c = minires.tensor(np.zeros((2, 1)))  # does not need a gradient
    y = minires.concatenate([a, b, c], axis=1)
    g = np.arange(8.0).reshape(2, 4)
    y.backward(g)
    np.testing.assert_array_equal(a.grad, g[:, :1])
    np.testing.assert_array_equal(b.grad, g[:, 1:3])
    assert c.grad is None


def test_pad_backward_crops():
    x = minires.tensor(np.zeros((2, 3)), requires_grad=True)
    y = F.pad(x, (0, 1, 1, 2))
    assert y.shape == (5, 4)
    g = np.arange(20.0).reshape(5, 4)
    y.backward(g)
    np.testing.assert_array_equal(x.grad, g[1:3, 0:3])


def test_functional_pad_order_is_last_axis_first():
    x = minires.tensor(np.ones((2, 3)), requires_grad=True)
    y = F.pad(x, (1, 2, 3, 0))  # left 1, right 2, top 3, bottom 0
    assert y.shape == (5, 6)
    np.testing.assert_array_equal(y.numpy(), np.pad(np.ones((2, 3)), ((3, 0), (1, 2))))


# ---- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (5, 6)), ((2, 3, 4), (2, 5, 6)), ((3, 4), (3, 4))])
def test_matmul_mismatch_names_shapes(a_shape, b_shape):
    a = make(a_shape, 0)
    b = make(b_shape, 1)
    with pytest.raises(ValueError) as info:
        a @ b
    message = str(info.value)
    assert str(a_shape) in message
    assert str(b_shape) in message


def test_matmul_vector_mismatch_raises():
    with pytest.raises(ValueError):
        make((3,), 0) @ make((4, 5), 1)


@pytest.mark.parametrize("shape", [(4, 2), (5,), (-1, 4, 4)])
def test_bad_reshape_raises_value_error(shape):
    x = make((2, 3), 0)
    with pytest.raises(ValueError) as info:
        x.reshape(shape)
    assert "(2, 3)" in str(info.value)


def test_bad_transpose_axes_raise():
    with pytest.raises(ValueError, match="not a permutation"):
        make((2, 3, 4), 0).permute(0, 0, 1)
    with pytest.raises(ValueError, match="permute"):
        make((2, 3, 4), 0).transpose(0, 3)
    with pytest.raises(TypeError):  # NumPy's transpose(axes) habit: PyTorch's transpose takes two dims
        make((2, 3, 4), 0).transpose(2, 0, 1)


def test_reduction_axis_out_of_range_raises():
    with pytest.raises(ValueError):
        make((2, 3), 0).sum(axis=2)


def test_negative_pad_raises():
    with pytest.raises(ValueError):
        F.pad(make((2, 3), 0), (0, 0, 1, -1))
    with pytest.raises(ValueError):
        F.pad(make((2, 3), 0), (1, 2, 3))  # odd length


# ---- gradcheck can fail ---------------------------------------------------------------------------

class WrongSquare(minires.Function):
    """y = x^2 with a backward that forgets the factor 2."""

    def forward(self, x):
        self.save_for_backward(x)
        return x * x

    def backward(self, grad):
        (x,) = self.saved_tensors
        return grad * x  # should be 2 * grad * x


class WrongSecondInputMul(minires.Function):
    """y = a * b, correct for a, wrong sign for b."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, grad):
        a, b = self.saved_tensors
        return grad * b, -grad * a


def test_gradcheck_catches_wrong_backward():
    x = make((3, 4), 11)
    with pytest.raises(minires.GradcheckError) as info:
        minires.gradcheck(lambda t: WrongSquare()(t), [x])
    message = str(info.value)
    assert "worst relative error 5.000e-01" in message  # |x - 2x| / |2x| = 1/2 exactly
    assert "input 0" in message
    assert "analytic" in message and "numerical" in message


def test_gradcheck_result_without_raising():
    x = make((2, 3), 12)
    result = minires.gradcheck(lambda t: WrongSquare()(t), [x], raise_exception=False)
    assert not result.passed
    assert result.max_error == pytest.approx(0.5, rel=1e-6)
    assert "input 0" in result.where
    assert "FAILED" in repr(result)


def test_gradcheck_names_the_wrong_input():
    a = make((2, 3), 13)
    b = make((2, 3), 14)
    with pytest.raises(minires.GradcheckError) as info:
        minires.gradcheck(lambda a, b: WrongSecondInputMul()(a, b), [a, b])
    message = str(info.value)
    assert "input 1" in message
    assert "worst relative error 2.000e+00" in message  # |(-g a) - g a| / |g a| = 2


def test_gradcheck_catches_wrong_backward_on_large_tensor():
    x = make((10, 12), 15)  # more than max_elements: sampled elements + random directions
    with pytest.raises(minires.GradcheckError):
        minires.gradcheck(lambda t: WrongSquare()(t), [x])


def test_gradcheck_restores_grads_and_data():
    x = make((2, 3), 16)
    before = x.numpy().copy()
    x.grad = minires.full((2, 3), 9.0, dtype=np.float64)
    minires.gradcheck(lambda t: (t * t).sum(), [x])
    np.testing.assert_array_equal(x.numpy(), before)
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 9.0))


def test_gradcheck_requires_float64():
    x = minires.tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        minires.gradcheck(lambda t: t * t, [x])


def test_gradcheck_needs_something_to_check():
    x = make((2, 2), 0, requires_grad=False)
    with pytest.raises(ValueError):
        minires.gradcheck(lambda t: t * t, [x])


# ---- why the upstream gradient must be random: batch norm -----------------------------------------

class ZeroInputGradBatchNorm(BatchNormFunction):
    """The real batch-norm forward, but a backward that claims dL/dx = 0."""

    def backward(self, grad):
        grad_x, grad_gamma, grad_beta = super().backward(grad)
        return np.zeros_like(grad_x), grad_gamma, grad_beta


def _bn_inputs():
    rng = np.random.default_rng(21)
    x = minires.tensor(rng.standard_normal((6, 3)) * 2.0 + 1.0, requires_grad=True)
    weight = minires.tensor(rng.uniform(0.5, 1.5, size=3), requires_grad=True)
    bias = minires.tensor(rng.standard_normal(3), requires_grad=True)
    return x, weight, bias


def broken_bn(x, weight, bias):
    return ZeroInputGradBatchNorm(None, None, True, 0.1, 1e-5)(x, weight, bias)


def real_bn(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True)


def test_broken_batch_norm_has_the_same_forward():
    x, w, b = _bn_inputs()
    np.testing.assert_array_equal(broken_bn(x, w, b).numpy(), real_bn(x, w, b).numpy())


def test_all_ones_upstream_cannot_see_the_broken_batch_norm():
    x, w, b = _bn_inputs()
    # sum(y) = N * sum(bias) whatever x is: each channel of x_hat sums to zero.
    eps = 1e-5
    data = x.data
    numeric = np.zeros_like(data)
    with minires.no_grad():
        for i in np.ndindex(data.shape):
            original = data[i]
            data[i] = original + eps
            plus = real_bn(x, w, b).numpy().sum()
            data[i] = original - eps
            minus = real_bn(x, w, b).numpy().sum()
            data[i] = original
            numeric[i] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(numeric, 0.0, atol=1e-6)
    np.testing.assert_allclose(real_bn(x, w, b).numpy().sum(), 6 * b.numpy().sum(), rtol=1e-10)

    # With an all-ones upstream gradient the broken backward (zeros) agrees with the numbers ...
    broken_bn(x, w, b).backward(np.ones((6, 3)))
    np.testing.assert_allclose(x.grad, numeric, atol=1e-6)
    # ... and so does the real one: the true gradient of sum(y) is zero.
    x.zero_grad()
    real_bn(x, w, b).backward(np.ones((6, 3)))
    np.testing.assert_allclose(x.grad, 0.0, atol=1e-10)


def test_random_upstream_gradcheck_catches_the_broken_batch_norm():
    x, w, b = _bn_inputs()
    with pytest.raises(minires.GradcheckError) as info:
        minires.gradcheck(broken_bn, [x, w, b])
    assert "input 0" in str(info.value)  # the wrong gradient is x's
    # The real batch norm passes the same check, for x, weight and bias.
    x, w, b = _bn_inputs()
    assert minires.gradcheck(real_bn, [x, w, b]).passed
