"""relu, linear, dropout, cross_entropy, zero_pad_shortcut and global_avg_pool2d:
forward against loop references, gradients by finite differences, and errors."""
import numpy as np
import pytest

import minires
import minires.functional as F

try:
    from tests import reference as ref
except ImportError:
    import reference as ref


def away_from_zero(shape, seed=0, low=0.1):
    """Random signs times uniform(low, 1): no value within `low` of ReLU's kink at 0."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 1.0, size=shape)


# ---- relu -------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 5, 7, 5), (4, 3), (7,)])
def test_relu_forward_matches_reference(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    y = F.relu(minires.tensor(x))
    np.testing.assert_array_equal(y.numpy(), ref.relu(x))


@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 5, 7, 5), (4, 3)])
def test_relu_gradcheck(shape):
    x = minires.tensor(away_from_zero(shape), requires_grad=True)
    assert np.abs(x.numpy()).min() >= 0.1
    result = minires.gradcheck(F.relu, (x,))
    assert result.passed and result.comparisons > 0


def test_relu_gradient_is_zero_at_and_below_the_kink():
    x = minires.tensor(np.array([-2.0, -0.0, 0.0, 1e-300, 3.0]), requires_grad=True)
    F.relu(x).backward(np.array([1.0, 1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0, 1.0, 1.0])


def test_relu_float32_keeps_dtype_and_int_raises():
    y = F.relu(minires.tensor(np.array([-1.0, 2.0], dtype=np.float32)))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.0])
    with pytest.raises(TypeError, match="int64"):
        F.relu(minires.tensor(np.array([-1, 2], dtype=np.int64)))


# ---- linear -----------------------------------------------------------------------

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


# ---- dropout ----------------------------------------------------------------------

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


# ---- cross_entropy ----------------------------------------------------------------

@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("N, C", [(4, 5), (1, 3), (3, 10)])
def test_cross_entropy_matches_reference(N, C, smoothing):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((N, C)) * 3
    labels = rng.integers(0, C, N)
    loss = F.cross_entropy(minires.tensor(logits), labels, label_smoothing=smoothing)
    assert loss.size == 1
    assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels, smoothing), rel=1e-12, abs=1e-14)


def test_cross_entropy_by_hand():
    """Two classes with logits (0, log 3): softmax = (1/4, 3/4). Label 1: loss = -log(3/4).
    With smoothing 0.1, q = (0.05, 0.95): loss = -(0.05 log 1/4 + 0.95 log 3/4)."""
    logits = minires.tensor(np.array([[0.0, np.log(3.0)]]))
    assert F.cross_entropy(logits, [1]).item() == pytest.approx(-np.log(0.75), rel=1e-12)
    expected = -(0.05 * np.log(0.25) + 0.95 * np.log(0.75))
    assert F.cross_entropy(logits, [1], label_smoothing=0.1).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("as_type", ["numpy", "list", "tensor", "int32"])
def test_cross_entropy_label_containers(as_type):
    logits = np.random.default_rng(1).standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    wrapped = {"numpy": labels, "list": labels.tolist(), "tensor": minires.tensor(labels),
               "int32": labels.astype(np.int32)}[as_type]
    loss = F.cross_entropy(minires.tensor(logits), wrapped)
    assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels), rel=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("N, C", [(4, 5), (1, 3)])
def test_cross_entropy_gradcheck(N, C, smoothing):
    rng = np.random.default_rng(2)
    logits = minires.tensor(rng.standard_normal((N, C)), requires_grad=True)
    labels = rng.integers(0, C, N)
    result = minires.gradcheck(lambda z: F.cross_entropy(z, labels, label_smoothing=smoothing), (logits,))
    assert result.passed and result.comparisons > 0


def test_cross_entropy_stable_with_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0],
                       [1000.0, 1000.0, 999.0],
                       [-1000.0, -1000.0, 1000.0]])
    labels = np.array([1, 0, 2])
    for smoothing in (0.0, 0.1):
        tz = minires.tensor(logits, requires_grad=True)
        loss = F.cross_entropy(tz, labels, label_smoothing=smoothing)
        loss.backward()
        assert np.isfinite(loss.item())
        assert np.isfinite(tz.grad).all()
        assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels, smoothing), rel=1e-12)
    # Row 0 alone with label 1 costs exactly 1000 (log-softmax of the middle logit is -1000).
    row = F.cross_entropy(minires.tensor(logits[:1]), [1])
    assert row.item() == pytest.approx(1000.0, rel=1e-12)


def test_cross_entropy_float32_huge_logits_finite():
    logits = minires.tensor(np.array([[1000.0, -1000.0]], dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, [1])
    loss.backward()
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(2000.0, rel=1e-6)
    assert np.isfinite(logits.grad).all()


@pytest.mark.parametrize("labels", [[0, 5, 1], [0, -1, 1], [7, 7, 7]])
def test_cross_entropy_label_out_of_range_raises(labels):
    with pytest.raises(ValueError) as info:
        F.cross_entropy(minires.tensor(np.zeros((3, 5))), np.array(labels))
    assert "[0, 5)" in str(info.value)


def test_cross_entropy_float_labels_raise_type_error():
    with pytest.raises(TypeError, match="float64"):
        F.cross_entropy(minires.tensor(np.zeros((3, 5))), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError):
        F.cross_entropy(minires.tensor(np.zeros((3, 5))), [0.0, 1.0, 2.0])


def test_cross_entropy_other_errors():
    z = minires.tensor(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="2-D"):
        F.cross_entropy(minires.tensor(np.zeros((3, 5, 2))), np.array([0, 1, 2]))


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 7)) * 2
    labels = rng.integers(0, 7, 6)
    for smoothing in (0.0, 0.1, 0.3):
        tz = minires.tensor(logits, requires_grad=True)
        loss = F.cross_entropy(tz, labels, label_smoothing=smoothing)
        loss.backward()
        pz = torch.tensor(logits, requires_grad=True)
        ploss = torch.nn.functional.cross_entropy(pz, torch.tensor(labels), label_smoothing=smoothing)
        ploss.backward()
        assert loss.item() == pytest.approx(ploss.item(), rel=1e-12)
        np.testing.assert_allclose(tz.grad, pz.grad.numpy(), rtol=1e-10, atol=1e-14)


# ---- zero_pad_shortcut (option A) ---------------------------------------------------

@pytest.mark.parametrize("shape, out_channels, stride", [
    ((2, 3, 6, 6), 6, 2),
    ((2, 3, 5, 5), 5, 2),     # odd size: ceil(5/2) = 3 pixels kept per axis
    ((1, 5, 7, 5), 8, 2),
    ((2, 3, 5, 5), 3, 1),     # identity
    ((2, 3, 4, 4), 4, 1),     # only widens
])
def test_zero_pad_shortcut_forward_and_gradcheck(shape, out_channels, stride):
    x = np.random.default_rng(0).standard_normal(shape)
    y = F.zero_pad_shortcut(minires.tensor(x), out_channels, stride=stride)
    expected = ref.zero_pad_shortcut(x, out_channels, stride)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y.numpy(), expected)
    tx = minires.tensor(x, requires_grad=True)
    result = minires.gradcheck(lambda t: F.zero_pad_shortcut(t, out_channels, stride=stride), (tx,))
    assert result.passed and result.comparisons > 0


def test_zero_pad_shortcut_errors():
    x = minires.tensor(np.ones((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="out_channels"):
        F.zero_pad_shortcut(x, 3)
    with pytest.raises(ValueError, match="stride"):
        F.zero_pad_shortcut(x, 4, stride=0)
    with pytest.raises(ValueError, match="4-D"):
        F.zero_pad_shortcut(minires.tensor(np.ones((4, 4))), 4)


# ---- global_avg_pool2d --------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 5, 7, 5), (2, 3, 1, 1)])
def test_global_avg_pool2d_forward_and_gradcheck(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    y = F.global_avg_pool2d(minires.tensor(x))
    assert y.shape == shape[:2]
    np.testing.assert_allclose(y.numpy(), ref.global_avg_pool2d(x), rtol=1e-12, atol=1e-14)
    tx = minires.tensor(x, requires_grad=True)
    result = minires.gradcheck(F.global_avg_pool2d, (tx,))
    assert result.passed and result.comparisons > 0


def test_global_avg_pool2d_errors():
    with pytest.raises(ValueError, match="4-D"):
        F.global_avg_pool2d(minires.tensor(np.ones((2, 3))))
    with pytest.raises(TypeError, match="int64"):
        F.global_avg_pool2d(minires.tensor(np.ones((1, 1, 2, 2), dtype=np.int64)))
