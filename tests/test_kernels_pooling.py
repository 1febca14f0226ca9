"""max_pool2d, avg_pool2d and global_avg_pool2d through kernels/pooling.cu, against the NumPy path.

Emulated tests run the kernels on host threads (minires.backends.emulator) on NumPy arrays,
with every output the wrappers allocate poisoned with NaN; GPU tests run the same
comparisons on a real device. The reference is always minires's own pure NumPy path
(the same public op with the emulation switched off), which tests/test_pooling.py
checks against loop references and PyTorch.
"""
import numpy
import pytest

import minires
import minires.functional as F
from minires import nn
from minires.backends import to_device
from minires.backends.cuda import pooling as pooling_kernels
from minires.backends.emulator import emulate_kernels

# (N, C, H, W, kernel, stride, padding)
CASES = [
    (2, 3, 7, 9, (3, 3), (2, 2), (1, 1)),   # ResNet stem pooling, odd non-square image
    (1, 2, 6, 8, (2, 2), (2, 2), (0, 0)),   # batch 1, the classic 2x2 / 2
    (2, 3, 9, 7, (3, 3), (1, 1), (1, 1)),   # overlapping windows; 378 outputs and inputs (> 256)
    (1, 2, 7, 6, (2, 3), (2, 1), (1, 1)),   # non-square kernel, per-axis stride
    (1, 2, 7, 7, (2, 2), (3, 3), (1, 1)),   # stride > kernel: some pixels are in no window
    (2, 1, 5, 5, (5, 5), (5, 5), (0, 0)),   # one window covers the image
    (1, 3, 5, 4, (1, 1), (2, 2), (0, 0)),   # 1x1 kernel, stride 2: plain subsampling
]
POOLS = {"max": F.max_pool2d, "avg": F.avg_pool2d}


def case_id(case):
    N, C, H, W, (kh, kw), (sh, sw), (ph, pw) = case
    return f"{N}x{C}x{H}x{W}-k{kh}x{kw}-s{sh}x{sw}-p{ph}x{pw}"


def distinct_values(shape, dtype, seed=0):
    """A random permutation of 0, 0.1, 0.2, ... shifted to straddle zero: no window has a tie,
    so the max-pool gradient does not depend on how ties are broken."""
    n = int(numpy.prod(shape))
    values = numpy.random.default_rng(seed).permutation(n) * 0.1 - 0.05 * n
    return values.reshape(shape).astype(dtype)


def pool_and_grad(pool, x, upstream, device="cpu", **kwargs):
    """``pool`` forward and backward on ``device``: (y, dL/dx) as NumPy arrays."""
    tx = minires.tensor(x, device=device, requires_grad=True)
    y = pool(tx, **kwargs)
    y.backward(to_device(upstream, device))
    return y.numpy(), to_device(tx.grad, "cpu")


def numpy_path(pool, x, upstream, **kwargs):
    """The same computation with the emulation switched off."""
    with emulate_kernels(enabled=False):
        return pool_and_grad(pool, x, upstream, **kwargs)


def upstream_for(pool, x, seed=1, **kwargs):
    """A random upstream gradient shaped like pool's output."""
    with emulate_kernels(enabled=False):
        shape = pool(minires.tensor(x), **kwargs).shape
    return numpy.random.default_rng(seed).standard_normal(shape).astype(x.dtype)


