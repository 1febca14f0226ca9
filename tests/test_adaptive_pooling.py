"""adaptive_avg_pool2d and adaptive_max_pool2d on every backend: output and gradient against the loop
reference (bins that divide evenly, bins that overlap, more bins than pixels), gradcheck, agreement with
the fixed-window poolings where the bins are windows, the nn layers, errors, and PyTorch as an oracle.
"""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import nn

from backend_tools import assert_close, cases_on_backends, float32_exact
from kernel_instruments import DeviceArray, to_stand_in_device
from minires.backends.emulator import emulate_kernels, emulator_status
import reference as ref

# (N, C, H, W, output_size)
CASES = [
    (2, 3, 8, 8, (4, 4)),       # bins are 2x2 windows
    (2, 3, 7, 9, (3, 4)),       # uneven bins that overlap: rows [0,3) [2,5) [4,7)
    (1, 2, 5, 5, 3),            # an int output size; overlapping in both directions
    (2, 2, 3, 4, (5, 6)),       # more bins than pixels: pixels repeat
    (2, 3, 6, 5, 1),            # one bin: the global pool, shape (N, C, 1, 1)
    (1, 2, 6, 7, (2, None)),    # None keeps that dimension (here W = 7)
]
POOLS = {"avg": (F.adaptive_avg_pool2d, np.mean), "max": (F.adaptive_max_pool2d, np.max)}


def case_id(case):
    return f"N{case[0]}-C{case[1]}-{case[2]}x{case[3]}-to{case[4]}"


def output_size(case):
    size = case[4] if isinstance(case[4], tuple) else (case[4], case[4])
    return tuple(case[2 + k] if s is None else s for k, s in enumerate(size))


