"""max_pool2d and avg_pool2d: forward against the loop reference, gradients by finite
differences (max-pool inputs well separated so no window has a tie), and errors."""
import numpy as np
import pytest

import minires
import minires.functional as F

try:
    from tests import reference as ref
except ImportError:
    import reference as ref


# (N, C, H, W, kernel_size, stride, padding); stride None means "= kernel_size"
CASES = [
    (2, 3, 4, 4, 2, None, 0),
    (2, 3, 5, 5, 2, 2, 0),          # odd size: last row/column dropped
    (2, 3, 5, 5, 3, 2, 1),          # ResNet stem pooling
    (2, 3, 5, 5, 3, 1, 1),          # overlapping windows, "same" size
    (1, 5, 7, 5, 3, 2, 0),          # batch 1, 5 channels, 7x5
    (1, 3, 7, 5, 3, 2, 1),
    (2, 3, 5, 5, 1, 1, 0),          # 1x1 kernel: identity
    (2, 3, 7, 5, (2, 3), 1, 0),     # non-square kernel
    (2, 3, 7, 5, (2, 3), (2, 1), (1, 1)),
    (1, 3, 5, 5, 5, None, 0),       # one window covers the image
    (1, 3, 7, 5, 1, 2, 0),          # 1x1 kernel, stride 2: plain subsampling
    (2, 3, 7, 7, 2, 3, 1),          # stride larger than the kernel: gaps between windows
]


def _ids(case):
    N, C, H, W, k, s, p = case
    return f"N{N}-C{C}-{H}x{W}-k{k}-s{s}-p{p}"


def distinct_values(shape, seed=0):
    """Every value different from every other by at least 0.1: a random permutation of
    0, 0.1, 0.2, ... shifted to straddle zero. No window can contain a tie."""
    n = int(np.prod(shape))
    values = np.random.default_rng(seed).permutation(n) * 0.1 - 0.05 * n
    return values.reshape(shape)


# ---- max pooling ------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_max_pool2d_forward_matches_reference(case):
    N, C, H, W, k, s, p = case
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    y = F.max_pool2d(minires.tensor(x), k, stride=s, padding=p)
    expected = ref.max_pool2d(x, k, stride=s, padding=p)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y.numpy(), expected)


def test_max_pool2d_padding_is_minus_infinity_not_zero():
    """All-negative input: a zero-padded max pool would output 0 at the border."""
    x = -1.0 - np.random.default_rng(1).uniform(size=(1, 2, 4, 4))
    y = F.max_pool2d(minires.tensor(x), 3, stride=2, padding=1).numpy()
    assert (y < -1.0).all()
    np.testing.assert_array_equal(y, ref.max_pool2d(x, 3, stride=2, padding=1))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_max_pool2d_gradcheck(case):
    N, C, H, W, k, s, p = case
    x = minires.tensor(distinct_values((N, C, H, W)), requires_grad=True)
    result = minires.gradcheck(lambda t: F.max_pool2d(t, k, stride=s, padding=p), (x,))
    assert result.passed and result.comparisons > 0


def test_max_pool2d_gradient_goes_to_the_winner_by_hand():
    x = np.array([[[[1.0, 5.0, 2.0, 0.0],
                    [3.0, 4.0, 9.0, 8.0],
                    [0.5, 0.1, 0.2, 0.3],
                    [0.4, 7.0, 0.6, 0.7]]]])
    tx = minires.tensor(x, requires_grad=True)
    y = F.max_pool2d(tx, 2)
    np.testing.assert_array_equal(y.numpy(), [[[[5.0, 9.0], [7.0, 0.7]]]])
    y.backward(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    expected = np.zeros_like(x)
    expected[0, 0, 0, 1], expected[0, 0, 1, 2], expected[0, 0, 3, 1], expected[0, 0, 3, 3] = 10, 20, 30, 40
    np.testing.assert_array_equal(tx.grad, expected)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool2d_tie_routes_each_gradient_to_exactly_one_input(stride):
    """With a constant input every window is one big tie; each output's gradient must
    still go to a single pixel, so the total gradient is conserved and never doubled."""
    x = minires.tensor(np.ones((1, 2, 5, 5)), requires_grad=True)
    y = F.max_pool2d(x, 3, stride=stride, padding=1)
    G = np.random.default_rng(2).uniform(1, 2, y.shape)
    y.backward(G)
    np.testing.assert_allclose(x.grad.sum(axis=(2, 3)), G.sum(axis=(2, 3)), rtol=1e-12)


def test_max_pool2d_tie_goes_to_first_position_in_window():
    """On a tie the first position in row-major window order wins (as in PyTorch)."""
    x = minires.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(x, 2).backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(x.grad[0, 0], expected)


# ---- average pooling --------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_avg_pool2d_forward_matches_reference(case):
    N, C, H, W, k, s, p = case
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    y = F.avg_pool2d(minires.tensor(x), k, stride=s, padding=p)
    expected = ref.avg_pool2d(x, k, stride=s, padding=p)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-14)


def test_avg_pool2d_counts_padding_as_zeros():
    """Corner window of a 3x3 kernel with padding 1 sees 4 real ones and 5 zeros: 4/9."""
    y = F.avg_pool2d(minires.tensor(np.ones((1, 1, 4, 4))), 3, stride=1, padding=1).numpy()
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert y[0, 0, 0, 1] == pytest.approx(6 / 9)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_avg_pool2d_gradcheck(case):
    N, C, H, W, k, s, p = case
    x = minires.tensor(np.random.default_rng(1).standard_normal((N, C, H, W)), requires_grad=True)
    result = minires.gradcheck(lambda t: F.avg_pool2d(t, k, stride=s, padding=p), (x,))
    assert result.passed and result.comparisons > 0


def test_pooling_float32_keeps_dtype():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    for op, reference in ((F.max_pool2d, ref.max_pool2d), (F.avg_pool2d, ref.avg_pool2d)):
        y = op(minires.tensor(x), 3, stride=2, padding=1)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.numpy(), reference(x.astype(np.float64), 3, 2, 1), rtol=1e-6, atol=1e-6)


# ---- errors -----------------------------------------------------------------------

@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_padding_more_than_half_kernel_raises(op):
    with pytest.raises(ValueError, match="padding"):
        op(minires.tensor(np.ones((1, 1, 5, 5))), 3, stride=1, padding=2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_non_4d_input_raises(op):
    with pytest.raises(ValueError, match="4-D"):
        op(minires.tensor(np.ones((3, 5, 5))), 2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_kernel_larger_than_input_raises(op):
    with pytest.raises(ValueError, match="larger"):
        op(minires.tensor(np.ones((1, 1, 2, 2))), 3)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
def test_pool_integer_input_raises_type_error(op):
    with pytest.raises(TypeError, match="int64"):
        op(minires.tensor(np.ones((1, 1, 4, 4), dtype=np.int64)), 2)


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d], ids=["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(0, 1), (2, 0)])
def test_pool_nonpositive_kernel_or_stride_raises(op, kernel, stride):
    with pytest.raises(ValueError):
        op(minires.tensor(np.ones((1, 1, 4, 4))), kernel, stride=stride)


# ---- optional oracle: PyTorch ------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_ids)
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
