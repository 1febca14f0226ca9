"""conv2d: forward against the loop reference, gradients by finite differences, and errors."""
import numpy as np
import pytest

import minires
import minires.functional as F

try:
    from tests import reference as ref
except ImportError:  # tests/ itself on sys.path (pytest's rootdir-less import)
    import reference as ref


# (N, C, OC, H, W, kernel (kh, kw), stride, padding, bias)
CASES = [
    (2, 3, 4, 5, 5, (3, 3), 1, 0, True),
    (2, 3, 4, 5, 5, (3, 3), 1, 1, True),
    (2, 3, 2, 5, 5, (3, 3), 2, 0, False),
    (2, 3, 2, 5, 5, (3, 3), 2, 1, True),
    (1, 3, 5, 7, 5, (3, 3), 1, 1, True),      # batch 1, odd non-square image
    (1, 5, 3, 7, 5, (3, 3), 2, 1, False),     # 5 channels, stride 2 on odd sizes
    (2, 3, 4, 5, 5, (1, 1), 1, 0, True),      # 1x1 kernel
    (2, 4, 6, 6, 6, (1, 1), 2, 0, False),     # 1x1 projection, stride 2
    (2, 3, 2, 7, 5, (2, 3), 1, 0, True),      # non-square kernel
    (2, 3, 2, 7, 5, (2, 3), 2, 1, True),
    (1, 3, 2, 6, 7, (2, 3), (2, 1), (1, 0), True),  # per-axis stride and padding
    (2, 3, 3, 3, 3, (3, 3), 1, 0, True),      # kernel as large as the image: 1x1 output
    (1, 3, 2, 7, 5, (1, 1), 2, 0, False),     # 1x1 stride 2 on odd sizes
    (1, 3, 2, 5, 5, (1, 1), 1, 1, True),      # padding wider than the kernel: border = bias only
    (2, 3, 2, 7, 5, (3, 3), 2, 2, True),      # padding 2
    (1, 3, 2, 7, 7, (2, 2), 3, 1, True),      # stride larger than the kernel: gaps between windows
]


def _ids(case):
    N, C, OC, H, W, k, s, p, b = case
    return f"N{N}-C{C}-OC{OC}-{H}x{W}-k{k[0]}x{k[1]}-s{s}-p{p}-{'bias' if b else 'nobias'}"


def _make(case, dtype, seed=0, requires_grad=False):
    N, C, OC, H, W, (kh, kw), stride, padding, use_bias = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((OC, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if use_bias else None
    tx = minires.tensor(x, requires_grad=requires_grad)
    tw = minires.tensor(w, requires_grad=requires_grad)
    tb = minires.tensor(b, requires_grad=requires_grad) if use_bias else None
    return (x, w, b), (tx, tw, tb), stride, padding


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_forward_float64_matches_reference(case):
    (x, w, b), (tx, tw, tb), stride, padding = _make(case, np.float64)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    expected = ref.conv2d(x, w, b, stride=stride, padding=padding)
    assert y.shape == expected.shape
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_forward_float32_matches_reference(case):
    (x, w, b), (tx, tw, tb), stride, padding = _make(case, np.float32)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    expected = ref.conv2d(x.astype(np.float64), w.astype(np.float64),
                          None if b is None else b.astype(np.float64), stride=stride, padding=padding)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_gradcheck(case):
    _, (tx, tw, tb), stride, padding = _make(case, np.float64, seed=1, requires_grad=True)
    inputs = (tx, tw) if tb is None else (tx, tw, tb)

    def fn(*args):
        return F.conv2d(*args, stride=stride, padding=padding)

    result = minires.gradcheck(fn, inputs)
    assert result.passed and result.comparisons > 0


def test_conv2d_backward_matches_loop_gradients():
    """dL/dx, dL/dw, dL/db for L = sum(G * y) written out as loops (one case, exact)."""
    case = (2, 3, 2, 5, 5, (3, 3), 2, 1, True)
    (x, w, b), (tx, tw, tb), stride, padding = _make(case, np.float64, requires_grad=True)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    G = np.random.default_rng(5).standard_normal(y.shape)
    y.backward(G)
    N, C, H, W = x.shape
    OC, _, kh, kw = w.shape
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for n in range(N):
        for o in range(OC):
            for oh in range(y.shape[2]):
                for ow in range(y.shape[3]):
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                h, v = oh * stride + i - padding, ow * stride + j - padding
                                if 0 <= h < H and 0 <= v < W:
                                    gx[n, c, h, v] += G[n, o, oh, ow] * w[o, c, i, j]
                                    gw[o, c, i, j] += G[n, o, oh, ow] * x[n, c, h, v]
    np.testing.assert_allclose(tx.grad, gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tw.grad, gw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tb.grad, G.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


# ---- clear errors ------------------------------------------------------------

def _t(shape, dtype=np.float64):
    return minires.tensor(np.ones(shape, dtype=dtype))


def test_conv2d_channel_mismatch_names_both_counts():
    with pytest.raises(ValueError) as info:
        F.conv2d(_t((2, 3, 5, 5)), _t((4, 5, 3, 3)))
    message = str(info.value)
    assert "3" in message and "5" in message and "channel" in message


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 3, 5, 5, 1), (5, 5)])
def test_conv2d_rejects_non_4d_input(shape):
    with pytest.raises(ValueError, match="4-D"):
        F.conv2d(_t(shape), _t((4, 3, 3, 3)))


