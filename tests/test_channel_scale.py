"""channel_scale (Squeeze-and-Excitation's scale step, y = x * s[:, :, None, None]) on every backend:
output and both gradients against loop references, gradcheck, the NumPy path's memory layout, one
input without a gradient, no read-back on the kernel path, the errors, and PyTorch as an oracle."""
import numpy as np
import pytest

import minires
import minires.functional as F
from backend_tools import assert_close, cases_on_backends, float32_exact, only_on
from kernel_instruments import DeviceArray, to_stand_in_device
from minires.backends.emulator import emulate_kernels, emulator_status
from minires.ops.layout import channel_major_zeros, is_channel_major

# (N, C, H, W); the emulator gets the small ones
SHAPES = [(2, 3, 4, 5), (1, 1, 1, 1), (3, 2, 1, 7), (2, 4, 17, 19), (2, 5, 0, 3)]
EMULATED = [(2, 3, 4, 5), (1, 2, 1, 1), (1, 2, 23, 13)]  # the last: 299 pixels, more than a block's 256 threads


def shape_id(shape):
    return "x".join(map(str, shape))


def data(shape, seed):
    return float32_exact(np.random.default_rng(seed).standard_normal(shape))


def ref_channel_scale(x, s):
    N, C, H, W = x.shape
    y = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    y[n, c, h, w] = x[n, c, h, w] * s[n, c]
    return y


def ref_channel_scale_backward(x, s, g):
    """dL/dx = g * s (per element), dL/ds[n, c] = sum over h, w of g * x."""
    N, C, H, W = x.shape
    grad_x, grad_s = np.zeros(x.shape), np.zeros(s.shape)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    grad_x[n, c, h, w] = g[n, c, h, w] * s[n, c]
                    grad_s[n, c] += g[n, c, h, w] * x[n, c, h, w]
    return grad_x, grad_s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("shape", SHAPES, emulated=EMULATED, ids=shape_id)
def test_output_and_gradients_match_the_loop_reference(backend, shape, dtype):
    x, s, g = data(shape, 0), data(shape[:2], 1), data(shape, 2)
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    ts = backend.tensor(s.astype(dtype), requires_grad=True)
    y = F.channel_scale(tx, ts)
    y.backward(backend.array(g.astype(dtype)))
    assert y.device == tx.device
    assert_close(y, ref_channel_scale(x, s), dtype)
    grad_x, grad_s = ref_channel_scale_backward(x, s, g)
    assert_close(tx.grad, grad_x, dtype, grad=True)
    # a sum of H*W products: compare relative to the size of its terms, not of the (maybe small) sum
    assert_close(ts.grad, grad_s, dtype, grad=True, scale=max(float(np.abs(g * x).sum(axis=(2, 3)).max(initial=0)), 1.0))


@cases_on_backends("shape", SHAPES[:4], emulated=[(1, 2, 3, 2)], ids=shape_id)
def test_gradcheck(backend, shape):
    x = backend.tensor(data(shape, 3), requires_grad=True)
    s = backend.tensor(data(shape[:2], 4), requires_grad=True)
    backend.gradcheck(F.channel_scale, (x, s))


@pytest.mark.parametrize("wanted", ["input", "scale"])
def test_only_the_input_that_requires_grad_gets_one(backend, wanted):
    x, s, g = data((2, 3, 2, 2), 5), data((2, 3), 6), data((2, 3, 2, 2), 7)
    tx = backend.tensor(x, requires_grad=wanted == "input")
    ts = backend.tensor(s, requires_grad=wanted == "scale")
    F.channel_scale(tx, ts).backward(backend.array(g))
    grad_x, grad_s = ref_channel_scale_backward(x, s, g)
    if wanted == "input":
        assert ts.grad is None
        assert_close(tx.grad, grad_x, np.float64, grad=True)
    else:
        assert tx.grad is None
        assert_close(ts.grad, grad_s, np.float64, grad=True)


