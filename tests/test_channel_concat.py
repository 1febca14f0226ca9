"""Channel concatenation (``minires.cat`` of 4-D tensors along dim 1, the ChannelConcat op) on every
backend: output and gradients against loop references, gradcheck, the NumPy path's channel-major
output and view-only backward, which calls take it (and which stay with Concatenate), no read-back
on the kernel path, the errors, and PyTorch as an oracle."""
import numpy as np
import pytest

import minires
from backend_tools import assert_close, cases_on_backends, float32_exact, only_on
from kernel_instruments import DeviceArray, to_stand_in_device
from minires.backends.emulator import emulate_kernels, emulator_status
from minires.ops.concat import ChannelConcat
from minires.ops.layout import channel_major_zeros, is_channel_major
from minires.ops.shape import Concatenate

# (N, H, W, channel counts of the inputs)
CASES = [
    (2, 4, 5, (3, 1, 2)),
    (1, 3, 3, (2, 4)),       # one image: on the kernel path the gradients are views
    (3, 1, 1, (1, 1, 1, 1)),
    (2, 6, 7, (5,)),         # a single input
    (2, 2, 3, (2, 0, 3)),    # an input with no channels
    (4, 8, 8, (16, 8, 8, 8)),  # a dense block: growth rate 8
]
EMULATED = [(2, 2, 3, (3, 1, 2)), (1, 3, 2, (2, 3)), (2, 2, 2, (2, 0, 1))]


def case_id(case):
    N, H, W, channels = case
    return f"N{N}-{H}x{W}-C{'+'.join(map(str, channels))}"


def inputs(case, seed=0):
    N, H, W, channels = case
    rng = np.random.default_rng(seed)
    return [float32_exact(rng.standard_normal((N, C, H, W))) for C in channels]


def ref_channel_concat(xs):
    N, _, H, W = xs[0].shape
    y = np.zeros((N, sum(x.shape[1] for x in xs), H, W))
    for n in range(N):
        c_out = 0
        for x in xs:
            for c in range(x.shape[1]):
                for h in range(H):
                    for w in range(W):
                        y[n, c_out, h, w] = x[n, c, h, w]
                c_out += 1
    return y


def ref_channel_concat_backward(xs, g):
    """dL/dx_k[n, c] = g[n, (channels before x_k) + c]."""
    grads, c0 = [], 0
    for x in xs:
        grad = np.zeros(x.shape)
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                grad[n, c] = g[n, c0 + c]
        grads.append(grad)
        c0 += x.shape[1]
    return grads


