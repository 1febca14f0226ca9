"""Gradient checkpointing (minires/engine/checkpoint.py): the same outputs and gradients as running the
function directly, with nothing kept but the inputs; module state and random numbers as if it ran once.
(Not the training checkpoints of minires/serialization.py.)"""
import numpy as np
import pytest
from backend_tools import only_on

import minires
import minires.functional as F
from minires import nn
from minires.engine.checkpoint import checkpoint, graph_bytes


class ConvBNReLU(nn.Module):
    """A piece of network with a batch norm (running statistics) and, optionally, a dropout."""

    def __init__(self, channels, dropout=0.0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.dropout = dropout

    def forward(self, x):
        out = F.relu(self.norm(self.conv(x)))
        return F.dropout(out, self.dropout) if self.dropout else out


def float64_piece(seed=0, dropout=0.0, channels=3):
    minires.manual_seed(seed)
    return ConvBNReLU(channels, dropout).double()


def random_input(shape=(2, 3, 5, 5), seed=1):
    return minires.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def gradients(module, x, upstream, use_checkpoint):
    """The output and the gradients of sum(upstream * module(x)) for x and every parameter."""
    module.zero_grad()
    x.grad = None
    y = checkpoint(module, x) if use_checkpoint else module(x)
    y.backward(upstream)
    return y.numpy(), x.grad.numpy(), [p.grad.numpy() for p in module.parameters()]


def test_same_output_and_gradients_as_running_the_function():
    x = random_input()
    upstream = np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    plain = gradients(float64_piece(), x, upstream, use_checkpoint=False)
    checkpointed = gradients(float64_piece(), x, upstream, use_checkpoint=True)
    np.testing.assert_array_equal(checkpointed[0], plain[0])
    np.testing.assert_allclose(checkpointed[1], plain[1], rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(checkpointed[2], plain[2]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
    assert np.abs(plain[1]).max() > 0 and all(np.abs(g).max() > 0 for g in plain[2])


def test_gradcheck_through_a_checkpoint_with_a_random_upstream_gradient():
    piece = float64_piece()
    x = random_input((2, 3, 4, 4))
    result = minires.gradcheck(lambda t: checkpoint(piece, t), [x], params=list(piece.parameters()))
    assert result.passed and result.comparisons > 0


def test_the_node_keeps_nothing_but_its_inputs_and_backward_frees_the_recomputed_graph():
    piece, x = float64_piece(), random_input()
    assert graph_bytes(piece(x)) > 0  # batch norm's output (held by ReLU) and ReLU's, the convolution's
    y = checkpoint(piece, x)
    assert graph_bytes(y) == 0  # the only input is a leaf, whose memory is the caller's
    hidden = minires.tanh(x)  # a non-leaf input (tanh saves it too): its values are what is kept
    assert graph_bytes(checkpoint(piece, hidden)) == hidden.data.nbytes
    assert type(y.grad_fn).__name__ == "CheckpointFunction" and y.grad_fn.saved_tensors == ()


def test_graph_bytes_counts_saved_arrays_and_held_activations_once_each():
    x = random_input((4, 3))
    h = minires.tanh(x)  # holds the leaf x (not counted), saves its output h
    r = F.relu(h)  # holds h, saves its output r
    assert graph_bytes(r) == h.data.nbytes + r.data.nbytes
    assert graph_bytes(r * r) == h.data.nbytes + r.data.nbytes  # r saved twice, counted once
    assert graph_bytes(x) == 0 and graph_bytes(minires.tensor(np.ones(3))) == 0


def test_running_statistics_move_once_per_step_not_twice():
    x = random_input()
    upstream = np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    plain, checkpointed = float64_piece(), float64_piece()
    for _ in range(2):  # two steps: the second starts from the first's statistics
        gradients(plain, x, upstream, use_checkpoint=False)
        gradients(checkpointed, x, upstream, use_checkpoint=True)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        mine, theirs = getattr(checkpointed.norm, name).numpy(), getattr(plain.norm, name).numpy()
        np.testing.assert_array_equal(mine, theirs, err_msg=name)
    assert plain.norm.num_batches_tracked.numpy() == 2
    assert not np.allclose(plain.norm.running_mean.numpy(), 0)  # they moved at all


def test_the_recompute_really_runs_batch_norm_in_training_mode():
    # the state above is restored, not left alone: backward runs the batch norm a second time
    piece, x, calls = float64_piece(), random_input(), []
    piece.norm.register_forward_hook(lambda module, args, out: calls.append(module.training))
    y = checkpoint(piece, x)
    assert calls == [True]
    y.backward(np.ones(y.shape))
    assert calls == [True, True]


def test_a_dropout_inside_draws_the_same_mask_in_the_recompute_and_the_generator_moves_on_once():
    x = random_input()
    upstream = np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    after = {}
    for use_checkpoint in (False, True):
        piece = float64_piece(seed=5, dropout=0.5)
        minires.manual_seed(7)
        after[use_checkpoint] = gradients(piece, x, upstream, use_checkpoint) + (minires.rand(4).numpy(),)
    plain, checkpointed = after[False], after[True]
    np.testing.assert_array_equal(checkpointed[0], plain[0])
    np.testing.assert_allclose(checkpointed[1], plain[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(checkpointed[3], plain[3])  # the draw after backward: the same
    assert (plain[0] == 0).any()  # the dropout dropped something


def test_backward_twice_with_retain_graph_recomputes_twice():
    piece, x = float64_piece(), random_input()
    upstream = np.random.default_rng(2).standard_normal((2, 3, 5, 5))
    once = gradients(piece, x, upstream, use_checkpoint=True)[1]
    x.grad = None
    y = checkpoint(piece, x)
    y.backward(upstream, retain_graph=True)
    y.backward(upstream)
    np.testing.assert_allclose(x.grad.numpy(), 2 * once, rtol=1e-12, atol=1e-12)


def test_without_a_graph_or_without_an_input_needing_a_gradient_it_just_runs_the_function():
    piece = float64_piece()
    with minires.no_grad():
        y = checkpoint(piece, random_input())
    assert y.grad_fn is None and not y.requires_grad
    x = minires.tensor(np.random.default_rng(1).standard_normal((2, 3, 5, 5)))  # needs no gradient
    y = checkpoint(piece, x)
    assert type(y.grad_fn).__name__ != "CheckpointFunction"
    y.sum().backward()
    assert piece.conv.weight.grad is not None  # the parameters inside still get theirs


def test_bad_arguments_are_refused_with_the_fix():
    x = random_input()
    with pytest.raises(TypeError, match="function must be callable"):
        checkpoint(x, x)
    with pytest.raises(TypeError, match="input 1 is a numpy.ndarray.*minires.tensor"):
        checkpoint(lambda a, b: a, x, np.ones(3))
    with pytest.raises(TypeError, match="output of function"):
        checkpoint(lambda a: a.data, x)


@only_on("numpy", "emulated", "cuda")
def test_checkpoint_on_every_backend(backend):
    # a tiny batch norm and ReLU: on the kernel backends, forward, recompute and backward all run our kernels
    minires.manual_seed(0)
    norm = nn.BatchNorm2d(2).double().to(backend.device)
    rng = np.random.default_rng(3)
    x = backend.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    upstream = backend.array(rng.standard_normal((2, 2, 3, 3)))
    results = []
    for use_checkpoint in (False, True):
        x.grad = None
        norm.zero_grad()
        y = checkpoint(lambda t: F.relu(norm(t)), x) if use_checkpoint else F.relu(norm(x))
        y.backward(upstream)
        results.append([backend.numpy(a) for a in (y, x.grad, norm.weight.grad, norm.bias.grad)])
    for mine, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)
