"""linear (y = x W^T + b) on the NumPy path: forward against the loop reference, leading axes as
batch, gradients by finite differences, and errors. (linear has no kernels of its own: on a GPU
it is CuPy's matrix product.)"""
import numpy as np
import pytest

import minires
import minires.functional as F

import reference as ref


@pytest.mark.parametrize("N, I, O, use_bias", [(2, 3, 4, True), (1, 5, 3, False), (4, 1, 1, True)])
def test_linear_forward_matches_reference(N, I, O, use_bias):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((N, I)), rng.standard_normal((O, I))
    b = rng.standard_normal(O) if use_bias else None
    y = F.linear(minires.tensor(x), minires.tensor(w), None if b is None else minires.tensor(b))
    np.testing.assert_allclose(y.numpy(), ref.linear(x, w, b), rtol=1e-12, atol=1e-14)


def test_linear_leading_axes_act_as_batch():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    y = F.linear(minires.tensor(x), minires.tensor(w), minires.tensor(b))
    assert y.shape == (2, 3, 4)
    np.testing.assert_allclose(y.numpy().reshape(6, 4), ref.linear(x.reshape(6, 5), w, b), rtol=1e-12)


@pytest.mark.parametrize("x_shape, use_bias", [((2, 5), True), ((1, 5), False), ((2, 3, 5), True)])
def test_linear_gradcheck(x_shape, use_bias):
    rng = np.random.default_rng(2)
    x = minires.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = minires.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    inputs = (x, w)
    if use_bias:
        inputs += (minires.tensor(rng.standard_normal(3), requires_grad=True),)
    result = minires.gradcheck(F.linear, inputs)
    assert result.passed and result.comparisons > 0


def test_linear_errors():
    x, w = minires.tensor(np.ones((2, 5))), minires.tensor(np.ones((3, 4)))
    with pytest.raises(ValueError, match="last axis"):
        F.linear(x, w)
    with pytest.raises(ValueError, match="bias"):
        F.linear(x, minires.tensor(np.ones((3, 5))), minires.tensor(np.ones(5)))
    with pytest.raises(TypeError, match="int64"):
        F.linear(minires.tensor(np.ones((2, 5), dtype=np.int64)), minires.tensor(np.ones((3, 5))))
