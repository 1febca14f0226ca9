"""batch_norm for (N, C) and (N, C, H, W) on every backend: output, gradients and running statistics
against the loop reference, in training and evaluation, float32 and float64; gradcheck; the
nn.BatchNorm modules over train and eval steps; and the errors. PyTorch is a second oracle (NumPy path).
"""
import functools

import numpy as np
import pytest
import reference as ref
from backend_tools import assert_close, cases_on_backends, float32_exact, only_on

import minires
import minires.functional as F
from minires import nn
from minires.backends.cuda import batch_norm as bn_kernels
from minires.backends.emulator import emulate_kernels

# (shape, affine). (N, C) inputs have HW = 1.
# On the kernel path a channel's m = N * HW values are shared by P blocks of 256 threads, P from
# the wrapper's blocks_per_channel (P = 1 below 2048 values; see also the forced-P test below).
KERNEL_CASES = [
    ((3, 5), True),
    ((1, 3, 5, 7), True),        # batch 1 with HW > 1: training normalises over the image alone
    ((2, 4, 9, 17), True),       # m = 306 values per channel: more than a block has threads
    ((1, 2, 3, 11), False),      # batch 1, and gamma = 1, beta = 0
    ((5, 3, 21, 23), True),      # m = 2415 (not a multiple of 256): P = 2 blocks per channel, and
                                 # HW = 483 < stride 512, so a thread's walk carries into the next image
    ((2100, 3), True),           # HW = 1 with P = 2: the walk steps through the batch alone
    ((2, 3, 1, 1), True),        # m = 2: most threads of the block have nothing to add
]
MORE_CASES = [
    ((2, 3, 5, 5), True), ((2, 3, 5, 5), False),
    ((1, 3, 7, 5), True), ((1, 3, 7, 5), False),   # m = 35 values per channel from one image
    ((3, 5, 1, 1), True), ((3, 5, 1, 1), False),   # 1x1 images: m = N
    ((4, 3), True), ((4, 3), False),
    ((2, 5), True), ((2, 5), False),               # (N, C) with the smallest batch training allows
]
CASES = KERNEL_CASES + MORE_CASES


def case_id(case):
    shape, affine = case[:2]
    return "x".join(map(str, shape)) + ("-affine" if affine else "-no-affine") + "".join(
        "-train" if training else "-eval" for training in case[2:])


def make_data(shape, seed=0, affine=True):
    """x with its own offset and scale per channel (mean/var far from 0/1, so a wrong axis shows),
    running stats, gamma and beta (None without affine), all exact in float32."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    per_channel = (1, C) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(per_channel) + rng.uniform(-4, 4, C).reshape(per_channel)
    running_mean, running_var = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    weight = rng.uniform(0.5, 1.5, C) if affine else None
    bias = rng.standard_normal(C) if affine else None
    return tuple(None if a is None else float32_exact(a) for a in (x, running_mean, running_var, weight, bias))


@functools.cache
def case_data(case, training):
    """The inputs, an upstream gradient, and the loop reference's y, running stats and gradients."""
    shape, affine = case
    x, rm, rv, w, b = make_data(shape, affine=affine)
    upstream = float32_exact(np.random.default_rng(1).standard_normal(shape))
    y, new_rm, new_rv = ref.batch_norm(x, rm, rv, w, b, training=training)
    grads = ref.batch_norm_backward(x, upstream, rm, rv, w, training=training)
    return (x, rm, rv, w, b), upstream, (y, new_rm, new_rv), grads


