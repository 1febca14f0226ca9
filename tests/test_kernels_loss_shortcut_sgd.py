"""kernels/cross_entropy.cu, kernels/shortcut.cu and kernels/sgd.cu against the NumPy path.

Emulated tests run the public ops (and the SGD optimizer) on NumPy arrays through
the kernels, compiled for host threads (fixture ``emulated_kernels``), and compare
them with the same calls made on the pure NumPy path (``numpy_path()``). GPU tests
make the same comparisons between a CUDA device and the CPU.
"""
import numpy
import pytest

import minires
import minires.functional as F
from minires.backends import to_device
from minires.backends.emulator import emulate_kernels
from minires.nn import Parameter
from minires.optim import SGD

TOLERANCE = {numpy.float32: dict(value=1e-5, grad=1e-4), numpy.float64: dict(value=1e-12, grad=1e-12)}


def numpy_path():
    """Inside the ``emulated_kernels`` fixture: run the block below on the plain NumPy path."""
    return emulate_kernels(enabled=False)


def assert_close(actual, expected, rtol):
    numpy.testing.assert_allclose(to_device(actual, "cpu"), to_device(expected, "cpu"), rtol=rtol, atol=rtol)


# ---- cross-entropy ------------------------------------------------------------------------
CE_SHAPES = [(1, 10), (7, 3), (5, 300)]  # 300 classes: more than one block of 256 threads per row


def cross_entropy_case(shape, dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    upstream = numpy.asarray(rng.standard_normal(), dtype=dtype)  # d(something)/d(loss), random
    return logits, labels, upstream


def cross_entropy_and_grad(logits, labels, upstream, eps, device="cpu"):
    z = minires.tensor(logits, device=device, requires_grad=True)
    loss = F.cross_entropy(z, to_device(labels, device), label_smoothing=eps)
    loss.backward(to_device(upstream, device))
    return loss, z.grad


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("shape", CE_SHAPES)
def test_cross_entropy_kernels_match_numpy(emulated_kernels, shape, eps, dtype):
    logits, labels, upstream = cross_entropy_case(shape, dtype)
    loss, grad = cross_entropy_and_grad(logits, labels, upstream, eps)
    with numpy_path():
        expected_loss, expected_grad = cross_entropy_and_grad(logits, labels, upstream, eps)
    assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype
    assert_close(loss.data, expected_loss.data, TOLERANCE[dtype]["value"])
    assert_close(grad, expected_grad, TOLERANCE[dtype]["grad"])


def test_cross_entropy_kernels_are_stable_with_huge_logits(emulated_kernels):
    logits = numpy.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, 1000.0]], dtype=numpy.float32)
    loss, grad = cross_entropy_and_grad(logits, numpy.array([1, 2]), numpy.float32(1.0), 0.0)
    assert loss.item() == pytest.approx(500.0, rel=1e-6)  # row 0 costs 1000, row 1 costs 0
    numpy.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_cross_entropy_kernels_take_int32_labels_and_still_check_their_range(emulated_kernels):
    logits, labels, upstream = cross_entropy_case((4, 6), numpy.float64, seed=1)
    loss, _ = cross_entropy_and_grad(logits, labels.astype(numpy.int32), upstream, 0.1)
    with numpy_path():
        expected, _ = cross_entropy_and_grad(logits, labels, upstream, 0.1)
    assert_close(loss.data, expected.data, 1e-12)
    with pytest.raises(ValueError, match=r"\[0, 6\) for 6 classes, got values from -1 to 5"):
        F.cross_entropy(minires.tensor(logits), numpy.array([0, 5, -1, 2]))


# ---- option-A shortcut ------------------------------------------------------------------------
SHORTCUT_CASES = [  # (x shape, out_channels, stride)
    ((2, 3, 6, 6), 3, 1),  # identity
    ((1, 3, 5, 4), 6, 1),  # zero channels only
    ((2, 3, 7, 5), 3, 2),  # subsampling only, odd H and W
    ((2, 3, 7, 5), 5, 2),  # both, as between two ResNet stages
    ((1, 2, 16, 16), 4, 2),  # 2 * 4 * 8 * 8 = 512 outputs: more than one block
]


