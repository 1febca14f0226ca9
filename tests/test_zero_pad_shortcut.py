"""zero_pad_shortcut, ResNet's option-A shortcut, on every backend: output and gradient against the
loop reference (both are pure copies, so exact), gradcheck, a strided upstream gradient, and errors."""
import numpy as np
import pytest

import minires.functional as F

from backend_tools import cases_on_backends, float32_exact
import reference as ref

# (x shape, out_channels, stride)
KERNEL_CASES = [
    ((2, 3, 6, 6), 3, 1),      # identity
    ((1, 3, 5, 4), 6, 1),      # zero channels only
    ((2, 3, 7, 5), 3, 2),      # subsampling only, odd H and W
    ((2, 3, 7, 5), 5, 2),      # both, as between two ResNet stages
    ((1, 2, 16, 16), 4, 2),    # 2 * 4 * 8 * 8 = 512 outputs: more than one block
]
CASES = KERNEL_CASES + [
    ((2, 3, 6, 6), 6, 2),
    ((2, 3, 5, 5), 5, 2),      # odd size: ceil(5/2) = 3 pixels kept per axis
    ((1, 5, 7, 5), 8, 2),
    ((2, 3, 5, 5), 3, 1),      # identity
    ((2, 3, 4, 4), 4, 1),      # only widens
]


def case_id(case):
    shape, out_channels, stride = case
    return f"{'x'.join(map(str, shape))}-to{out_channels}-s{stride}"


def output_shape(case):
    (N, C, H, W), out_channels, stride = case
    return N, out_channels, (H - 1) // stride + 1, (W - 1) // stride + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_zero_pad_shortcut_output_and_gradient_match_the_loop_reference(backend, case, dtype):
    shape, out_channels, stride = case
    rng = np.random.default_rng(2)
    x = float32_exact(rng.standard_normal(shape))
    upstream = float32_exact(rng.standard_normal(output_shape(case)))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = F.zero_pad_shortcut(tx, out_channels, stride=stride)
    y.backward(backend.array(upstream.astype(dtype)))
    assert y.shape == output_shape(case) and y.dtype == dtype and tx.grad.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), ref.zero_pad_shortcut(x, out_channels, stride))  # copies: exact
    np.testing.assert_array_equal(backend.numpy(tx.grad), ref.zero_pad_shortcut_backward(shape, upstream, stride))


@cases_on_backends("case", CASES, emulated=[((1, 2, 3, 3), 3, 2)], ids=case_id)
def test_zero_pad_shortcut_gradcheck(backend, case):
    shape, out_channels, stride = case
    x = backend.tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)
    backend.gradcheck(lambda t: F.zero_pad_shortcut(t, out_channels, stride=stride), (x,))


def test_zero_pad_shortcut_reads_a_strided_upstream_gradient(backend):
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 5))
    tx = backend.tensor(x, requires_grad=True)
    y = F.zero_pad_shortcut(tx, 4, 2)
    stored = np.random.default_rng(4).standard_normal((1, 4, 3, 3))
    upstream = backend.array(stored).transpose(0, 1, 3, 2)  # a view on the backend, not C-contiguous
    assert not upstream.flags.c_contiguous
    y.backward(upstream)
    expected = np.zeros_like(x)
    expected[:, :, ::2, ::2] = stored.transpose(0, 1, 3, 2)[:, :2]
    np.testing.assert_array_equal(backend.numpy(tx.grad), expected)


def test_zero_pad_shortcut_errors(backend):
    x = backend.tensor(np.ones((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="out_channels"):
        F.zero_pad_shortcut(x, 3)
    with pytest.raises(ValueError, match="stride"):
        F.zero_pad_shortcut(x, 4, stride=0)
    with pytest.raises(ValueError, match="4-D"):
        F.zero_pad_shortcut(backend.tensor(np.ones((4, 4))), 4)
