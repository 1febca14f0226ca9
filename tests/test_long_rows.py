"""The NumPy path's layouts: long-row convolution (ops/long_rows.py) and channel-major memory
(ops/layout.py).

The long-row layout is checked piece by piece (the buffer's borders, the gathered columns
against the loop im2col) and as a whole: conv2d's output and gradients against the loop
reference on the layouts it has to get right (odd sizes, padding 0/1/2, per-axis padding,
non-square and 1x1 kernels, batch 1, many slabs with a shorter last one, either input
layout), that the long-row path is the one taken, and that it needs no activation-sized
scratch memory beyond the slabs. Then channel-major memory: batch norm's sums on either
layout, and a ResNet step that stays channel-major from the first conv to the loss.
"""
import tracemalloc

import numpy as np
import pytest
import reference as ref

import minires
import minires.functional as F
from minires.backends.cpu_threads import slab_threads
from minires.ops import conv
from minires.ops.layout import is_channel_major
from minires.ops.long_rows import LongRowGrid, fits_long_rows

# (N, C, OC, H, W, kernel, padding): every one takes the long-row path (stride 1, padding <= kernel - 1)
LONG_ROW_CASES = [
    (2, 3, 4, 7, 5, (3, 3), (1, 1)),     # odd, non-square image
    (1, 2, 3, 6, 6, (3, 3), (0, 0)),     # batch 1, no padding
    (2, 2, 3, 5, 7, (3, 3), (2, 2)),     # padding 2 = kernel - 1: the largest the layout takes
    (2, 3, 2, 6, 5, (2, 3), (1, 0)),     # non-square kernel, per-axis padding
    (2, 2, 3, 5, 6, (1, 3), (0, 2)),     # a 1-row kernel
    (2, 2, 2, 7, 4, (5, 1), (3, 0)),     # a 1-column kernel, padding 3
    (3, 4, 5, 5, 5, (1, 1), (0, 0)),     # 1x1: the buffer is the image, col is the buffer
    (1, 1, 1, 3, 3, (3, 3), (1, 1)),     # the smallest case
]


def case_id(case):
    N, C, OC, H, W, (kh, kw), (ph, pw) = case
    return f"N{N}-C{C}-OC{OC}-{H}x{W}-k{kh}x{kw}-p{ph}x{pw}"


