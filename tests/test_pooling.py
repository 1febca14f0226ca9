"""max_pool2d, avg_pool2d and global_avg_pool2d on every backend: output and gradient against the
loop reference (max-pool inputs all distinct, so no window has a tie), how ties, padding and NaN
are treated, gradcheck, the nn pooling layers, and errors. PyTorch is a second oracle (NumPy path).
"""
import functools

import numpy as np
import pytest

import minires
from minires import nn
from minires.backends.cuda import pooling as pooling_kernels
import minires.functional as F

from backend_tools import assert_close, cases_on_backends, float32_exact, only_on
import reference as ref

# (N, C, H, W, kernel_size, stride, padding); stride None means "= kernel_size"
KERNEL_CASES = [
    (2, 3, 7, 9, 3, 2, 1),                  # ResNet stem pooling, odd non-square image
    (1, 2, 6, 8, 2, 2, 0),                  # batch 1, the classic 2x2 / 2
    (2, 3, 9, 7, 3, 1, 1),                  # overlapping windows; 378 outputs and inputs (> 256 threads)
    (1, 2, 7, 6, (2, 3), (2, 1), 1),        # non-square kernel, per-axis stride
    (1, 2, 7, 7, 2, 3, 1),                  # stride > kernel: some pixels are in no window
    (2, 1, 5, 5, 5, 5, 0),                  # one window covers the image
    (1, 3, 5, 4, 1, 2, 0),                  # 1x1 kernel, stride 2: plain subsampling
]
MORE_CASES = [
    (2, 3, 4, 4, 2, None, 0),
    (2, 3, 5, 5, 2, 2, 0),                  # odd size: last row/column dropped
    (2, 3, 5, 5, 3, 2, 1),
    (2, 3, 5, 5, 3, 1, 1),                  # overlapping windows, "same" size
    (1, 5, 7, 5, 3, 2, 0),                  # batch 1, 5 channels, 7x5
    (1, 3, 7, 5, 3, 2, 1),
    (2, 3, 5, 5, 1, 1, 0),                  # 1x1 kernel: identity
    (2, 3, 7, 5, (2, 3), 1, 0),             # non-square kernel
    (2, 3, 7, 5, (2, 3), (2, 1), (1, 1)),
    (1, 3, 5, 5, 5, None, 0),               # one window covers the image
    (1, 3, 7, 5, 1, 2, 0),                  # 1x1 kernel, stride 2
    (2, 3, 7, 7, 2, 3, 1),                  # stride larger than the kernel: gaps between windows
]
CASES = KERNEL_CASES + MORE_CASES
POOLS = {"max": F.max_pool2d, "avg": F.avg_pool2d}


def pair_id(value):
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def case_id(case):
    N, C, H, W, k, s, p = case
    return f"N{N}-C{C}-{H}x{W}-k{pair_id(k)}-s{pair_id(s)}-p{pair_id(p)}"


def window(case):
    return dict(kernel_size=case[4], stride=case[5], padding=case[6])


def distinct_values(shape, seed=0):
    """A random permutation of 0, 0.1, 0.2, ... shifted to straddle zero (exact in float32):
    every value differs from every other, so no window has a tie."""
    n = int(np.prod(shape))
    return float32_exact((np.random.default_rng(seed).permutation(n) * 0.1 - 0.05 * n).reshape(shape))


def output_shape(case):
    N, C, H, W, k, s, p = case
    (kh, kw), (ph, pw) = ref._pair(k), ref._pair(p)
    sh, sw = ref._pair(k if s is None else s)
    return N, C, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1


@functools.lru_cache(maxsize=None)
def case_data(case, pool):
    """x, an upstream gradient, and the loop reference's output and gradient."""
    x = distinct_values(case[:4])
    upstream = float32_exact(np.random.default_rng(1).standard_normal(output_shape(case)))
    if pool == "max":
        y, grad = ref.max_pool2d(x, **window(case)), ref.max_pool2d_backward(x, upstream, **window(case))
    else:
        y, grad = ref.avg_pool2d(x, **window(case)), ref.avg_pool2d_backward(x.shape, upstream, **window(case))
    return x, upstream, y, grad


def pool_and_grad(backend, pool, x, upstream, **kwargs):
    """``pool`` forward and backward on the backend: (y, dL/dx) as tensor and array."""
    tx = backend.tensor(x, requires_grad=True)
    y = pool(tx, **kwargs)
    y.backward(backend.array(upstream))
    return y, tx.grad