def shortcut_and_grad(x, out_channels, stride, upstream, device="cpu"):
    t = minires.tensor(x, device=device, requires_grad=True)
    y = F.zero_pad_shortcut(t, out_channels, stride)
    y.backward(to_device(upstream, device))
    return y, t.grad


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("x_shape, out_channels, stride", SHORTCUT_CASES)
def test_shortcut_kernels_match_numpy(emulated_kernels, x_shape, out_channels, stride, dtype):
    rng = numpy.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(dtype)
    N, C, H, W = x_shape
    y_shape = (N, out_channels, (H + stride - 1) // stride, (W + stride - 1) // stride)
    upstream = rng.standard_normal(y_shape).astype(dtype)
    y, grad = shortcut_and_grad(x, out_channels, stride, upstream)
    with numpy_path():
        expected_y, expected_grad = shortcut_and_grad(x, out_channels, stride, upstream)
    assert y.shape == y_shape and y.dtype == dtype and grad.dtype == dtype
    numpy.testing.assert_array_equal(y.data, expected_y.data)  # pure copies: exact
    numpy.testing.assert_array_equal(grad, expected_grad)


def test_shortcut_backward_reads_a_strided_gradient_through_a_contiguous_copy(emulated_kernels):
    x = numpy.random.default_rng(3).standard_normal((1, 2, 5, 5))
    t = minires.tensor(x, requires_grad=True)
    y = F.zero_pad_shortcut(t, 4, 2)
    upstream = numpy.random.default_rng(4).standard_normal((1, 4, 3, 3)).transpose(0, 1, 3, 2)
    y.backward(upstream)
    expected = numpy.zeros_like(x)
    expected[:, :, ::2, ::2] = upstream[:, :2]
    numpy.testing.assert_array_equal(t.grad, expected)


# ---- SGD ------------------------------------------------------------------------------------------
SGD_OPTIONS = [
    dict(momentum=0.0, weight_decay=0.0),
    dict(momentum=0.0, weight_decay=0.01),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.0),
    dict(momentum=0.9, dampening=0.1, weight_decay=0.01),
    dict(momentum=0.9, dampening=0.0, weight_decay=0.01),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
]
SGD_SHAPES = [(3,), (20, 15)]  # 300 elements: more than one block
SGD_STEPS = 3


def sgd_gradients(dtype, seed=5):
    """SGD_STEPS lists of gradients, one per parameter."""
    rng = numpy.random.default_rng(seed)
    return [[rng.standard_normal(shape).astype(dtype) for shape in SGD_SHAPES] for _ in range(SGD_STEPS)]


def sgd_parameters(dtype, device="cpu", seed=6):
    rng = numpy.random.default_rng(seed)
    return [Parameter(to_device(rng.standard_normal(shape).astype(dtype), device)) for shape in SGD_SHAPES]


def take_step(optimizer, params, grads):
    for p, g in zip(params, grads):
        p.grad = to_device(g, p.device)
    optimizer.step()


def assert_same_sgd_state(params, optimizer, expected_params, expected_optimizer, rtol):
    for p, expected in zip(params, expected_params):
        assert p.dtype == expected.dtype
        assert_close(p.data, expected.data, rtol)
        state, expected_state = optimizer.state[p], expected_optimizer.state[expected]
        assert state.keys() == expected_state.keys()
        if "momentum_buffer" in expected_state:
            assert_close(state["momentum_buffer"], expected_state["momentum_buffer"], rtol)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_kernel_matches_the_numpy_optimizer_step_by_step(emulated_kernels, options, dtype):
    params, expected_params = sgd_parameters(dtype), sgd_parameters(dtype)
    optimizer, expected_optimizer = SGD(params, lr=0.1, **options), SGD(expected_params, lr=0.1, **options)
    for grads in sgd_gradients(dtype):
        take_step(optimizer, params, grads)
        with numpy_path():
            take_step(expected_optimizer, expected_params, grads)
        assert_same_sgd_state(params, optimizer, expected_params, expected_optimizer, TOLERANCE[dtype]["value"])


