"""dropout (inverted: kept values scaled by 1/(1-p)) on the NumPy path: identity in evaluation and
for p = 0, the mask's statistics and seeding, backward through the forward's mask, and errors."""
import numpy as np
import pytest

import minires
import minires.functional as F


def test_dropout_eval_is_identity():
    x = np.random.default_rng(0).standard_normal((4, 5))
    tx = minires.tensor(x, requires_grad=True)
    y = F.dropout(tx, p=0.5, training=False)
    np.testing.assert_array_equal(y.numpy(), x)
    y.backward(np.full((4, 5), 2.0))
    np.testing.assert_array_equal(tx.grad, np.full((4, 5), 2.0))


def test_dropout_p0_is_identity():
    x = np.random.default_rng(0).standard_normal((1000,))
    y = F.dropout(minires.tensor(x), p=0.0, training=True)
    np.testing.assert_array_equal(y.numpy(), x)


def test_dropout_p1_zeroes_everything():
    y = F.dropout(minires.tensor(np.ones(100)), p=1.0, training=True)
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_array_equal(y.numpy(), 0.0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics(p):
    minires.manual_seed(123)
    n = 100_000
    x = np.random.default_rng(0).uniform(1.0, 2.0, n)  # never zero, so zeros mean "dropped"
    y = F.dropout(minires.tensor(x), p=p, training=True).numpy()
    kept = y != 0
    # Binomial std of the kept fraction: sqrt(p(1-p)/n) <= 0.0016; allow ~6 sigma.
    assert abs(kept.mean() - (1 - p)) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-12)
    # Inverted dropout keeps the expectation: mean(y) ~ mean(x).
    assert abs(y.mean() - x.mean()) < 0.05 * x.mean()


def test_dropout_seed_makes_mask_repeatable_and_calls_differ():
    x = minires.tensor(np.ones(1000))
    minires.manual_seed(7)
    a = F.dropout(x, 0.5).numpy()
    b = F.dropout(x, 0.5).numpy()
    minires.manual_seed(7)
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_dropout_backward_uses_the_forward_mask():
    minires.manual_seed(3)
    x = minires.tensor(np.random.default_rng(1).uniform(1, 2, (3, 50)), requires_grad=True)
    y = F.dropout(x, p=0.4)
    G = np.random.default_rng(2).standard_normal((3, 50))
    y.backward(G)
    scale = y.numpy() / x.numpy()  # 0 or 1/(1-p) per element
    assert set(np.round(np.unique(scale), 12)) <= {0.0, round(1 / 0.6, 12)}
    np.testing.assert_allclose(x.grad, G * scale, rtol=1e-12)


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_gradcheck(p):
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)

    def fn(t):
        minires.manual_seed(0)  # the same mask on every call
        return F.dropout(t, p=p, training=True)

    result = minires.gradcheck(fn, (x,))
    assert result.passed and result.comparisons > 0


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_bad_p_raises(p):
    with pytest.raises(ValueError, match="p"):
        F.dropout(minires.tensor(np.ones(3)), p=p)
