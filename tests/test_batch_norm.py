"""batch_norm for (N, C) and (N, C, H, W): forward and running statistics against the loop
reference, gradients by finite differences in training and evaluation, and errors."""
import numpy as np
import pytest

import minires
import minires.functional as F

try:
    from tests import reference as ref
except ImportError:
    import reference as ref


SHAPES = [
    (2, 3, 5, 5),
    (1, 3, 7, 5),   # batch 1 with spatial size > 1: m = 35 values per channel, fine in training
    (3, 5, 1, 1),   # 1x1 images: m = N
    (4, 3),         # (N, C)
    (2, 5),         # (N, C) with the smallest batch training allows
]


def _ids(shape):
    return "x".join(map(str, shape))


def _data(shape, seed=0, affine=True):
    rng = np.random.default_rng(seed)
    C = shape[1]
    # An offset and scale per channel, so mean/var are far from 0/1 and a wrong axis shows.
    offset = rng.uniform(-2, 2, C).reshape((1, C) + (1,) * (len(shape) - 2))
    scale = rng.uniform(0.5, 3, C).reshape((1, C) + (1,) * (len(shape) - 2))
    x = rng.standard_normal(shape) * scale + offset
    running_mean = rng.standard_normal(C)
    running_var = rng.uniform(0.5, 2.0, C)
    weight = rng.uniform(0.5, 1.5, C) if affine else None
    bias = rng.standard_normal(C) if affine else None
    return x, running_mean, running_var, weight, bias


def _opt(a, requires_grad=False):
    return None if a is None else minires.tensor(a, requires_grad=requires_grad)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_batch_norm_training_forward_and_running_stats(shape, affine):
    x, rm, rv, w, b = _data(shape, affine=affine)
    expected, expected_rm, expected_rv = ref.batch_norm(x, rm, rv, w, b, training=True)
    run_mean, run_var = rm.copy(), rv.copy()
    y = F.batch_norm(minires.tensor(x), run_mean, run_var, _opt(w), _opt(b), training=True)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)
    # Running stats updated in place: momentum 0.1, unbiased variance m/(m-1).
    np.testing.assert_allclose(run_mean, expected_rm, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run_var, expected_rv, rtol=1e-12, atol=1e-14)
    assert not np.allclose(run_var, rv)  # they really moved


