"""cross_entropy (softmax, integer labels, label smoothing) on every backend: loss and gradient
against the loop reference under a random upstream gradient, by hand, the label containers,
stability with huge logits, gradcheck, and errors. PyTorch is a second oracle (NumPy path)."""
import numpy as np
import pytest

import minires
import minires.functional as F

from backend_tools import assert_close, cases_on_backends, float32_exact
import reference as ref

# (N, C, label_smoothing)
# 300 classes: more than one block of 256 threads per row.
KERNEL_CASES = [(N, C, eps) for N, C in [(1, 10), (7, 3), (5, 300)] for eps in (0.0, 0.1)]
CASES = KERNEL_CASES + [(N, C, eps) for N, C in [(4, 5), (1, 3), (3, 10)] for eps in (0.0, 0.1, 1.0)]


def case_id(case):
    N, C, eps = case
    return f"N{N}-C{C}-smoothing{eps}"


def make_case(N, C, seed=0):
    """Logits, labels and a random upstream gradient for the loss (all exact in float32)."""
    rng = np.random.default_rng(seed)
    logits = float32_exact(3 * rng.standard_normal((N, C)))
    return logits, rng.integers(0, C, N), float32_exact(rng.standard_normal())


def loss_and_grad(backend, logits, labels, upstream, label_smoothing=0.0):
    z = backend.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(z, backend.array(labels), label_smoothing=label_smoothing)
    loss.backward(backend.array(upstream))
    return loss, z.grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_cross_entropy_loss_and_gradient_match_the_loop_reference(backend, case, dtype):
    N, C, eps = case
    logits, labels, upstream = make_case(N, C)
    loss, grad = loss_and_grad(backend, logits.astype(dtype), labels, np.asarray(upstream, dtype=dtype), eps)
    assert loss.shape == () and loss.numel() == 1
    assert_close(loss, ref.cross_entropy(logits, labels, eps), dtype)
    assert_close(grad, ref.cross_entropy_backward(logits, labels, eps, grad_loss=upstream), dtype, grad=True)


def test_cross_entropy_by_hand(backend):
    """Two classes with logits (0, log 3): softmax = (1/4, 3/4). Label 1: loss = -log(3/4).
    With smoothing 0.1, q = (0.05, 0.95): loss = -(0.05 log 1/4 + 0.95 log 3/4)."""
    logits = backend.tensor(np.array([[0.0, np.log(3.0)]]))
    assert F.cross_entropy(logits, [1]).item() == pytest.approx(-np.log(0.75), rel=1e-12)
    expected = -(0.05 * np.log(0.25) + 0.95 * np.log(0.75))
    assert F.cross_entropy(logits, [1], label_smoothing=0.1).item() == pytest.approx(expected, rel=1e-12)


LABEL_CONTAINERS = ["numpy", "list", "tensor", "int32", "on-the-device"]


@cases_on_backends("as_type", LABEL_CONTAINERS, emulated=["int32", "on-the-device"], ids=str)
def test_cross_entropy_label_containers(backend, as_type):
    logits = np.random.default_rng(1).standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    wrapped = {"numpy": lambda: labels, "list": labels.tolist, "tensor": lambda: backend.tensor(labels),
               "int32": lambda: labels.astype(np.int32), "on-the-device": lambda: backend.array(labels)}[as_type]()
    loss = F.cross_entropy(backend.tensor(logits), wrapped)
    assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels), rel=1e-12)


GRADCHECK_CASES = [(4, 5, 0.0), (4, 5, 0.1), (1, 3, 0.0), (1, 3, 0.1), (4, 300, 0.0), (4, 300, 0.1)]


@cases_on_backends("case", GRADCHECK_CASES, emulated=[(1, 4, 0.1)], ids=case_id)
def test_cross_entropy_gradcheck(backend, case):
    N, C, eps = case
    rng = np.random.default_rng(2)
    logits = backend.tensor(rng.standard_normal((N, C)), requires_grad=True)
    labels = backend.array(rng.integers(0, C, N))
    backend.gradcheck(lambda z: F.cross_entropy(z, labels, label_smoothing=eps), (logits,))


