"""relu on every backend: output and gradient against the loop reference (inputs away from the kink),
the gradient at and below the kink, gradcheck, a strided input, and the dtype rules."""
import numpy as np
import pytest

import minires.functional as F

from backend_tools import assert_close, cases_on_backends, float32_exact
import reference as ref

SHAPES = [(2, 3, 5, 5), (1, 5, 7, 5), (4, 3), (7,), (1,), (3, 5, 7), (2, 300)]  # 600 elements: more than one block
KERNEL_SHAPES = [(1,), (3, 5, 7), (2, 300)]


def shape_id(shape):
    return "x".join(map(str, shape))


def away_from_zero(shape, seed=0, low=0.1):
    """Random signs times uniform(low, 1), exact in float32: no value within ``low`` of the kink at 0."""
    rng = np.random.default_rng(seed)
    return float32_exact(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 1.0, size=shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("shape", SHAPES, emulated=KERNEL_SHAPES, ids=shape_id)
def test_relu_output_and_gradient_match_the_loop_reference(backend, shape, dtype):
    x = away_from_zero(shape)
    upstream = float32_exact(np.random.default_rng(1).standard_normal(shape))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = F.relu(tx)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(y, ref.relu(x), dtype)
    np.testing.assert_array_equal(y.numpy(), ref.relu(x).astype(dtype))  # a copy or a zero: exact
    np.testing.assert_array_equal(backend.numpy(tx.grad), ref.relu_backward(x, upstream).astype(dtype))
    assert tx.grad.dtype == dtype


@cases_on_backends("shape", SHAPES, emulated=[(2, 3)], ids=shape_id)
def test_relu_gradcheck(backend, shape):
    x = backend.tensor(away_from_zero(shape), requires_grad=True)
    assert np.abs(x.numpy()).min() >= 0.1
    backend.gradcheck(F.relu, (x,))


def test_relu_gradient_is_zero_at_and_below_the_kink(backend):
    x = backend.tensor(np.array([-2.0, -0.0, 0.0, 1e-300, 3.0]), requires_grad=True)
    F.relu(x).backward(backend.array(np.ones(5)))
    np.testing.assert_array_equal(backend.numpy(x.grad), [0.0, 0.0, 0.0, 1.0, 1.0])


def test_relu_reads_a_strided_view(backend):
    x = np.random.default_rng(2).standard_normal((4, 6))
    view = backend.tensor(x).transpose(1, 0)  # not C-contiguous
    assert not view.data.flags.c_contiguous
    np.testing.assert_array_equal(F.relu(view).numpy(), ref.relu(x.T))


def test_relu_float32_keeps_dtype_and_int_raises(backend):
    y = F.relu(backend.tensor(np.array([-1.0, 2.0], dtype=np.float32)))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0])
    with pytest.raises(TypeError, match="int64"):
        F.relu(backend.tensor(np.array([-1, 2], dtype=np.int64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_infinities_is_pytorchs_and_never_nan(backend, dtype):
    x = backend.tensor(np.array([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf], dtype), requires_grad=True)
    y = F.relu(x)
    y.backward(backend.array(np.ones(6, dtype)))
    np.testing.assert_array_equal(y.numpy(), np.array([0.0, 0.0, 0.0, 0.0, 2.0, np.inf], dtype))
    np.testing.assert_array_equal(backend.numpy(x.grad), np.array([0, 0, 0, 0, 1, 1], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_nan_or_infinite_upstream_gradient_stops_at_an_inactive_unit(backend, dtype):
    # PyTorch's rule: an inactive unit passes 0, whatever arrives (0 * nan would be nan).
    x = backend.tensor(np.array([-1.0, -2.0, 3.0, 4.0], dtype), requires_grad=True)
    F.relu(x).backward(backend.array(np.array([np.nan, np.inf, np.nan, 5.0], dtype)))
    grad = backend.numpy(x.grad)
    assert grad[:2].tolist() == [0.0, 0.0] and np.isnan(grad[2]) and grad[3] == 5.0