def test_conv2d_rejects_non_4d_weight():
    with pytest.raises(ValueError, match="weight"):
        F.conv2d(_t((2, 3, 5, 5)), _t((4, 27)))


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((1, 1, 2, 2), (1, 1, 3, 3), 0),
    ((1, 1, 5, 2), (1, 1, 3, 3), 0),   # only the width is too small
    ((1, 1, 1, 1), (1, 1, 5, 5), 1),   # padded input 3x3 < 5x5
])
def test_conv2d_kernel_larger_than_padded_input(x_shape, w_shape, padding):
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(_t(x_shape), _t(w_shape), padding=padding)


def test_conv2d_kernel_exactly_fits_padded_input():
    y = F.conv2d(_t((1, 1, 1, 1)), _t((1, 1, 3, 3)), padding=1)
    assert y.shape == (1, 1, 1, 1)
    assert y.numpy()[0, 0, 0, 0] == 1.0  # only the centre tap sees a real pixel


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_conv2d_integer_input_raises_type_error_naming_dtype(dtype):
    x = minires.tensor(np.ones((1, 1, 3, 3), dtype=dtype))
    with pytest.raises(TypeError) as info:
        F.conv2d(x, _t((1, 1, 3, 3)))
    assert np.dtype(dtype).name in str(info.value)


def test_conv2d_mixed_dtypes_raise_type_error():
    with pytest.raises(TypeError, match="dtype"):
        F.conv2d(_t((1, 1, 3, 3), np.float32), _t((1, 1, 3, 3), np.float64))


@pytest.mark.parametrize("bias_shape", [(3,), (4, 1), (1,), ()])
def test_conv2d_bias_of_wrong_shape(bias_shape):
    with pytest.raises(ValueError, match="bias"):
        F.conv2d(_t((1, 2, 5, 5)), _t((4, 2, 3, 3)), _t(bias_shape))


@pytest.mark.parametrize("stride, padding", [(0, 0), (1, -1)])
def test_conv2d_rejects_bad_stride_or_padding(stride, padding):
    with pytest.raises(ValueError):
        F.conv2d(_t((1, 1, 5, 5)), _t((1, 1, 3, 3)), stride=stride, padding=padding)


# ---- optional oracle: PyTorch -------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    (x, w, b), (tx, tw, tb), stride, padding = _make(case, np.float64, seed=2, requires_grad=True)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    G = np.random.default_rng(3).standard_normal(y.shape)
    y.backward(G)

    px = torch.tensor(x, requires_grad=True)
    pw = torch.tensor(w, requires_grad=True)
    pb = torch.tensor(b, requires_grad=True) if b is not None else None
    py = torch.nn.functional.conv2d(px, pw, pb, stride=stride, padding=padding)
    py.backward(torch.tensor(G))
    np.testing.assert_allclose(y.numpy(), py.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tx.grad, px.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tw.grad, pw.grad.numpy(), rtol=1e-10, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-10, atol=1e-12)