def grad_x_scale(x, upstream, running_var, weight, training):
    """The size of the terms dL/dx is made of, max |gamma * inv_std * g|: in training dL/dx is a
    small difference of such terms (with N = 2 almost nothing is left), so its float32 error is relative to them."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)
    var = x.var(axis=axes) if training else running_var
    gamma = np.ones(x.shape[1]) if weight is None else weight
    return float(np.abs(upstream * (gamma / np.sqrt(var + 1e-5)).reshape(per_channel)).max())


def optional(backend, array, dtype=np.float64, requires_grad=False):
    return None if array is None else backend.tensor(array.astype(dtype), requires_grad=requires_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_batch_norm_matches_the_loop_reference(backend, case, training, dtype):
    (x, rm, rv, w, b), upstream, (expected_y, expected_rm, expected_rv), grads = case_data(case, training)
    running_mean, running_var = backend.array(rm.astype(dtype)), backend.array(rv.astype(dtype))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    tw, tb = optional(backend, w, dtype, True), optional(backend, b, dtype, True)
    y = F.batch_norm(tx, running_mean, running_var, tw, tb, training=training)
    assert_close(y, expected_y, dtype)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(tx.grad, grads[0], dtype, grad=True, scale=grad_x_scale(x, upstream, rv, w, training))
    if tw is not None:
        assert_close(tw.grad, grads[1], dtype, grad=True)
        assert_close(tb.grad, grads[2], dtype, grad=True)
    if training:  # updated in place: momentum 0.1, unbiased variance m/(m-1)
        assert_close(running_mean, expected_rm, dtype)
        assert_close(running_var, expected_rv, dtype)
        assert not np.allclose(backend.numpy(running_var), rv)  # they really moved
    else:  # evaluation reads the running stats and leaves them alone
        np.testing.assert_array_equal(backend.numpy(running_mean), rm.astype(dtype))
        np.testing.assert_array_equal(backend.numpy(running_var), rv.astype(dtype))


def test_batch_norm_running_var_is_unbiased_by_hand(backend):
    """The update rule spelled out for one channel with m = 4 values: var_biased = 1.25,
    var_unbiased = 5/3, new running_var = 0.9 * 1 + 0.1 * 5/3."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    rm, rv = backend.array(np.zeros(1)), backend.array(np.ones(1))
    y = F.batch_norm(backend.tensor(x), rm, rv, training=True)
    np.testing.assert_allclose(backend.numpy(rm), [0.1 * 2.5], rtol=1e-14)
    np.testing.assert_allclose(backend.numpy(rv), [0.9 + 0.1 * 5.0 / 3.0], rtol=1e-14)
    np.testing.assert_allclose(y.numpy()[:, 0], (x[:, 0] - 2.5) / np.sqrt(1.25 + 1e-5), rtol=1e-12)


def test_batch_norm_updates_running_stats_held_in_tensors(backend):
    x, rm, rv, w, b = make_data((2, 3, 5, 5))
    _, expected_rm, expected_rv = ref.batch_norm(x, rm, rv, w, b, training=True)
    t_rm, t_rv = backend.tensor(rm), backend.tensor(rv)
    F.batch_norm(backend.tensor(x), t_rm, t_rv, backend.tensor(w), backend.tensor(b), training=True)
    assert_close(t_rm, expected_rm, np.float64)
    assert_close(t_rv, expected_rv, np.float64)