def test_sgd_kernel_continues_from_a_loaded_momentum_buffer(emulated_kernels):
    params, expected_params = sgd_parameters(numpy.float64), sgd_parameters(numpy.float64)
    optimizer = SGD(params, lr=0.1, momentum=0.9, dampening=0.1)
    expected_optimizer = SGD(expected_params, lr=0.1, momentum=0.9, dampening=0.1)
    first, *later = sgd_gradients(numpy.float64)
    with numpy_path():
        take_step(expected_optimizer, expected_params, first)
    optimizer.load_state_dict(expected_optimizer.state_dict())  # not a first step for the kernel
    for p, expected in zip(params, expected_params):
        p.data[...] = expected.data
    for grads in later:
        take_step(optimizer, params, grads)
        with numpy_path():
            take_step(expected_optimizer, expected_params, grads)
    assert_same_sgd_state(params, optimizer, expected_params, expected_optimizer, 1e-12)


# ---- on a real GPU ------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("shape", CE_SHAPES)
def test_cross_entropy_on_gpu_matches_cpu(gpu_poisoned, shape, eps, dtype):
    logits, labels, upstream = cross_entropy_case(shape, dtype)
    loss, grad = cross_entropy_and_grad(logits, labels, upstream, eps, device="cuda")
    expected_loss, expected_grad = cross_entropy_and_grad(logits, labels, upstream, eps)
    assert loss.device.startswith("cuda") and loss.shape == () and grad.dtype == dtype
    assert_close(loss.data, expected_loss.data, TOLERANCE[dtype]["value"])
    assert_close(grad, expected_grad, TOLERANCE[dtype]["grad"])


@pytest.mark.gpu
def test_cross_entropy_on_gpu_rejects_out_of_range_labels(gpu_poisoned):
    logits = minires.tensor(numpy.zeros((3, 5)), device="cuda")
    for labels in (numpy.array([0, 5, 1]), to_device(numpy.array([0, -1, 1]), "cuda")):
        with pytest.raises(ValueError, match=r"\[0, 5\)"):
            F.cross_entropy(logits, labels)


@pytest.mark.gpu
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_gradcheck_on_gpu(gpu_poisoned, eps):
    rng = numpy.random.default_rng(7)
    logits = minires.tensor(rng.standard_normal((4, 300)), device="cuda", requires_grad=True)
    labels = to_device(rng.integers(0, 300, 4), "cuda")
    result = minires.gradcheck(lambda z: F.cross_entropy(z, labels, label_smoothing=eps), (logits,))
    assert result.passed and result.comparisons > 0


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("x_shape, out_channels, stride", SHORTCUT_CASES)
def test_shortcut_on_gpu_matches_cpu(gpu_poisoned, x_shape, out_channels, stride, dtype):
    rng = numpy.random.default_rng(8)
    x = rng.standard_normal(x_shape).astype(dtype)
    N, C, H, W = x_shape
    y_shape = (N, out_channels, (H + stride - 1) // stride, (W + stride - 1) // stride)
    upstream = rng.standard_normal(y_shape).astype(dtype)
    y, grad = shortcut_and_grad(x, out_channels, stride, upstream, device="cuda")
    expected_y, expected_grad = shortcut_and_grad(x, out_channels, stride, upstream)
    assert y.device.startswith("cuda") and y.dtype == dtype
    numpy.testing.assert_array_equal(y.numpy(), expected_y.data)
    numpy.testing.assert_array_equal(to_device(grad, "cpu"), expected_grad)


@pytest.mark.gpu
@pytest.mark.parametrize("x_shape, out_channels, stride", SHORTCUT_CASES)
def test_shortcut_gradcheck_on_gpu(gpu_poisoned, x_shape, out_channels, stride):
    x = minires.tensor(numpy.random.default_rng(9).standard_normal(x_shape), device="cuda", requires_grad=True)
    result = minires.gradcheck(lambda t: F.zero_pad_shortcut(t, out_channels, stride), (x,))
    assert result.passed and result.comparisons > 0


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_sgd_on_gpu_matches_cpu_step_by_step(gpu_poisoned, options, dtype):
    params, expected_params = sgd_parameters(dtype, device="cuda"), sgd_parameters(dtype)
    optimizer, expected_optimizer = SGD(params, lr=0.1, **options), SGD(expected_params, lr=0.1, **options)
    for grads in sgd_gradients(dtype):
        take_step(optimizer, params, grads)
        take_step(expected_optimizer, expected_params, grads)
        assert_same_sgd_state(params, optimizer, expected_params, expected_optimizer, TOLERANCE[dtype]["value"])