# ---- max and average pooling ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", sorted(POOLS))
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_pool_output_and_gradient_match_the_loop_reference(backend, case, pool, dtype):
    x, upstream, expected_y, expected_grad = case_data(case, pool)
    y, grad = pool_and_grad(backend, POOLS[pool], x.astype(dtype), upstream.astype(dtype), **window(case))
    assert_close(y, expected_y, dtype)
    if pool == "max":  # a max picks one of the inputs: exactly equal
        np.testing.assert_array_equal(y.numpy(), expected_y.astype(dtype))
    assert_close(grad, expected_grad, dtype, grad=True)


def test_max_pool2d_gradient_goes_to_the_winner_by_hand(backend):
    x = np.array([[[[1.0, 5.0, 2.0, 0.0],
                    [3.0, 4.0, 9.0, 8.0],
                    [0.5, 0.1, 0.2, 0.3],
                    [0.4, 7.0, 0.6, 0.7]]]])
    y, grad = pool_and_grad(backend, F.max_pool2d, x, np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), kernel_size=2)
    np.testing.assert_array_equal(y.numpy(), [[[[5.0, 9.0], [7.0, 0.7]]]])
    expected = np.zeros_like(x)
    expected[0, 0, 0, 1], expected[0, 0, 1, 2], expected[0, 0, 3, 1], expected[0, 0, 3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(backend.numpy(grad), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [KERNEL_CASES[0], KERNEL_CASES[2], KERNEL_CASES[3]], ids=case_id)
def test_max_pool_ties_go_to_the_first_window_position(backend, case, dtype):
    """Values from {0, 1, 2} tie all the time (and one image is constant): each output's gradient
    goes to one pixel, the first holding the maximum in row-major window order (as in PyTorch)."""
    x = np.random.default_rng(2).integers(0, 3, case[:4]).astype(np.float64)
    x[0] = 1.0
    upstream = float32_exact(np.random.default_rng(1).standard_normal(output_shape(case)))
    y, grad = pool_and_grad(backend, F.max_pool2d, x.astype(dtype), upstream.astype(dtype), **window(case))
    np.testing.assert_array_equal(y.numpy(), ref.max_pool2d(x, **window(case)).astype(dtype))
    assert_close(grad, ref.max_pool2d_backward(x, upstream, **window(case)), dtype, grad=True)


def test_max_pool_tie_goes_to_the_top_left_of_each_window(backend):
    _, grad = pool_and_grad(backend, F.max_pool2d, np.ones((1, 1, 4, 4)), np.array([[[[1.0, 2.0], [3.0, 4.0]]]]),
                            kernel_size=2)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(backend.numpy(grad)[0, 0], expected)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_tie_routes_each_gradient_to_exactly_one_input(backend, stride):
    """With a constant input every window is one big tie; each output's gradient must still go
    to a single pixel, so the total gradient is conserved and never doubled."""
    G = np.random.default_rng(2).uniform(1, 2, (1, 2, 5 if stride == 1 else 3, 5 if stride == 1 else 3))
    _, grad = pool_and_grad(backend, F.max_pool2d, np.ones((1, 2, 5, 5)), G, kernel_size=3, stride=stride, padding=1)
    np.testing.assert_allclose(backend.numpy(grad).sum(axis=(2, 3)), G.sum(axis=(2, 3)), rtol=1e-12)


def test_max_pool_padding_is_minus_infinity_not_zero(backend):
    """All inputs below -1: a max pool that let the padding (or a starting value of 0) win
    would output 0 at the border."""
    x = -1.0 - np.random.default_rng(3).uniform(size=(1, 2, 5, 6))
    y = F.max_pool2d(backend.tensor(x), 3, stride=2, padding=1).numpy()
    assert (y < -1.0).all()
    np.testing.assert_array_equal(y, ref.max_pool2d(x, 3, stride=2, padding=1))


def test_max_pool_propagates_nan(backend):
    """An output whose window holds a NaN is NaN (as in PyTorch); the others are unaffected."""
    x = distinct_values((1, 1, 6, 6))
    x[0, 0, 1, 4] = x[0, 0, 5, 0] = np.nan
    y = F.max_pool2d(backend.tensor(x), 3, stride=2, padding=1).numpy()
    sees_nan = ref.max_pool2d(np.isnan(x).astype(np.float64), 3, stride=2, padding=1) > 0
    assert sees_nan.sum() == 3
    np.testing.assert_array_equal(np.isnan(y), sees_nan)
    np.testing.assert_array_equal(y[~sees_nan], ref.max_pool2d(np.nan_to_num(x, nan=-np.inf), 3, 2, 1)[~sees_nan])


def test_avg_pool_counts_padding_as_zeros(backend):
    """Corner window of a 3x3 kernel with padding 1 sees 4 real ones and 5 zeros: 4/9."""
    y = F.avg_pool2d(backend.tensor(np.ones((1, 1, 4, 4))), 3, stride=1, padding=1).numpy()
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert y[0, 0, 0, 1] == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_reads_strided_views(backend, pool):
    """The input and the upstream gradient are transposed views, not C-contiguous (the kernel
    path reads them through contiguous copies)."""
    case = (2, 3, 7, 8, 3, 2, 1)
    x = distinct_values((2, 3, 8, 7))
    upstream = np.random.default_rng(4).standard_normal((2, 3, 4, 4))
    tx = backend.tensor(x, requires_grad=True)
    x_view = tx.transpose(2, 3)
    assert not x_view.data.flags.c_contiguous
    y = POOLS[pool](x_view, **window(case))
    y.backward(backend.array(upstream).transpose(0, 1, 3, 2))
    x_logical, upstream_logical = x.transpose(0, 1, 3, 2), upstream.transpose(0, 1, 3, 2)
    if pool == "max":
        expected_y = ref.max_pool2d(x_logical, **window(case))
        expected_grad = ref.max_pool2d_backward(x_logical, upstream_logical, **window(case))
    else:
        expected_y = ref.avg_pool2d(x_logical, **window(case))
        expected_grad = ref.avg_pool2d_backward(x_logical.shape, upstream_logical, **window(case))
    assert_close(y, expected_y, np.float64)
    assert_close(tx.grad, expected_grad.transpose(0, 1, 3, 2), np.float64, grad=True)


def with_pools(cases):
    return [(pool,) + case for pool in sorted(POOLS) for case in cases]


GRADCHECK_EMULATED = [("max", 1, 2, 5, 5, 3, 2, 1), ("avg", 1, 2, 5, 5, 3, 2, 1)]  # every sample is a launch


@cases_on_backends("case", with_pools(CASES), emulated=GRADCHECK_EMULATED, numpy=with_pools(MORE_CASES),
                   ids=lambda c: f"{c[0]}-{case_id(c[1:])}")
def test_pool_gradcheck(backend, case):
    pool, case = case[0], case[1:]
    x = backend.tensor(distinct_values(case[:4]) if pool == "max" else
                       np.random.default_rng(1).standard_normal(case[:4]), requires_grad=True)
    backend.gradcheck(lambda t: POOLS[pool](t, **window(case)), (x,))


# ---- global average pooling --------------------------------------------------------------

GLOBAL_KERNEL_SHAPES = [(1, 3, 5, 7), (2, 3, 17, 19), (3, 2, 1, 1)]  # 35, 323 (more than a block), 1 pixel
GLOBAL_SHAPES = GLOBAL_KERNEL_SHAPES + [(2, 3, 5, 5), (1, 5, 7, 5), (2, 3, 1, 1), (4, 64, 8, 8)]


def shape_id(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("shape", GLOBAL_SHAPES, emulated=GLOBAL_KERNEL_SHAPES, ids=shape_id)
def test_global_avg_pool_output_and_gradient_match_the_loop_reference(backend, shape, dtype):
    rng = np.random.default_rng(5)
    x = float32_exact(rng.standard_normal(shape) + 3.0)  # a nonzero mean, so a wrong divisor shows
    upstream = float32_exact(rng.standard_normal(shape[:2]))
    y, grad = pool_and_grad(backend, F.global_avg_pool2d, x.astype(dtype), upstream.astype(dtype))
    assert_close(y, ref.global_avg_pool2d(x), dtype)
    assert_close(grad, ref.global_avg_pool2d_backward(shape, upstream), dtype, grad=True)


@cases_on_backends("shape", GLOBAL_SHAPES, emulated=[(1, 2, 3, 2)], ids=shape_id)
def test_global_avg_pool_gradcheck(backend, shape):
    x = backend.tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)
    backend.gradcheck(F.global_avg_pool2d, (x,))


# ---- the nn layers of a ResNet's stem and head ------------------------------------------------

def test_pooling_layers_chained(backend):
    """MaxPool2d, AvgPool2d and GlobalAvgPool2d in a Sequential, with a gradient through all three."""
    x = distinct_values((2, 3, 9, 10))
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2, stride=1), nn.GlobalAvgPool2d())
    upstream = np.random.default_rng(6).standard_normal((2, 3))
    y, grad = pool_and_grad(backend, model, x, upstream)
    after_max = ref.max_pool2d(x, 3, stride=2, padding=1)
    after_avg = ref.avg_pool2d(after_max, 2, stride=1)
    grad_avg = ref.global_avg_pool2d_backward(after_avg.shape, upstream)
    grad_max = ref.avg_pool2d_backward(after_max.shape, grad_avg, 2, stride=1)
    assert_close(y, ref.global_avg_pool2d(after_avg), np.float64)
    assert_close(grad, ref.max_pool2d_backward(x, grad_max, 3, stride=2, padding=1), np.float64, grad=True)