@pytest.mark.parametrize("momentum", [0.0, 0.3, 1.0])
def test_batch_norm_momentum(backend, momentum):
    x, rm, rv, w, b = make_data((2, 3, 4, 4))
    _, expected_rm, expected_rv = ref.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum)
    running_mean, running_var = backend.array(rm), backend.array(rv)
    F.batch_norm(backend.tensor(x), running_mean, running_var, backend.tensor(w), backend.tensor(b),
                 training=True, momentum=momentum)
    assert_close(running_mean, expected_rm, np.float64)
    assert_close(running_var, expected_rv, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_training_without_running_stats(backend, dtype):
    x, _, _, w, b = make_data((2, 3, 5, 5))
    expected, _, _ = ref.batch_norm(x, None, None, w, b, training=True)
    y = F.batch_norm(backend.tensor(x.astype(dtype)), None, None, optional(backend, w, dtype),
                     optional(backend, b, dtype), training=True)
    assert_close(y, expected, dtype)


def test_batch_norm_training_output_is_normalised_per_channel(backend):
    x, _, _, _, _ = make_data((4, 3, 5, 5))
    y = F.batch_norm(backend.tensor(x), None, None, training=True, eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-10)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_batch_norm_eval_works_with_one_value_per_channel(backend, affine):
    """Evaluation needs no batch statistics, so a (1, C) input is fine (training rejects it, below)."""
    x, rm, rv, w, b = make_data((1, 3), affine=affine)
    expected, _, _ = ref.batch_norm(x, rm, rv, w, b, training=False)
    y = F.batch_norm(backend.tensor(x), backend.array(rm), backend.array(rv),
                     optional(backend, w), optional(backend, b), training=False)
    assert_close(y, expected, np.float64)


def test_running_stats_of_another_dtype_are_updated_in_their_own_dtype(backend):
    """float64 running stats with a float32 input: updated in float64 (on the kernel path as the
    NumPy path does it, since the in-place kernel needs stats of x's dtype)."""
    x, rm, rv, _, _ = make_data((2, 3, 4, 5), seed=2)
    running_mean, running_var = backend.array(rm), backend.array(rv)
    expected_rm, expected_rv = rm, rv
    for step in range(2):
        x_step = float32_exact(x + step)
        _, expected_rm, expected_rv = ref.batch_norm(x_step, expected_rm, expected_rv, training=True)
        F.batch_norm(backend.tensor(x_step.astype(np.float32)), running_mean, running_var, training=True)
    for actual, expected in ((running_mean, expected_rm), (running_var, expected_rv)):
        assert actual.dtype == np.float64
        np.testing.assert_allclose(backend.numpy(actual), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def test_batch_norm_reads_strided_input_gradient_and_running_stats(backend):
    """An NHWC array viewed as NCHW (not contiguous), a gradient viewed the same way, and running
    stats that are every other element of a longer array: the kernel path reads dense copies of x
    and the gradient, and must still update the running stats (which a copy would not) in place."""
    rng = np.random.default_rng(3)
    x_nhwc, upstream_nhwc = rng.standard_normal((2, 5, 6, 3)) + 2.0, rng.standard_normal((2, 5, 6, 3))
    x, upstream = x_nhwc.transpose(0, 3, 1, 2), upstream_nhwc.transpose(0, 3, 1, 2)
    expected_y, expected_rm, expected_rv = ref.batch_norm(x, np.zeros(3), np.ones(3), training=True)
    expected_grad, _, _ = ref.batch_norm_backward(x, upstream, None, None, training=True)

    storage = backend.array(np.stack([np.zeros(3), np.ones(3)], axis=1).reshape(-1))  # mean0, var0, mean1, ...
    tx = minires.Tensor(backend.array(x_nhwc).transpose(0, 3, 1, 2), requires_grad=True)  # a view, not a copy
    assert not tx.data.flags.c_contiguous
    y = F.batch_norm(tx, storage[0::2], storage[1::2], training=True)
    y.backward(backend.array(upstream_nhwc).transpose(0, 3, 1, 2))
    assert_close(y, expected_y, np.float64)
    assert_close(tx.grad, expected_grad, np.float64, grad=True)
    assert_close(storage, np.stack([expected_rm, expected_rv], axis=1).reshape(-1), np.float64)


def test_batch_norm_training_gradient_is_not_the_eval_gradient(backend):
    """In training, mean and var depend on x, so dL/dx must include those terms."""
    x, rm, rv, w, b = make_data((2, 3, 4, 4))
    G = backend.array(np.random.default_rng(9).standard_normal(x.shape))
    grads = []
    for training in (True, False):
        tx = backend.tensor(x, requires_grad=True)
        F.batch_norm(tx, backend.array(rm), backend.array(rv), backend.tensor(w), backend.tensor(b),
                     training=training).backward(G)
        grads.append(backend.numpy(tx.grad))
    assert not np.allclose(grads[0], grads[1])
    # Training: the gradient sums to zero over each channel (shifting a channel changes nothing).
    np.testing.assert_allclose(grads[0].sum(axis=(0, 2, 3)), 0.0, atol=1e-10)


# ---- the nn modules: two training steps, then one in evaluation -------------------------------

@pytest.mark.parametrize("module_class, shape", [(nn.BatchNorm2d, (2, 4, 9, 17)), (nn.BatchNorm1d, (7, 3))],
                         ids=["BatchNorm2d", "BatchNorm1d"])
def test_nn_batch_norm_modules_train_then_eval(backend, module_class, shape):
    """float32 buffers and parameters (updated by the kernel on the kernel path); gamma's and beta's
    gradients accumulate over the three steps."""
    x, _, _, w, b = make_data(shape, seed=4)
    upstream = float32_exact(np.random.default_rng(5).standard_normal((2,) + shape))
    layer = module_class(shape[1])
    layer.weight.data[...] = w
    layer.bias.data[...] = b
    layer.to(backend.device)
    expected_rm, expected_rv = np.zeros(shape[1]), np.ones(shape[1])
    expected_gw, expected_gb = np.zeros(shape[1]), np.zeros(shape[1])
    for step, training in enumerate((True, True, False)):
        layer.train(training)
        x_step, g_step = float32_exact(x * (step + 1)), upstream[step % 2]
        tx = backend.tensor(x_step.astype(np.float32), requires_grad=True)
        y = layer(tx)
        y.backward(backend.array(g_step.astype(np.float32)))
        expected_y, new_rm, new_rv = ref.batch_norm(x_step, expected_rm, expected_rv, w, b, training=training)
        gx, gw, gb = ref.batch_norm_backward(x_step, g_step, expected_rm, expected_rv, w, training=training)
        expected_rm, expected_rv = new_rm, new_rv
        expected_gw, expected_gb = expected_gw + gw, expected_gb + gb
        assert_close(y, expected_y, np.float32)
        assert_close(tx.grad, gx, np.float32, grad=True)
    assert_close(layer.weight.grad, expected_gw, np.float32, grad=True)
    assert_close(layer.bias.grad, expected_gb, np.float32, grad=True)
    assert_close(layer.running_mean, expected_rm, np.float32)
    assert_close(layer.running_var, expected_rv, np.float32)


# ---- the kernels' grid: P blocks per channel -------------------------------------------------

def test_blocks_per_channel_fills_the_gpu_without_starving_threads():
    """P = min(ceil(GPU_BLOCKS / C), m // (4 * 256), 64), at least 1."""
    assert bn_kernels.GPU_BLOCKS == 4 * 132
    # ResNet-20 at batch 128: 32x32 images with 16 channels, 16x16 with 32, 8x8 with 64.
    assert bn_kernels.blocks_per_channel(128 * 32 * 32, 16) == 33    # 528 blocks: fill the GPU
    assert bn_kernels.blocks_per_channel(128 * 16 * 16, 32) == 17    # 544 blocks
    assert bn_kernels.blocks_per_channel(128 * 8 * 8, 64) == 8       # 4 values a thread at most
    assert bn_kernels.blocks_per_channel(10**7, 1) == 64             # capped: a cheap second pass
    assert bn_kernels.blocks_per_channel(2047, 3) == 1               # too few values for 2 blocks
    assert bn_kernels.blocks_per_channel(2, 3) == 1
    assert bn_kernels.blocks_per_channel(10**6, 65535) == 1


def test_launch_plans_are_cached_and_checked():
    plan = bn_kernels.launch_plan(5, 3, 483)
    assert plan is bn_kernels.launch_plan(5, 3, 483)  # built once per shape
    assert plan.grid == (2, 3) and plan.partials_shape == (3, 2)
    assert [type(v) for v in plan.sizes + plan.combine_sizes] == [np.int32] * 7
    assert bn_kernels.launch_plan(2, 65535, 1).grid == (1, 65535)
    with pytest.raises(ValueError, match="65535"):  # one grid row per channel: grid.y <= 65535
        bn_kernels.launch_plan(2, 65536, 1)
    with pytest.raises(ValueError, match="32-bit int"):  # N * C * HW = 2^31
        bn_kernels.launch_plan(2**11, 2**10, 2**10)


def kernel_names_and_grids(launches):
    """{kernel name without its <T>: grid (x, y, z)} of the launches an emulate_kernels block recorded."""
    return {name.split("<")[0]: grid for name, grid, _ in launches}


@pytest.mark.parametrize("shape, P", [((6, 3, 23, 23), 3), ((2, 3, 4, 4), 1)], ids=["P=3", "P=1"])
@only_on("emulated")
def test_batch_norm_kernels_run_on_a_grid_of_P_blocks_per_channel(backend, shape, P):
    """(6, 3, 23, 23): m = 3174 values per channel, P = 3 blocks each, grid (3, C); a smaller
    input than 2 x 4 x 256 values per channel still works, on P = 1 block per channel."""
    case = (shape, True)
    (x, rm, rv, w, b), upstream, (expected_y, expected_rm, expected_rv), grads = case_data(case, True)
    launches = []
    with emulate_kernels(launches=launches):
        running_mean, running_var = backend.array(rm.copy()), backend.array(rv.copy())  # updated in place
        tx, tw, tb = (backend.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.batch_norm(tx, running_mean, running_var, tw, tb, training=True)
        y.backward(backend.array(upstream))
    grids = kernel_names_and_grids(launches)
    C = shape[1]
    for name in ("batch_norm_statistics_partials", "batch_norm_forward", "batch_norm_backward_reduce_partials",
                 "batch_norm_backward_input_training"):
        assert grids[name] == (P, C, 1), name
    for name in ("batch_norm_statistics_combine", "batch_norm_backward_reduce_combine",
                 "batch_norm_update_running_stats"):
        assert grids[name] == (1, 1, 1), name  # one thread per channel
    assert len(launches) == 7  # forward: 2 + 1 + 1, backward: 2 + 1
    assert_close(y, expected_y, np.float64)
    assert_close(running_mean, expected_rm, np.float64)
    assert_close(running_var, expected_rv, np.float64)
    assert_close(tx.grad, grads[0], np.float64, grad=True, scale=grad_x_scale(x, upstream, rv, w, True))
    assert_close(tw.grad, grads[1], np.float64, grad=True)
    assert_close(tb.grad, grads[2], np.float64, grad=True)


@pytest.fixture
def force_blocks_per_channel(monkeypatch):
    """force(P): make the wrapper use P blocks per channel whatever the input's size. The launch
    plans are cached per shape, so they are cleared on the way in and on the way out."""
    def force(P):
        monkeypatch.setattr(bn_kernels, "blocks_per_channel", lambda m, C: P)
        bn_kernels.launch_plan.cache_clear()
    yield force
    monkeypatch.undo()
    bn_kernels.launch_plan.cache_clear()


FORCED_CASES = [  # (shape, P): small inputs split over more blocks than the wrapper would choose
    ((5, 3, 9, 13), 2),    # m = 585, stride 512 > HW = 117: the carry decides where the walk goes next
    ((5, 3, 9, 13), 3),    # the third block only has values for 73 of its threads
    ((300, 4), 2),         # HW = 1
    ((2, 3, 1, 1), 2),     # m = 2: the second block of each channel has no value at all
    ((1, 2, 3, 11), 5),    # batch 1: the carry would step n past N
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape, P", FORCED_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"P={v}")
@only_on("emulated")
def test_batch_norm_kernels_with_a_forced_number_of_blocks_per_channel(backend, force_blocks_per_channel, shape,
                                                                        P, training):
    force_blocks_per_channel(P)
    N, C = shape[:2]
    assert bn_kernels.launch_plan(N, C, int(np.prod(shape[2:]))).grid == (P, C)
    (x, rm, rv, w, b), upstream, (expected_y, expected_rm, expected_rv), grads = case_data((shape, True), training)
    running_mean, running_var = backend.array(rm.copy()), backend.array(rv.copy())  # updated in place
    tx, tw, tb = (backend.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.batch_norm(tx, running_mean, running_var, tw, tb, training=training)
    y.backward(backend.array(upstream))
    assert_close(y, expected_y, np.float64)
    assert_close(running_mean, expected_rm, np.float64)
    assert_close(running_var, expected_rv, np.float64)
    assert_close(tx.grad, grads[0], np.float64, grad=True, scale=grad_x_scale(x, upstream, rv, w, training))
    assert_close(tw.grad, grads[1], np.float64, grad=True)
    assert_close(tb.grad, grads[2], np.float64, grad=True)


@only_on("emulated", "cuda")
def test_batch_norm_statistics_stay_accurate_in_float32_far_from_zero(backend):
    """Channels whose mean is far from 0 next to their std (1000 and 1, -300 and 0.1, 1e-3 and 1e-3):
    the one-pass statistics subtract each channel's first value before squaring, so float32 keeps
    var to 1e-4 of itself (E[x^2] - E[x]^2 would lose most of it; so would subtracting another
    channel's value). m = 2048: P = 2 blocks per channel."""
    rng = np.random.default_rng(7)
    means, stds = np.array([1000.0, -300.0, 1e-3]), np.array([1.0, 0.1, 1e-3])
    x = float32_exact(means.reshape(1, 3, 1, 1) + stds.reshape(1, 3, 1, 1) * rng.standard_normal((8, 3, 16, 16)))
    x[0, 0, 0, 0] = 1004.0  # channel 0's shift, its first value, 4 std from its mean: still accurate
    assert bn_kernels.launch_plan(8, 3, 256).grid == (2, 3)
    expected_mean, expected_var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # float64, two passes
    mean, var, inv_std = (backend.numpy(a) for a in bn_kernels.batch_norm_statistics(
        backend.array(x.astype(np.float32)), 1e-5))
    assert mean.dtype == var.dtype == inv_std.dtype == np.float32
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)
    np.testing.assert_allclose(var, expected_var, rtol=1e-4)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(expected_var + 1e-5), rtol=1e-4)


# ---- gradcheck -----------------------------------------------------------------------------

def in_both_modes(cases):
    return [case + (training,) for case in cases for training in (True, False)]


GRADCHECK_EMULATED = [((2, 1), True, True)]  # every sample is two launches: one small case


@cases_on_backends("case", in_both_modes(CASES), emulated=GRADCHECK_EMULATED, numpy=in_both_modes(MORE_CASES),
                   ids=case_id)
def test_batch_norm_gradcheck(backend, case):
    shape, affine, training = case
    x, rm, rv, w, b = make_data(shape, seed=1, affine=affine)
    tx, tw, tb = backend.tensor(x, requires_grad=True), optional(backend, w, requires_grad=True), \
        optional(backend, b, requires_grad=True)
    # In training the running stats change on every call but never affect the output.
    running_mean, running_var = backend.array(rm), backend.array(rv)
    params = (tw, tb) if affine else ()
    backend.gradcheck(lambda t: F.batch_norm(t, running_mean, running_var, tw, tb, training=training),
                      (tx,), params=params)


# ---- errors --------------------------------------------------------------------------------

def test_batch_norm_training_with_one_value_per_channel_raises(backend):
    with pytest.raises(ValueError, match="more than one value per channel"):
        F.batch_norm(backend.tensor(np.ones((1, 3))), backend.array(np.zeros(3)), backend.array(np.ones(3)),
                     training=True)


def test_batch_norm_training_batch1_spatial_1x1_raises(backend):
    with pytest.raises(ValueError):
        F.batch_norm(backend.tensor(np.ones((1, 3, 1, 1))), backend.array(np.zeros(3)), backend.array(np.ones(3)),
                     training=True)


def test_batch_norm_eval_without_running_stats_raises(backend):
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(backend.tensor(np.ones((2, 3))), None, None, training=False)


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_batch_norm_wrong_parameter_shape(backend, name):
    args = {"running_mean": backend.array(np.zeros(3)), "running_var": backend.array(np.ones(3)),
            "weight": backend.tensor(np.ones(3)), "bias": backend.tensor(np.zeros(3))}
    args[name] = backend.array(np.ones(4)) if name.startswith("running") else backend.tensor(np.ones(4))
    with pytest.raises(ValueError, match=name):
        F.batch_norm(backend.tensor(np.ones((2, 3, 2, 2))), training=True, **args)


@pytest.mark.parametrize("shape", [(2, 3, 4), (3,), (1, 2, 3, 4, 5)])
def test_batch_norm_rejects_3d_and_other_ranks(backend, shape):
    with pytest.raises(ValueError, match="2-D or 4-D"):
        F.batch_norm(backend.tensor(np.ones(shape)), None, None, training=True)


def test_batch_norm_integer_input_raises_type_error(backend):
    with pytest.raises(TypeError, match="int64"):
        F.batch_norm(backend.tensor(np.ones((2, 3), dtype=np.int64)), None, None, training=True)


# ---- optional oracle: PyTorch (NumPy path) ---------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [shape for shape, affine in MORE_CASES if affine], ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_matches_torch(shape, training):
    torch = pytest.importorskip("torch")
    x, rm, rv, w, b = make_data(shape, seed=4)
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