def test_batch_norm_running_var_is_unbiased_by_hand():
    """The update rule spelled out for one channel with m = 4 values: var_biased = 1.25,
    var_unbiased = 5/3, new running_var = 0.9 * 1 + 0.1 * 5/3."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    rm, rv = np.zeros(1), np.ones(1)
    y = F.batch_norm(minires.tensor(x), rm, rv, training=True)
    np.testing.assert_allclose(rm, [0.1 * 2.5], rtol=1e-14)
    np.testing.assert_allclose(rv, [0.9 + 0.1 * 5.0 / 3.0], rtol=1e-14)
    np.testing.assert_allclose(y.numpy()[:, 0], (x[:, 0] - 2.5) / np.sqrt(1.25 + 1e-5), rtol=1e-12)


def test_batch_norm_running_stats_as_tensors_are_updated():
    x, rm, rv, w, b = _data((2, 3, 5, 5))
    _, expected_rm, expected_rv = ref.batch_norm(x, rm, rv, w, b, training=True)
    t_rm, t_rv = minires.tensor(rm), minires.tensor(rv)
    F.batch_norm(minires.tensor(x), t_rm, t_rv, _opt(w), _opt(b), training=True)
    np.testing.assert_allclose(t_rm.numpy(), expected_rm, rtol=1e-12)
    np.testing.assert_allclose(t_rv.numpy(), expected_rv, rtol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.3, 1.0])
def test_batch_norm_momentum(momentum):
    x, rm, rv, w, b = _data((2, 3, 4, 4))
    _, expected_rm, expected_rv = ref.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum)
    run_mean, run_var = rm.copy(), rv.copy()
    F.batch_norm(minires.tensor(x), run_mean, run_var, _opt(w), _opt(b), training=True, momentum=momentum)
    np.testing.assert_allclose(run_mean, expected_rm, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run_var, expected_rv, rtol=1e-12, atol=1e-14)


def test_batch_norm_training_without_running_stats():
    x, _, _, w, b = _data((2, 3, 5, 5))
    expected, _, _ = ref.batch_norm(x, None, None, w, b, training=True)
    y = F.batch_norm(minires.tensor(x), None, None, _opt(w), _opt(b), training=True)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_batch_norm_training_output_is_normalised_per_channel():
    x, _, _, _, _ = _data((4, 3, 5, 5))
    y = F.batch_norm(minires.tensor(x), None, None, training=True, eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-10)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("shape", SHAPES + [(1, 3)], ids=_ids)
def test_batch_norm_eval_uses_running_stats_and_leaves_them(shape, affine):
    x, rm, rv, w, b = _data(shape, affine=affine)
    expected, _, _ = ref.batch_norm(x, rm, rv, w, b, training=False)
    run_mean, run_var = rm.copy(), rv.copy()
    y = F.batch_norm(minires.tensor(x), run_mean, run_var, _opt(w), _opt(b), training=False)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(run_mean, rm)
    np.testing.assert_array_equal(run_var, rv)


def test_batch_norm_float32():
    x, rm, rv, w, b = _data((2, 3, 5, 5))
    expected, expected_rm, expected_rv = ref.batch_norm(x.astype(np.float32).astype(np.float64), rm, rv,
                                                        w.astype(np.float32), b.astype(np.float32), training=True)
    run_mean, run_var = rm.astype(np.float32), rv.astype(np.float32)
    y = F.batch_norm(minires.tensor(x.astype(np.float32)), run_mean, run_var,
                     _opt(w.astype(np.float32)), _opt(b.astype(np.float32)), training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run_mean, expected_rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_var, expected_rv, rtol=1e-5, atol=1e-6)


# ---- gradients -------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_batch_norm_gradcheck(shape, affine, training):
    x, rm, rv, w, b = _data(shape, seed=1, affine=affine)
    tx, tw, tb = minires.tensor(x, requires_grad=True), _opt(w, True), _opt(b, True)
    # In training the running stats change on every call but never affect the output.
    run_mean, run_var = rm.copy(), rv.copy()

    def fn(x):
        return F.batch_norm(x, run_mean, run_var, tw, tb, training=training)

    params = (tw, tb) if affine else ()
    result = minires.gradcheck(fn, (tx,), params=params)
    assert result.passed and result.comparisons > 0


def test_batch_norm_training_gradient_is_not_the_eval_gradient():
    """In training, mean and var depend on x, so dL/dx must include those terms."""
    x, rm, rv, w, b = _data((2, 3, 4, 4))
    G = np.random.default_rng(9).standard_normal(x.shape)
    grads = []
    for training in (True, False):
        tx = minires.tensor(x, requires_grad=True)
        F.batch_norm(tx, rm.copy(), rv.copy(), _opt(w), _opt(b), training=training).backward(G)
        grads.append(tx.grad)
    assert not np.allclose(grads[0], grads[1])
    # Training: the gradient sums to zero over each channel (shifting a channel changes nothing).
    np.testing.assert_allclose(grads[0].sum(axis=(0, 2, 3)), 0.0, atol=1e-10)


# ---- errors ----------------------------------------------------------------------

def test_batch_norm_training_with_one_value_per_channel_raises():
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(minires.tensor(np.ones((1, 3))), np.zeros(3), np.ones(3), training=True)


def test_batch_norm_training_batch1_spatial_1x1_raises():
    with pytest.raises(ValueError):
        F.batch_norm(minires.tensor(np.ones((1, 3, 1, 1))), np.zeros(3), np.ones(3), training=True)


def test_batch_norm_eval_without_running_stats_raises():
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(minires.tensor(np.ones((2, 3))), None, None, training=False)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_batch_norm_wrong_parameter_shape(name):
    args = dict(running_mean=np.zeros(3), running_var=np.ones(3),
                weight=minires.tensor(np.ones(3)), bias=minires.tensor(np.zeros(3)))
    args[name] = np.ones(4) if name.startswith("running") else minires.tensor(np.ones(4))
    with pytest.raises(ValueError, match=name):
        F.batch_norm(minires.tensor(np.ones((2, 3, 2, 2))), training=True, **args)


@pytest.mark.parametrize("shape", [(2, 3, 4), (3,), (1, 2, 3, 4, 5)])
def test_batch_norm_rejects_3d_and_other_ranks(shape):
    with pytest.raises(ValueError, match="2-D or 4-D"):
        F.batch_norm(minires.tensor(np.ones(shape)), None, None, training=True)


def test_batch_norm_integer_input_raises_type_error():
    with pytest.raises(TypeError, match="int64"):
        F.batch_norm(minires.tensor(np.ones((2, 3), dtype=np.int64)), None, None, training=True)


# ---- optional oracle: PyTorch -----------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_batch_norm_matches_torch(shape, training):
    torch = pytest.importorskip("torch")
    x, rm, rv, w, b = _data(shape, seed=4)
    G = np.random.default_rng(5).standard_normal(shape)

    run_mean, run_var = rm.copy(), rv.copy()
    tx, tw, tb = (minires.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.batch_norm(tx, run_mean, run_var, tw, tb, training=training)
    y.backward(G)

    p_rm, p_rv = torch.tensor(rm), torch.tensor(rv)
    px, pw, pb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    py = torch.nn.functional.batch_norm(px, p_rm, p_rv, pw, pb, training=training, momentum=0.1, eps=1e-5)
    py.backward(torch.tensor(G))

    np.testing.assert_allclose(y.numpy(), py.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(run_mean, p_rm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run_var, p_rv.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tx.grad, px.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(tw.grad, pw.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-8, atol=1e-10)