def test_cross_entropy_stable_with_huge_logits(backend):
    logits = np.array([[1000.0, 0.0, -1000.0],
                       [1000.0, 1000.0, 999.0],
                       [-1000.0, -1000.0, 1000.0]])
    labels = np.array([1, 0, 2])
    for smoothing in (0.0, 0.1):
        loss, grad = loss_and_grad(backend, logits, labels, np.float64(1.0), smoothing)
        assert np.isfinite(loss.item())
        assert np.isfinite(backend.numpy(grad)).all()
        assert loss.item() == pytest.approx(ref.cross_entropy(logits, labels, smoothing), rel=1e-12)
    # Row 0 alone with label 1 costs exactly 1000 (log-softmax of the middle logit is -1000).
    row = F.cross_entropy(backend.tensor(logits[:1]), [1])
    assert row.item() == pytest.approx(1000.0, rel=1e-12)


def test_cross_entropy_float32_huge_logits_are_finite(backend):
    logits = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, 1000.0]], dtype=np.float32)
    loss, grad = loss_and_grad(backend, logits, np.array([1, 2]), np.float32(1.0))
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    assert loss.item() == pytest.approx(500.0, rel=1e-6)  # row 0 costs 1000, row 1 costs 0
    np.testing.assert_allclose(backend.numpy(grad), [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("on_device", [False, True], ids=["host-labels", "device-labels"])
@pytest.mark.parametrize("labels", [[0, 5, 1], [0, -1, 1], [7, 7, 7]])
def test_cross_entropy_label_out_of_range_raises(backend, labels, on_device):
    labels = backend.array(labels) if on_device else np.array(labels)
    with pytest.raises(ValueError) as info:
        F.cross_entropy(backend.tensor(np.zeros((3, 5))), labels)
    assert "[0, 5)" in str(info.value)


def test_cross_entropy_out_of_range_message_names_the_classes_and_the_values(backend):
    with pytest.raises(ValueError, match=r"\[0, 6\) for 6 classes, got values from -1 to 5"):
        F.cross_entropy(backend.tensor(np.zeros((4, 6))), np.array([0, 5, -1, 2]))


def test_cross_entropy_float_labels_raise_type_error(backend):
    with pytest.raises(TypeError, match="float64"):
        F.cross_entropy(backend.tensor(np.zeros((3, 5))), np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError):
        F.cross_entropy(backend.tensor(np.zeros((3, 5))), [0.0, 1.0, 2.0])


def test_cross_entropy_other_errors(backend):
    z = backend.tensor(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(z, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="2-D"):
        F.cross_entropy(backend.tensor(np.zeros((3, 5, 2))), np.array([0, 1, 2]))


# ---- reduction="none" and "sum" ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES[:2], ids=case_id)
def test_per_sample_and_summed_losses_match_the_loop_reference(backend, case, dtype):
    # Oracle: each sample alone is a batch of one, whose mean loss is that sample's loss.
    N, C, eps = case
    logits, labels, _ = make_case(N, C)
    upstream = float32_exact(np.random.default_rng(3).standard_normal(N))
    expected = [ref.cross_entropy(logits[n:n + 1], labels[n:n + 1], eps) for n in range(N)]
    expected_grad = np.concatenate([ref.cross_entropy_backward(logits[n:n + 1], labels[n:n + 1], eps,
                                                               grad_loss=upstream[n]) for n in range(N)])
    z = backend.tensor(logits.astype(dtype), requires_grad=True)
    losses = F.cross_entropy(z, backend.array(labels), label_smoothing=eps, reduction="none")
    losses.backward(backend.array(upstream.astype(dtype)))
    assert losses.shape == (N,)
    assert_close(losses, expected, dtype)
    assert_close(z.grad, expected_grad, dtype, grad=True)
    total = F.cross_entropy(backend.tensor(logits.astype(dtype)), backend.array(labels), eps, reduction="sum")
    assert total.shape == ()
    assert_close(total, sum(expected), dtype, scale=max(1.0, sum(abs(e) for e in expected)))


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_per_sample_and_summed_losses_gradcheck(backend, reduction):
    logits, labels, _ = make_case(4, 5, seed=2)
    z = backend.tensor(logits, requires_grad=True)
    backend.gradcheck(lambda t: F.cross_entropy(t, backend.array(labels), 0.1, reduction=reduction), [z])


def test_unknown_reduction_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="'mean', 'sum', 'none'.*'elementwise'"):
        F.cross_entropy(minires.tensor(np.zeros((2, 3))), np.array([0, 1]), reduction="elementwise")


# ---- optional oracle: PyTorch (NumPy path) ---------------------------------------------------

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
        for reduction in ("none", "sum"):
            ours = F.cross_entropy(minires.tensor(logits), labels, smoothing, reduction=reduction)
            theirs = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(labels),
                                                       label_smoothing=smoothing, reduction=reduction)
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)