def channel_major(array):
    """The same values, stored as the NumPy conv stores its outputs."""
    return np.ascontiguousarray(array.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


@pytest.mark.parametrize("case", LONG_ROW_CASES, ids=case_id)
def test_gathered_columns_are_the_loop_im2col_at_every_output(case):
    N, C, _, H, W, kernel, padding = case
    x = np.random.default_rng(0).standard_normal((N, C, H, W))
    grid = LongRowGrid((H, W), kernel, padding)
    OH, OW = grid.out_hw
    buffer = np.zeros((C, grid.buffer_length(N)))
    grid.fill(buffer, x.transpose(1, 0, 2, 3), N)
    kh, kw = kernel
    col = grid.gather(buffer, N, np.empty(C * kh * kw * grid.positions(N)))  # (kh, kw, C, Q): rows (i, j, c)
    expected = ref.im2col(x, kernel, 1, padding)  # (N, C*kh*kw, OH*OW), rows (c, i, j)
    at_outputs = grid.valid(col.reshape(kh * kw * C, -1), N).reshape(kh, kw, C, N, OH, OW)
    in_im2col_order = at_outputs.transpose(3, 2, 0, 1, 4, 5).reshape(N, C * kh * kw, OH * OW)
    np.testing.assert_array_equal(in_im2col_order, expected)


def test_a_shorter_slab_after_a_longer_one_sees_zeros_past_its_images():
    grid = LongRowGrid((4, 5), (3, 3), (1, 1))
    buffer = np.zeros((2, grid.buffer_length(3)))
    grid.fill(buffer, np.ones((2, 3, 4, 5)), 3)
    grid.fill(buffer, np.full((2, 1, 4, 5), 2.0), 1)
    start = grid.ph * grid.Wr
    body = buffer[:, start:start + grid.positions(1)].reshape(2, grid.Hr, grid.Wr)
    assert (body[:, :4, 1:] == 2).all() and (body[:, 4:, :] == 0).all() and (body[:, :, 0] == 0).all()
    assert (buffer[:, start + grid.positions(1):] == 0).all()  # the longer slab's images are gone
    assert (buffer[:, :start] == 0).all()


@pytest.mark.parametrize("kernel, stride, padding, expected", [
    ((3, 3), (1, 1), (1, 1), True), ((3, 3), (1, 1), (2, 2), True), ((1, 1), (1, 1), (0, 0), True),
    ((3, 3), (2, 2), (1, 1), False), ((1, 1), (1, 1), (1, 1), False), ((3, 3), (1, 2), (1, 1), False),
    ((2, 3), (1, 1), (1, 3), False),
])
def test_long_rows_are_used_exactly_for_stride_1_and_padding_up_to_kernel_minus_1(kernel, stride, padding, expected):
    assert fits_long_rows(kernel, stride, padding) is expected


def run_conv(x, w, upstream, padding, monkeypatch=None, slab_bytes=None):
    if slab_bytes is not None:
        monkeypatch.setattr(conv, "SLAB_BYTES", slab_bytes)
    tx, tw = minires.tensor(x, requires_grad=True), minires.tensor(w, requires_grad=True)
    y = F.conv2d(tx, tw, padding=padding)
    y.backward(upstream)
    return y.numpy(), tx.grad.numpy(), tw.grad.numpy()


@pytest.mark.parametrize("layout", ["nchw", "channel-major"])
@pytest.mark.parametrize("case", LONG_ROW_CASES, ids=case_id)
def test_long_row_conv_matches_the_loop_reference(monkeypatch, case, layout):
    N, C, OC, H, W, kernel, padding = case
    calls = []
    original = conv.correlate_long_rows
    monkeypatch.setattr(conv, "correlate_long_rows", lambda *args: calls.append(1) or original(*args))
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((OC, C) + kernel)
    upstream = rng.standard_normal((N, OC) + LongRowGrid((H, W), kernel, padding).out_hw)
    if layout == "channel-major":
        x, upstream = channel_major(x), channel_major(upstream)
    y, grad_x, grad_w = run_conv(x, w, upstream, padding)
    assert calls, "the forward did not take the long-row path"
    expected_gx, expected_gw, _ = ref.conv2d_backward(x, w, upstream, padding=padding)
    np.testing.assert_allclose(y, ref.conv2d(x, w, padding=padding), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x, expected_gx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_w, expected_gw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [LONG_ROW_CASES[0], LONG_ROW_CASES[2], LONG_ROW_CASES[5]], ids=case_id)
def test_long_row_conv_is_the_same_in_slabs_of_two_images_and_a_last_one_of_one(monkeypatch, case):
    _, C, OC, H, W, kernel, padding = case
    N = 5
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((N, C, H, W)), rng.standard_normal((OC, C) + kernel)
    upstream = rng.standard_normal((N, OC) + LongRowGrid((H, W), kernel, padding).out_hw)
    whole = run_conv(x, w, upstream, padding)
    per_image = max(C, OC) * kernel[0] * kernel[1] * LongRowGrid((H, W), kernel, padding).positions(1) * 8
    sliced = run_conv(x, w, upstream, padding, monkeypatch, slab_bytes=2 * per_image)  # slabs of 2, 2, 1
    assert conv.slab_ranges(N, per_image) == [(0, 2), (2, 4), (4, 5)]
    for a, b in zip(whole, sliced):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_long_row_conv_passes_gradcheck_in_several_slabs(monkeypatch):
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # one image per slab
    rng = np.random.default_rng(3)
    x = minires.tensor(rng.standard_normal((3, 2, 5, 4)), requires_grad=True)
    w = minires.tensor(rng.standard_normal((3, 2, 3, 2)), requires_grad=True)
    b = minires.tensor(rng.standard_normal(3), requires_grad=True)
    assert minires.gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=(1, 1)), [x, w, b]).passed


def test_long_row_conv_needs_no_activation_sized_scratch_beyond_its_slabs(monkeypatch):
    """Forward + backward of a conv whose activations are many slabs: what numpy allocates
    beyond the inputs and the results (y, then grad_x) is one slab's buffers, col and output
    grid per thread, not a copy of an activation (tracemalloc sees numpy's array memory)."""
    monkeypatch.setattr(conv, "SLAB_BYTES", 2**20)
    rng = np.random.default_rng(4)
    N, C, H = 128, 16, 32
    x = minires.tensor(channel_major(rng.standard_normal((N, C, H, H)).astype(np.float32)), requires_grad=True)
    w = minires.tensor(rng.standard_normal((C, C, 3, 3)).astype(np.float32), requires_grad=True)
    upstream = channel_major(rng.standard_normal((N, C, H, H)).astype(np.float32))
    grid = LongRowGrid((H, H), (3, 3), (1, 1))
    n = conv.slab_ranges(N, C * 9 * grid.positions(1) * 4)[0][1]
    one_slab = 4 * (C * 9 * grid.positions(n) + 2 * C * grid.buffer_length(n) + C * grid.positions(n))
    scratch = slab_threads() * one_slab  # every core works on a slab of its own (backends/cpu_threads.py)
    assert x.data.nbytes > 3 * scratch
    tracemalloc.start()
    try:
        y = F.conv2d(x, w, padding=1)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before_backward, _ = tracemalloc.get_traced_memory()
        grad_x, _, _ = y.grad_fn.backward(upstream)  # the op's own backward, without autograd's copies
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    small = 64 * 2**10  # weights, their gradient, Python objects
    assert forward_peak - y.data.nbytes < scratch + small
    assert backward_peak - before_backward - grad_x.nbytes < scratch + small