@only_on("numpy")
def test_the_numpy_path_keeps_channel_major_memory(backend):
    x = channel_major_zeros((2, 3, 4, 5), np.float64)  # a convolution's output layout (ops/layout.py)
    x[...] = data(x.shape, 8)
    s, g = data((2, 3), 9), data(x.shape, 10)
    tx, ts = minires.Tensor(x, requires_grad=True), minires.Tensor(s, requires_grad=True)
    y = F.channel_scale(tx, ts)
    assert is_channel_major(y.data)
    g_channel_major = channel_major_zeros(x.shape, np.float64)
    g_channel_major[...] = g
    y.backward(g_channel_major)
    assert is_channel_major(tx.grad.data)
    grad_x, grad_s = ref_channel_scale_backward(x, s, g)
    assert_close(y, ref_channel_scale(x, s), np.float64)
    assert_close(tx.grad, grad_x, np.float64, grad=True)
    assert_close(ts.grad, grad_s, np.float64, grad=True)


@pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])
def test_the_kernel_path_reads_nothing_back():
    x = to_stand_in_device(data((2, 3, 2, 2), 11))
    s = to_stand_in_device(data((2, 3), 12))
    tx, ts = minires.Tensor(x, requires_grad=True), minires.Tensor(s, requires_grad=True)
    with emulate_kernels():
        y = F.channel_scale(tx, ts)
        y.backward(to_stand_in_device(np.ones((2, 3, 2, 2))))
    assert type(y.data) is DeviceArray and type(tx.grad.data) is DeviceArray and type(ts.grad.data) is DeviceArray
    np.testing.assert_allclose(np.asarray(ts.grad.data), np.asarray(x).sum(axis=(2, 3)), rtol=1e-12)


def test_errors_name_the_problem(backend):
    x = backend.tensor(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"channel_scale: input must be 4-D, got shape \(3, 4, 4\)"):
        F.channel_scale(backend.tensor(np.zeros((3, 4, 4))), backend.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"channel_scale: scale must be 2-D, got shape \(2, 3, 1, 1\)"):
        F.channel_scale(x, backend.tensor(np.zeros((2, 3, 1, 1))))
    with pytest.raises(ValueError, match=r"scale must have shape \(N, C\) = \(2, 3\).*got \(3, 2\)"):
        F.channel_scale(x, backend.tensor(np.zeros((3, 2))))
    with pytest.raises(TypeError, match="scale must be a floating-point tensor, got dtype int64"):
        F.channel_scale(x, backend.tensor(np.zeros((2, 3), np.int64)))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        F.channel_scale(backend.tensor(np.zeros((2, 3, 4, 4), np.int64)), backend.tensor(np.zeros((2, 3))))
    with pytest.raises(TypeError, match="must share one dtype, got input float64, scale float32"):
        F.channel_scale(x, backend.tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(TypeError, match=r"minires\.tensor"):
        F.channel_scale(np.zeros((2, 3, 4, 4)), backend.tensor(np.zeros((2, 3))))


def test_exported_with_the_layers():
    assert "channel_scale" in F.__all__


@cases_on_backends("shape", SHAPES[:4], emulated=[(2, 3, 4, 5)], ids=shape_id)
def test_matches_pytorch(backend, shape):
    torch = pytest.importorskip("torch")
    x, s, g = data(shape, 13), data(shape[:2], 14), data(shape, 15)
    tx, ts = backend.tensor(x, requires_grad=True), backend.tensor(s, requires_grad=True)
    F.channel_scale(tx, ts).backward(backend.array(g))
    x_t, s_t = torch.tensor(x, requires_grad=True), torch.tensor(s, requires_grad=True)
    y_t = x_t * s_t[:, :, None, None]
    y_t.backward(torch.tensor(g))
    assert_close(F.channel_scale(tx, ts), y_t.detach().numpy(), np.float64)
    assert_close(tx.grad, x_t.grad.numpy(), np.float64, grad=True)
    assert_close(ts.grad, s_t.grad.numpy(), np.float64, grad=True)