def assert_close(actual, expected, dtype, is_grad=False):
    """Error relative to the largest expected value: < 1e-5 (forward) / 1e-4 (grads) in float32."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == dtype
    tolerance = 1e-12 if dtype == numpy.float64 else (1e-4 if is_grad else 1e-5)
    scale = max(float(numpy.abs(expected).max()), 1.0)
    numpy.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def launches(kernel_name, dtype):
    """How many times the emulated ``kernel_name<dtype>`` has run so far."""
    module = pooling_kernels.POOLING.function(kernel_name, dtype).module
    return sum(1 for name, _, _ in module.launches if name.startswith(kernel_name + "<"))


def window_arguments(case):
    kernel, stride, padding = case[4:]
    return dict(kernel_size=kernel, stride=stride, padding=padding)


# ---- max and average pooling (emulated) ---------------------------------------

@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_pool_forward_and_backward_match_the_numpy_path(emulated_kernels, case, pool, dtype):
    x = distinct_values(case[:4], dtype)
    kwargs = window_arguments(case)
    upstream = upstream_for(POOLS[pool], x, **kwargs)
    before = launches(f"{pool}_pool_forward", dtype), launches(f"{pool}_pool_backward", dtype)
    y, grad = pool_and_grad(POOLS[pool], x, upstream, **kwargs)
    after = launches(f"{pool}_pool_forward", dtype), launches(f"{pool}_pool_backward", dtype)
    assert after == (before[0] + 1, before[1] + 1), "the kernel path was not taken"
    expected_y, expected_grad = numpy_path(POOLS[pool], x, upstream, **kwargs)
    if pool == "max":  # a max picks one of the inputs: exactly equal
        numpy.testing.assert_array_equal(y, expected_y)
    assert_close(y, expected_y, dtype)
    assert_close(grad, expected_grad, dtype, is_grad=True)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[3]], ids=case_id)
def test_max_pool_ties_go_to_the_first_window_position_like_the_numpy_path(emulated_kernels, case, dtype):
    """Values from {0, 1, 2} tie all the time (and one image is constant): each output's
    gradient must go to the same pixel as on the NumPy path, the first in row-major window order."""
    x = numpy.random.default_rng(2).integers(0, 3, case[:4]).astype(dtype)
    x[0] = 1.0
    kwargs = window_arguments(case)
    upstream = upstream_for(F.max_pool2d, x, **kwargs)
    y, grad = pool_and_grad(F.max_pool2d, x, upstream, **kwargs)
    expected_y, expected_grad = numpy_path(F.max_pool2d, x, upstream, **kwargs)
    numpy.testing.assert_array_equal(y, expected_y)
    assert_close(grad, expected_grad, dtype, is_grad=True)


def test_max_pool_tie_goes_to_the_top_left_of_each_window(emulated_kernels):
    x = numpy.ones((1, 1, 4, 4))
    _, grad = pool_and_grad(F.max_pool2d, x, numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]]), kernel_size=2)
    expected = numpy.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
    numpy.testing.assert_array_equal(grad[0, 0], expected)


def test_max_pool_padding_never_wins_on_negative_inputs(emulated_kernels):
    """All inputs below -1: a kernel that let the padding (or a starting value of 0) win
    would output 0 at the border."""
    x = -1.0 - numpy.random.default_rng(3).uniform(size=(1, 2, 5, 6))
    y = F.max_pool2d(minires.tensor(x), 3, stride=2, padding=1).numpy()
    assert (y < -1.0).all()
    with emulate_kernels(enabled=False):
        numpy.testing.assert_array_equal(y, F.max_pool2d(minires.tensor(x), 3, stride=2, padding=1).numpy())


def test_max_pool_propagates_nan_like_the_numpy_path(emulated_kernels):
    x = distinct_values((1, 1, 6, 6), numpy.float64)
    x[0, 0, 1, 4] = x[0, 0, 5, 0] = numpy.nan
    y = F.max_pool2d(minires.tensor(x), 3, stride=2, padding=1).numpy()
    with emulate_kernels(enabled=False):
        expected = F.max_pool2d(minires.tensor(x), 3, stride=2, padding=1).numpy()
    assert numpy.isnan(expected).sum() == 3
    numpy.testing.assert_array_equal(y, expected)  # NaN positions must agree too


def test_avg_pool_counts_padding_as_zeros_in_the_divisor(emulated_kernels):
    y = F.avg_pool2d(minires.tensor(numpy.ones((1, 1, 4, 4))), 3, stride=1, padding=1).numpy()
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9) and y[0, 0, 0, 1] == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_reads_strided_views_through_contiguous_copies(emulated_kernels, pool):
    """The input and the upstream gradient are transposed views, not C-contiguous."""
    x = distinct_values((2, 3, 8, 7), numpy.float64).transpose(0, 1, 3, 2)
    upstream = numpy.random.default_rng(4).standard_normal((2, 3, 4, 4)).transpose(0, 1, 3, 2)
    kwargs = dict(kernel_size=3, stride=2, padding=1)
    y, grad = pool_and_grad(POOLS[pool], x, upstream, **kwargs)
    expected_y, expected_grad = numpy_path(POOLS[pool], numpy.ascontiguousarray(x),
                                           numpy.ascontiguousarray(upstream), **kwargs)
    assert_close(y, expected_y, numpy.float64)
    assert_close(grad, expected_grad, numpy.float64, is_grad=True)


# ---- global average pooling (emulated) ----------------------------------------

@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 3, 17, 19), (3, 2, 1, 1)],
                         ids=["35-pixels", "323-pixels-more-than-a-block", "1-pixel"])
def test_global_avg_pool_matches_the_numpy_path(emulated_kernels, shape, dtype):
    rng = numpy.random.default_rng(5)
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)  # a nonzero mean, so a wrong divisor shows
    upstream = rng.standard_normal(shape[:2]).astype(dtype)
    before = launches("global_avg_pool_forward", dtype)
    y, grad = pool_and_grad(F.global_avg_pool2d, x, upstream)
    assert launches("global_avg_pool_forward", dtype) == before + 1, "the kernel path was not taken"
    expected_y, expected_grad = numpy_path(F.global_avg_pool2d, x, upstream)
    assert_close(y, expected_y, dtype)
    assert_close(grad, expected_grad, dtype, is_grad=True)


def test_pooling_layers_run_on_the_kernel_path(emulated_kernels):
    """The nn layers of a ResNet's stem and head, chained, with a gradient through all three."""
    x = distinct_values((2, 3, 9, 10), numpy.float64)
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(2, stride=1), nn.GlobalAvgPool2d())
    upstream = numpy.random.default_rng(6).standard_normal((2, 3))
    y, grad = pool_and_grad(model, x, upstream)
    expected_y, expected_grad = numpy_path(model, x, upstream)
    assert_close(y, expected_y, numpy.float64)
    assert_close(grad, expected_grad, numpy.float64, is_grad=True)