# ---- kernel path only (emulated, where launches are recorded) ------------------------------

def launches(kernel_name, dtype):
    """How many times the emulated ``kernel_name<dtype>`` has run so far."""
    module = pooling_kernels.POOLING.function(kernel_name, dtype).module
    return sum(1 for name, _, _ in module.launches if name.startswith(kernel_name + "<"))


@only_on("emulated")
@pytest.mark.parametrize("pool", ["max", "avg", "global_avg"])
def test_pooling_takes_the_kernel_path_once_forward_and_once_backward(backend, pool):
    names = (f"{pool}_pool_forward", f"{pool}_pool_backward")
    fn = F.global_avg_pool2d if pool == "global_avg" else lambda t: POOLS[pool](t, 3, stride=2, padding=1)
    x = distinct_values((1, 2, 5, 6))
    before = [launches(name, np.float64) for name in names]
    tx = backend.tensor(x, requires_grad=True)
    y = fn(tx)
    y.backward(np.ones(y.shape))
    assert [launches(name, np.float64) for name in names] == [before[0] + 1, before[1] + 1]


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_padding_more_than_half_kernel_raises(backend, op):
    with pytest.raises(ValueError, match="padding"):
        op(backend.tensor(np.ones((1, 1, 5, 5))), 3, stride=1, padding=2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_non_4d_input_raises(backend, op):
    with pytest.raises(ValueError, match="4-D"):
        op(backend.tensor(np.ones((3, 5, 5))), 2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_kernel_larger_than_input_raises(backend, op):
    with pytest.raises(ValueError, match="larger"):
        op(backend.tensor(np.ones((1, 1, 2, 2))), 3)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_integer_input_raises_type_error(backend, op):
    with pytest.raises(TypeError, match="int64"):
        op(backend.tensor(np.ones((1, 1, 4, 4), dtype=np.int64)), 2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(0, 1), (2, 0)])
def test_pool_nonpositive_kernel_or_stride_raises(backend, op, kernel, stride):
    with pytest.raises(ValueError):
        op(backend.tensor(np.ones((1, 1, 4, 4))), kernel, stride=stride)


def test_global_avg_pool2d_errors(backend):
    with pytest.raises(ValueError, match="4-D"):
        F.global_avg_pool2d(backend.tensor(np.ones((2, 3))))
    with pytest.raises(TypeError, match="int64"):
        F.global_avg_pool2d(backend.tensor(np.ones((1, 1, 2, 2), dtype=np.int64)))


# ---- optional oracle: PyTorch (NumPy path) ---------------------------------------------------

@pytest.mark.parametrize("case", MORE_CASES, ids=case_id)
def test_pooling_matches_torch(case):
    torch = pytest.importorskip("torch")
    N, C, H, W, k, s, p = case
    x = distinct_values((N, C, H, W), seed=3)
    for ours, theirs in ((F.max_pool2d, torch.nn.functional.max_pool2d),
                         (F.avg_pool2d, torch.nn.functional.avg_pool2d)):
        tx = minires.tensor(x, requires_grad=True)
        y = ours(tx, k, stride=s, padding=p)
        G = np.random.default_rng(4).standard_normal(y.shape)
        y.backward(G)
        px = torch.tensor(x, requires_grad=True)
        py = theirs(px, k, stride=s, padding=p)  # stride None -> kernel_size in torch too
        py.backward(torch.tensor(G))
        np.testing.assert_allclose(y.numpy(), py.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(tx.grad, px.grad.numpy(), rtol=1e-12, atol=1e-12)