# ---- channel-major memory -----------------------------------------------------------------

def test_batch_norm_sums_give_the_same_answer_on_either_layout_and_mixed_layouts():
    rng = np.random.default_rng(5)
    x, upstream = rng.standard_normal((4, 3, 5, 6)), rng.standard_normal((4, 3, 5, 6))
    results = []
    for x_layout, grad_layout in [(np.ascontiguousarray, np.ascontiguousarray), (channel_major, channel_major),
                                  (channel_major, np.ascontiguousarray), (np.ascontiguousarray, channel_major)]:
        tx, gamma = minires.tensor(x_layout(x), requires_grad=True), minires.tensor(np.ones(3), requires_grad=True)
        y = F.batch_norm(tx, None, None, gamma, None, training=True)
        y.backward(grad_layout(upstream))
        results.append((y.numpy(), tx.grad.numpy(), gamma.grad.numpy()))
    expected_y = ref.batch_norm(x, None, None, np.ones(3), training=True)[0]
    expected_gx, expected_gw, _ = ref.batch_norm_backward(x, upstream, None, None, np.ones(3), training=True)
    for y, grad_x, grad_gamma in results:
        np.testing.assert_allclose(y, expected_y, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grad_x, expected_gx, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grad_gamma, expected_gw, rtol=1e-10, atol=1e-10)


def test_a_resnet_step_keeps_every_activation_and_gradient_channel_major(monkeypatch):
    """From the first conv on, every 4-D array an op makes or receives is channel-major: a
    layout mix-up would not be wrong, only several times slower (ops/layout.py)."""
    from minires.engine.function import Function
    from minires.models import resnet20

    seen = []
    original_call = Function.__call__

    def recording_call(self, *inputs):
        output = original_call(self, *inputs)
        if output.ndim == 4:
            seen.append((type(self).__name__, "output", is_channel_major(output.data)))
        return output

    monkeypatch.setattr(Function, "__call__", recording_call)
    model = resnet20()
    images = minires.tensor(np.random.default_rng(6).standard_normal((2, 3, 32, 32)).astype(np.float32))
    loss = F.cross_entropy(model(images), np.array([1, 2]))
    grads = []  # the gradient each op with a NumPy path of its own receives
    original_backward = Function.backward

    def recording_backward(self, grad):
        if grad.ndim == 4:
            grads.append((type(self).__name__, is_channel_major(grad)))
        return original_backward(self, grad)

    monkeypatch.setattr(Function, "backward", recording_backward)
    loss.backward()
    assert len(seen) > 50 and len(grads) > 50
    assert [entry for entry in seen if not entry[2]] == []
    assert [entry for entry in grads if not entry[1]] == []


@pytest.mark.parametrize("C, size", [(16, 32), (32, 16)])
def test_float32_input_gradient_rounds_less_than_one_gemm(C, size):
    """The input gradient is a sum of one GEMM per kernel offset (long_rows.multiply_in_blocks):
    its float32 error against float64 must stay well below that of one GEMM over all C*kh*kw
    terms (the flipped-kernel product on the loop im2col, each output one BLAS dot); measured
    0.44x and 0.40x of it (one GEMM per kernel row: 0.62x), as col2im gave."""
    rng = np.random.default_rng(1)
    N = 4
    # float32 values, so that the float64 result is exact for the float32 inputs
    x = rng.standard_normal((N, C, size, size)).astype(np.float32).astype(np.float64)
    w = (rng.standard_normal((C, C, 3, 3)) * np.sqrt(2 / (9 * C))).astype(np.float32).astype(np.float64)
    g = rng.standard_normal((N, C, size, size)).astype(np.float32).astype(np.float64)

    def grad_x(dtype):
        xt = minires.tensor(x.astype(dtype), requires_grad=True)
        F.conv2d(xt, minires.tensor(w.astype(dtype)), padding=1).backward(minires.tensor(g.astype(dtype)))
        return xt.grad.numpy().astype(np.float64)

    exact = grad_x(np.float64)
    w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(C, -1).astype(np.float32)
    col_g = ref.im2col(g, (3, 3), 1, 1).astype(np.float32)  # (N, C*9, H*W), exact copies
    one_gemm = np.matmul(w_flipped, col_g).reshape(exact.shape).astype(np.float64)

    def rms_error(result):
        return np.sqrt(np.mean((result - exact) ** 2) / np.mean(exact ** 2))

    assert rms_error(grad_x(np.float32)) < 0.55 * rms_error(one_gemm)