@pytest.mark.parametrize("dim", [1, -3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=EMULATED, ids=case_id)
def test_output_and_gradients_match_the_loop_reference(backend, case, dtype, dim):
    xs = inputs(case)
    tensors = [backend.tensor(x.astype(dtype), requires_grad=True) for x in xs]
    y = minires.cat(tensors, dim=dim)
    assert isinstance(y.grad_fn, ChannelConcat)
    g = float32_exact(np.random.default_rng(1).standard_normal(y.shape))
    y.backward(backend.array(g.astype(dtype)))
    assert y.device == tensors[0].device
    assert_close(y, ref_channel_concat(xs), dtype)
    for t, expected in zip(tensors, ref_channel_concat_backward(xs, g)):
        assert_close(t.grad, expected, dtype, grad=True)


@cases_on_backends("case", CASES[:4], emulated=[(2, 2, 1, (1, 2))], ids=case_id)
def test_gradcheck(backend, case):
    tensors = [backend.tensor(x, requires_grad=True) for x in inputs(case, seed=2)]
    backend.gradcheck(lambda *ts: minires.cat(list(ts), dim=1), tensors)


def test_inputs_without_requires_grad_get_no_gradient(backend):
    xs = inputs((2, 2, 2, (1, 2, 1)), seed=3)
    a, b, c = (backend.tensor(x, requires_grad=k != 1) for k, x in enumerate(xs))
    y = minires.cat([a, b, c], 1)
    g = np.random.default_rng(4).standard_normal(y.shape)
    y.backward(backend.array(g))
    expected = ref_channel_concat_backward(xs, g)
    assert b.grad is None
    assert_close(a.grad, expected[0], np.float64, grad=True)
    assert_close(c.grad, expected[2], np.float64, grad=True)


def test_the_same_tensor_twice_gets_both_blocks_of_the_gradient(backend):
    x = inputs((2, 2, 3, (2,)), seed=12)[0]
    t = backend.tensor(x, requires_grad=True)
    y = minires.cat([t, t, t], 1)
    g = np.random.default_rng(13).standard_normal(y.shape)
    y.backward(backend.array(g))
    assert_close(y, ref_channel_concat([x, x, x]), np.float64)
    assert_close(t.grad, g[:, 0:2] + g[:, 2:4] + g[:, 4:6], np.float64, grad=True)


@only_on("numpy")
@pytest.mark.parametrize("layout", ["channel-major", "C-order"])
def test_the_numpy_path_outputs_channel_major_and_its_backward_returns_views(backend, layout):
    xs = inputs((3, 4, 5, (2, 3, 1)), seed=5)
    if layout == "channel-major":  # as a convolution hands them on (ops/layout.py)
        stored = [channel_major_zeros(x.shape, x.dtype) for x in xs]
        for s, x in zip(stored, xs):
            s[...] = x
        xs = stored
    tensors = [minires.Tensor(x, requires_grad=True) for x in xs]
    op = ChannelConcat()
    y = op(*tensors)
    assert is_channel_major(y.data)
    assert_close(y, ref_channel_concat(xs), np.float64)
    # each input is one contiguous block of y's memory
    bounds = np.cumsum([0] + [x.shape[1] for x in xs])
    for start, end in zip(bounds[:-1], bounds[1:]):
        assert y.data[:, start:end].transpose(1, 0, 2, 3).flags.c_contiguous
    # backward hands each input a view of its block of the gradient: no copy
    g = channel_major_zeros(y.shape, np.float64)
    g[...] = np.random.default_rng(6).standard_normal(y.shape)
    grads = op.backward(g)
    for grad, expected in zip(grads, ref_channel_concat_backward(xs, g)):
        assert np.shares_memory(grad, g) and grad.base is not None
        assert is_channel_major(grad)
        np.testing.assert_array_equal(grad, expected)
    # the whole backward, through the engine, still gives each leaf its own copy of its block
    y = minires.cat(tensors, 1)
    y.backward(g)
    for t, expected in zip(tensors, ref_channel_concat_backward(xs, g)):
        assert not np.shares_memory(t.grad.data, g)
        np.testing.assert_array_equal(t.grad.data, expected)


@only_on("emulated")
@pytest.mark.parametrize("N", [1, 2])
def test_the_kernel_path_backward_views_one_image_and_copies_several(backend, N):
    xs = inputs((N, 2, 3, (2, 1)), seed=7)
    op = ChannelConcat()
    y = op(*[backend.tensor(x, requires_grad=True) for x in xs])
    g = np.random.default_rng(8).standard_normal(y.shape)
    grads = op.backward(g)
    for grad, expected in zip(grads, ref_channel_concat_backward(xs, g)):
        assert grad.flags.c_contiguous and np.shares_memory(grad, g) == (N == 1)
        np.testing.assert_array_equal(grad, expected)


@pytest.mark.skipif(not emulator_status()[0], reason=emulator_status()[1])
def test_the_kernel_path_reads_nothing_back():
    xs = [to_stand_in_device(x) for x in inputs((2, 2, 2, (1, 2)), seed=9)]
    tensors = [minires.Tensor(x, requires_grad=True) for x in xs]
    with emulate_kernels():
        y = minires.cat(tensors, 1)
        y.backward(to_stand_in_device(np.ones(y.shape)))
    assert type(y.data) is DeviceArray and all(type(t.grad.data) is DeviceArray for t in tensors)
    np.testing.assert_array_equal(np.asarray(y.data), np.concatenate([np.asarray(x) for x in xs], axis=1))


def test_other_concatenations_stay_with_the_generic_op(backend):
    f = lambda shape: backend.tensor(np.ones(shape), requires_grad=True)  # noqa: E731
    cases = [
        ([f((2, 3, 4, 5)), f((2, 3, 4, 5))], 0),  # 4-D along another dim
        ([f((2, 3, 4, 5)), f((2, 3, 4, 5))], 2),
        ([f((2, 3, 4)), f((2, 1, 4))], 1),  # 3-D along dim 1
        ([f((2, 3)), f((2, 1))], -1),
    ]
    for tensors, dim in cases:
        y = minires.cat(tensors, dim)
        assert isinstance(y.grad_fn, Concatenate), (tensors[0].shape, dim)
        np.testing.assert_array_equal(backend.numpy(y), np.concatenate([backend.numpy(t) for t in tensors], dim))
    ints = [backend.tensor(np.ones((1, 2, 2, 2), np.int64)), backend.tensor(np.zeros((1, 1, 2, 2), np.int64))]
    assert minires.cat(ints, 1).shape == (1, 3, 2, 2)  # integer tensors: the generic op, on every path
    assert minires.concatenate([f((1, 2, 2, 2)), f((1, 1, 2, 2))], axis=1).grad_fn.__class__ is ChannelConcat


def test_errors_name_the_problem(backend):
    x = backend.tensor(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"^cat: tensors must agree in N, H and W .*tensor 1 \(3, 1, 4, 5\)"):
        minires.cat([x, backend.tensor(np.zeros((3, 1, 4, 5)))], 1)
    with pytest.raises(ValueError, match=r"tensor 2 \(2, 1, 4, 6\)"):
        minires.cat([x, x, backend.tensor(np.zeros((2, 1, 4, 6)))], 1)
    with pytest.raises(ValueError, match=r"tensor 1 \(2, 1, 3, 5\)"):
        minires.cat([x, backend.tensor(np.zeros((2, 1, 3, 5)))], -3)
    with pytest.raises(TypeError, match=r"^cat: tensors must share one dtype, but tensor 0 is float64 and "
                                        r"tensor 1 is float32; convert one with .astype\('float64'\)"):
        minires.cat([x, backend.tensor(np.zeros((2, 1, 4, 5), np.float32))], 1)
    with pytest.raises(ValueError, match="needs at least one tensor"):
        minires.cat([], 1)
    from minires.ops.concat import channel_concat
    with pytest.raises(ValueError, match=r"takes \(N, C, H, W\) tensors, but tensor 1 has shape \(2, 3\)"):
        channel_concat([x, backend.tensor(np.zeros((2, 3)))])


@cases_on_backends("case", CASES[:4], emulated=EMULATED[:1], ids=case_id)
def test_matches_pytorch(backend, case):
    torch = pytest.importorskip("torch")
    xs = inputs(case, seed=10)
    tensors = [backend.tensor(x, requires_grad=True) for x in xs]
    y = minires.cat(tensors, 1)
    g = np.random.default_rng(11).standard_normal(y.shape)
    y.backward(backend.array(g))
    theirs = [torch.tensor(x, requires_grad=True) for x in xs]
    y_t = torch.cat(theirs, 1)
    y_t.backward(torch.tensor(g))
    np.testing.assert_array_equal(backend.numpy(y), y_t.detach().numpy())
    for t, t_torch in zip(tensors, theirs):
        np.testing.assert_array_equal(backend.numpy(t.grad), t_torch.grad.numpy())