def distinct_values(shape, seed=0):
    """Every value different (exact in float32), so no max-pool bin has a tie."""
    n = int(np.prod(shape))
    return float32_exact((np.random.default_rng(seed).permutation(n) * 0.1 - 0.05 * n).reshape(shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool", sorted(POOLS))
@cases_on_backends("case", CASES, emulated=CASES[:3], ids=case_id)
def test_output_and_gradient_match_the_loop_reference(backend, case, pool, dtype):
    op, reduce = POOLS[pool]
    x = distinct_values(case[:4])
    upstream = float32_exact(np.random.default_rng(1).standard_normal(case[:2] + output_size(case)))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = op(tx, case[4])
    y.backward(backend.array(upstream.astype(dtype)))
    assert y.device == tx.device
    assert_close(y, ref.adaptive_pool2d(x, output_size(case), reduce), dtype)
    assert_close(tx.grad, ref.adaptive_pool2d_backward(x, upstream, pool), dtype, grad=True)


@pytest.mark.parametrize("pool", sorted(POOLS))
@cases_on_backends("case", CASES, emulated=CASES[1:2], ids=case_id)
def test_gradcheck(backend, case, pool):
    x = backend.tensor(distinct_values(case[:4], seed=2), requires_grad=True)  # distinct: away from max's kinks
    backend.gradcheck(lambda t: POOLS[pool][0](t, case[4]), [x])


def test_a_pixel_in_two_overlapping_max_bins_gets_both_gradients():
    # Length 3 pooled to 2: bins [0, 2) and [1, 3) share position 1, which holds the maximum.
    x = minires.tensor([[[[0.0, 5.0, 1.0]]]], dtype=np.float64, requires_grad=True)
    y = F.adaptive_max_pool2d(x, (1, 2))
    assert y.tolist() == [[[[5.0, 5.0]]]]
    y.backward(np.array([[[[2.0, 3.0]]]]))
    assert x.grad.tolist() == [[[[0.0, 5.0, 0.0]]]]


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_bins_that_divide_evenly_are_the_fixed_window_pool(pool):
    x = minires.tensor(distinct_values((2, 3, 8, 6)), requires_grad=True)
    window_pool = F.max_pool2d if pool == "max" else F.avg_pool2d
    np.testing.assert_allclose(POOLS[pool][0](x, (4, 2)).numpy(), window_pool(x, (2, 3)).numpy(), rtol=1e-12, atol=1e-12)


def test_adaptive_avg_pool_to_one_is_the_global_average_with_unit_dimensions():
    x = minires.tensor(np.random.default_rng(3).standard_normal((2, 4, 5, 7)))
    pooled = nn.AdaptiveAvgPool2d(1)(x)
    assert pooled.shape == (2, 4, 1, 1)  # PyTorch's shape; GlobalAvgPool2d gives (2, 4)
    np.testing.assert_allclose(nn.Flatten()(pooled).numpy(), nn.GlobalAvgPool2d()(x).numpy(), rtol=1e-12)


def test_layers_show_their_output_size():
    assert repr(nn.AdaptiveMaxPool2d((2, None))) == "AdaptiveMaxPool2d(output_size=(2, None))"
    assert "AdaptiveAvgPool2d" in nn.__all__ and "adaptive_max_pool2d" in F.__all__


@pytest.mark.parametrize("op", [F.adaptive_avg_pool2d, F.adaptive_max_pool2d])
def test_bad_input_gets_a_clear_error(op):
    x = minires.tensor(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="must be 4-D"):
        op(minires.tensor(np.zeros((2, 4, 4))), 2)
    with pytest.raises(ValueError, match="positive integers"):
        op(x, (0, 2))
    with pytest.raises(ValueError, match="an int or a pair"):
        op(x, (1, 2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        op(minires.tensor(np.zeros((1, 2, 4, 4), dtype=np.int64)), 2)
    with pytest.raises(TypeError, match=r"minires\.tensor"):
        op(np.zeros((1, 2, 4, 4)), 2)


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_pytorch(pool, case):
    torch = pytest.importorskip("torch")
    theirs_op = {"avg": torch.nn.functional.adaptive_avg_pool2d, "max": torch.nn.functional.adaptive_max_pool2d}[pool]
    rng = np.random.default_rng(4)
    x = rng.standard_normal(case[:4])
    upstream = rng.standard_normal(case[:2] + output_size(case))
    ours = minires.tensor(x, requires_grad=True)
    y = POOLS[pool][0](ours, case[4])
    y.backward(upstream)
    theirs = torch.tensor(x, requires_grad=True)
    y_torch = theirs_op(theirs, case[4])
    y_torch.backward(torch.tensor(upstream))
    np.testing.assert_allclose(y.numpy(), y_torch.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---- the kernel path: ties, many bins per pixel, the saved winners, no read-back -----------------

TIE_CASES = [(1, 2, 5, 5, 3), (2, 1, 4, 6, (3, 4)), (1, 1, 3, 4, (5, 6))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", TIE_CASES, emulated=TIE_CASES, ids=case_id)
def test_ties_go_to_the_first_maximum_of_a_bin(backend, case, dtype):
    # Few distinct values, so most bins hold several equal maxima; the first (row by row) wins them.
    x = np.random.default_rng(5).integers(0, 3, size=case[:4]).astype(np.float64)
    upstream = float32_exact(np.random.default_rng(6).standard_normal(case[:2] + output_size(case)))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = F.adaptive_max_pool2d(tx, case[4])
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(y, ref.adaptive_pool2d(x, output_size(case), np.max), dtype)
    assert_close(tx.grad, ref.adaptive_pool2d_backward(x, upstream, "max"), dtype, grad=True)


@pytest.mark.parametrize("pool", sorted(POOLS))
@cases_on_backends("case", CASES[3:4], emulated=CASES[3:4], ids=case_id)
def test_more_bins_than_pixels_on_every_path(backend, case, pool):
    # 3x4 pooled to 5x6: up to three bins cover a row, so the backward gathers from up to nine bins
    x = distinct_values(case[:4], seed=7)
    upstream = float32_exact(np.random.default_rng(8).standard_normal(case[:2] + output_size(case)))
    tx = backend.tensor(x, requires_grad=True)
    y = POOLS[pool][0](tx, case[4])
    y.backward(backend.array(upstream))
    assert_close(y, ref.adaptive_pool2d(x, output_size(case), POOLS[pool][1]), np.float64)
    assert_close(tx.grad, ref.adaptive_pool2d_backward(x, upstream, pool), np.float64, grad=True)


@pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])
def test_both_paths_save_the_same_winners():
    from minires.ops.adaptive_pooling import AdaptiveMaxPool2dFunction
    x = np.random.default_rng(9).integers(0, 4, size=(2, 3, 7, 5)).astype(np.float64)  # with ties
    saved = []
    for kernels in (False, True):
        op = AdaptiveMaxPool2dFunction((3, 2))
        if kernels:
            with emulate_kernels():
                op(minires.tensor(x, requires_grad=True))
        else:
            op(minires.tensor(x, requires_grad=True))
        saved.append(op.saved_tensors[0])
    np.testing.assert_array_equal(saved[1], saved[0])  # pixel = h * W + w of each bin's winner
    assert saved[1].dtype == np.int32


@pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_the_kernel_path_reads_nothing_back(pool):
    x = to_stand_in_device(distinct_values((1, 2, 5, 4), seed=10))
    tx = minires.Tensor(x, requires_grad=True)
    with emulate_kernels():
        y = POOLS[pool][0](tx, (3, 2))
        y.backward(to_stand_in_device(np.ones((1, 2, 3, 2))))
    assert type(y.data) is DeviceArray and type(tx.grad.data) is DeviceArray
    assert_close(np.asarray(y.data), ref.adaptive_pool2d(np.asarray(x), (3, 2), POOLS[pool][1]), np.float64)


@pytest.mark.parametrize("op", [F.adaptive_avg_pool2d, F.adaptive_max_pool2d])
def test_an_input_without_pixels_gets_a_clear_error(backend, op):
    with pytest.raises(ValueError, match=r"height and width must be at least 1 .*got shape \(1, 2, 0, 4\)"):
        op(backend.tensor(np.zeros((1, 2, 0, 4))), 2)