# ---- on a real GPU ----------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_pool_matches_cpu(gpu_poisoned, case, pool, dtype):
    x = distinct_values(case[:4], dtype)
    kwargs = window_arguments(case)
    upstream = upstream_for(POOLS[pool], x, **kwargs)
    y, grad = pool_and_grad(POOLS[pool], x, upstream, device="cuda", **kwargs)
    expected_y, expected_grad = pool_and_grad(POOLS[pool], x, upstream, device="cpu", **kwargs)
    assert_close(y, expected_y, dtype)
    assert_close(grad, expected_grad, dtype, is_grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_gpu_max_pool_ties_match_cpu(gpu_poisoned, dtype):
    x = numpy.random.default_rng(2).integers(0, 3, (2, 3, 9, 7)).astype(dtype)
    kwargs = dict(kernel_size=3, stride=1, padding=1)
    upstream = upstream_for(F.max_pool2d, x, **kwargs)
    y, grad = pool_and_grad(F.max_pool2d, x, upstream, device="cuda", **kwargs)
    expected_y, expected_grad = pool_and_grad(F.max_pool2d, x, upstream, device="cpu", **kwargs)
    numpy.testing.assert_array_equal(y, expected_y)
    assert_close(grad, expected_grad, dtype, is_grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 3, 17, 19), (4, 64, 8, 8)])
def test_gpu_global_avg_pool_matches_cpu(gpu_poisoned, shape, dtype):
    rng = numpy.random.default_rng(5)
    x = (rng.standard_normal(shape) + 3.0).astype(dtype)
    upstream = rng.standard_normal(shape[:2]).astype(dtype)
    y, grad = pool_and_grad(F.global_avg_pool2d, x, upstream, device="cuda")
    expected_y, expected_grad = pool_and_grad(F.global_avg_pool2d, x, upstream, device="cpu")
    assert_close(y, expected_y, dtype)
    assert_close(grad, expected_grad, dtype, is_grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("pool", ["max", "avg", "global"])
def test_gpu_pool_gradcheck(gpu_poisoned, pool):
    x = minires.tensor(distinct_values((2, 3, 7, 9), numpy.float64), device="cuda", requires_grad=True)
    if pool == "global":
        fn = F.global_avg_pool2d
    else:
        def fn(t):
            return POOLS[pool](t, 3, stride=2, padding=1)
    result = minires.gradcheck(fn, (x,))
    assert result.passed and result.comparisons > 0
