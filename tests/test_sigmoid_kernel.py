"""sigmoid's kernel path (kernels/sigmoid.cu). tests/test_smooth_activations.py already runs every
sigmoid test on the ``backend`` fixture, so its outputs, gradients, gradchecks, extremes, NaN and
strided inputs cover the kernels through the emulator; here: that the kernel path is the one taken,
over more elements than one block of threads, 0-d and empty tensors, and that it reads nothing back."""
import math

import numpy as np
import pytest

import minires
import minires.functional as F
from backend_tools import assert_close, float32_exact, only_on
from kernel_instruments import DeviceArray, to_stand_in_device
from minires.backends.emulator import emulate_kernels, emulator_status


def ref_sigmoid(x):
    """sigmoid one element at a time, from the side where exp cannot overflow."""
    def one(v):
        return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    return np.vectorize(one)(x)


@only_on("emulated", "cuda")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_path_over_several_blocks_matches_the_math_reference(backend, dtype):
    rng = np.random.default_rng(0)
    x = float32_exact(rng.uniform(-40, 40, size=(3, 200)))  # 600 elements: 3 blocks of 256 threads
    upstream = float32_exact(rng.standard_normal(x.shape))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = F.sigmoid(tx)
    assert y.grad_fn.path == "kernel"
    y.backward(backend.array(upstream.astype(dtype)))
    expected = ref_sigmoid(x)
    assert_close(y, expected, dtype)
    assert_close(tx.grad, upstream * expected * (1 - expected), dtype, grad=True)


def test_zero_dim_and_empty_tensors(backend):
    scalar = backend.tensor(np.array(2.0), requires_grad=True)
    y = F.sigmoid(scalar)
    y.backward()
    assert y.shape == () and scalar.grad.shape == ()
    s = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(y.numpy(), s, rtol=1e-15)
    np.testing.assert_allclose(backend.numpy(scalar.grad), s * (1 - s), rtol=1e-14)
    empty = backend.tensor(np.zeros((0, 3)), requires_grad=True)
    y = F.sigmoid(empty)
    y.backward(backend.array(np.zeros((0, 3))))
    assert y.shape == (0, 3) and empty.grad.shape == (0, 3)


@pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])
def test_the_kernel_path_reads_nothing_back():
    x = to_stand_in_device(np.linspace(-5, 5, 12).reshape(3, 4))
    tx = minires.Tensor(x, requires_grad=True)
    with emulate_kernels():
        y = F.sigmoid(tx)
        y.backward(to_stand_in_device(np.ones((3, 4))))
    assert type(y.data) is DeviceArray and type(tx.grad.data) is DeviceArray
    assert_close(np.asarray(y.data), ref_sigmoid(np.asarray(x)), np.float64)
