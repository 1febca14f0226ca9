"""kernels/batch_norm.cu through the public API, against the NumPy path.

Emulated tests run the kernels on host threads (minires.backends.emulator) with NumPy
inputs and compare with the same call made outside the emulation; GPU tests compare
a CUDA tensor with a CPU one. Both check the output, the gradients for x, gamma and
beta under a random upstream gradient, and the running statistics after two steps.
"""
import numpy
import pytest

import minires
import minires.functional as F
import minires.nn as nn
from minires.backends import to_device
from minires.backends.emulator import emulate_kernels

# (N, C) inputs are HW = 1; (2, 4, 9, 17) has m = 306 values per channel, more than one block of 256 threads.
SHAPES = [(3, 5), (1, 3, 5, 7), (2, 4, 9, 17)]
TOLERANCES = {numpy.float32: (1e-5, 1e-4), numpy.float64: (1e-12, 1e-11)}  # (forward, gradients)


def ids(shape):
    return "x".join(map(str, shape))


def relative_error(actual, expected):
    """max |actual - expected| relative to the largest |expected| (0-centred outputs have tiny elements)."""
    actual, expected = numpy.asarray(actual, dtype=numpy.float64), numpy.asarray(expected, dtype=numpy.float64)
    assert actual.shape == expected.shape
    return numpy.max(numpy.abs(actual - expected)) / max(numpy.max(numpy.abs(expected)), 1e-30)


def make_inputs(shape, dtype, seed=0):
    """x with a different offset and scale per channel (a wrong channel index shows), gamma,
    beta, running stats, and a random upstream gradient for two steps."""
    rng = numpy.random.default_rng(seed)
    C = shape[1]
    per_channel = (1, C) + (1,) * (len(shape) - 2)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, C).reshape(per_channel) + rng.uniform(-4, 4, C).reshape(per_channel)
    arrays = dict(x=x, gamma=rng.uniform(0.5, 1.5, C), beta=rng.standard_normal(C),
                  running_mean=rng.standard_normal(C), running_var=rng.uniform(0.5, 2, C),
                  upstream=rng.standard_normal((2,) + shape))
    return {name: a.astype(dtype) for name, a in arrays.items()}


def run_two_steps(arrays, training, device="cpu", affine=True):
    """Two forward/backward steps of F.batch_norm; returns outputs, gradients and running stats as NumPy."""
    def t(a, requires_grad=False):
        return minires.tensor(a, device=device, requires_grad=requires_grad)

    running_mean, running_var = t(arrays["running_mean"]), t(arrays["running_var"])
    gamma = t(arrays["gamma"], requires_grad=True) if affine else None
    beta = t(arrays["beta"], requires_grad=True) if affine else None
    results = {}
    for step in range(2):
        x = t(arrays["x"] + step, requires_grad=True)  # the second step sees a shifted batch
        y = F.batch_norm(x, running_mean, running_var, gamma, beta, training=training)
        y.backward(t(arrays["upstream"][step]))
        results[f"y{step}"], results[f"grad_x{step}"] = y.numpy(), to_device(x.grad, "cpu")
        assert y.dtype == x.dtype and x.grad.dtype == x.dtype
    if affine:  # accumulated over both steps
        results["grad_gamma"], results["grad_beta"] = to_device(gamma.grad, "cpu"), to_device(beta.grad, "cpu")
    results["running_mean"], results["running_var"] = running_mean.numpy(), running_var.numpy()
    return results


def assert_results_match(actual, expected, dtype):
    forward_tol, grad_tol = TOLERANCES[dtype]
    assert sorted(actual) == sorted(expected)
    for name in expected:
        tol = forward_tol if name.startswith(("y", "running")) else grad_tol
        error = relative_error(actual[name], expected[name])
        assert error < tol, f"{name}: relative error {error:.2e} >= {tol:.0e}"


# ---- emulated on the CPU -----------------------------------------------------------

def on_numpy(fn, *args, **kwargs):
    """Run fn on the pure NumPy path, even inside the emulated_kernels fixture."""
    with emulate_kernels(enabled=False):
        return fn(*args, **kwargs)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=ids)
def test_functional_batch_norm_matches_numpy(emulated_kernels, shape, training, dtype):
    arrays = make_inputs(shape, dtype)
    expected = on_numpy(run_two_steps, arrays, training)
    actual = run_two_steps(arrays, training)
    assert_results_match(actual, expected, dtype)
    if training:  # the running stats moved (identically to the NumPy path, checked above)
        assert relative_error(actual["running_var"], arrays["running_var"]) > 1e-3
    else:
        numpy.testing.assert_array_equal(actual["running_mean"], arrays["running_mean"])
        numpy.testing.assert_array_equal(actual["running_var"], arrays["running_var"])


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_one_and_no_affine(emulated_kernels, training):
    """Batch 1 with HW > 1 (training normalises over the image alone), and gamma = 1, beta = 0."""
    arrays = make_inputs((1, 2, 3, 11), numpy.float64, seed=1)
    expected = on_numpy(run_two_steps, arrays, training, affine=False)
    assert_results_match(run_two_steps(arrays, training, affine=False), expected, numpy.float64)


def test_running_stats_of_another_dtype_and_no_running_stats(emulated_kernels):
    """float64 running stats with float32 input are updated in float64, as on the NumPy path;
    training without running stats needs no update at all."""
    arrays = make_inputs((2, 3, 4, 5), numpy.float32, seed=2)
    x = arrays["x"]
    stats = {path: (arrays["running_mean"].astype(numpy.float64), arrays["running_var"].astype(numpy.float64))
             for path in ("numpy", "kernels")}
    for step in range(2):
        expected = on_numpy(F.batch_norm, minires.tensor(x + step), *stats["numpy"], training=True)
        actual = F.batch_norm(minires.tensor(x + step), *stats["kernels"], training=True)
        assert relative_error(actual.data, expected.data) < 1e-5
    for expected, actual in zip(stats["numpy"], stats["kernels"]):
        assert actual.dtype == numpy.float64 and relative_error(actual, expected) < 1e-6
    without = F.batch_norm(minires.tensor(x), None, None, training=True)
    assert relative_error(without.data, on_numpy(F.batch_norm, minires.tensor(x), None, None, training=True).data) < 1e-5


def test_strided_input_gradient_and_running_stats(emulated_kernels):
    """An NHWC array viewed as NCHW (not contiguous), a gradient viewed the same way, and running
    stats that are every other element of a longer array: the kernels read dense copies of x and
    the gradient, and the running stats (which a copy would not update) are updated as on the CPU."""
    rng = numpy.random.default_rng(3)
    x_nhwc, upstream_nhwc = rng.standard_normal((2, 5, 6, 3)) + 2.0, rng.standard_normal((2, 5, 6, 3))

    def run():
        storage = numpy.stack([numpy.zeros(3), numpy.ones(3)], axis=1).reshape(-1)  # mean0, var0, mean1, ...
        x = minires.Tensor(x_nhwc.transpose(0, 3, 1, 2), requires_grad=True)  # a view, not a copy
        assert not x.data.flags.c_contiguous
        y = F.batch_norm(x, storage[0::2], storage[1::2], training=True)
        y.backward(upstream_nhwc.transpose(0, 3, 1, 2))
        return y.data, x.grad, storage

    for actual, expected in zip(run(), on_numpy(run)):
        assert relative_error(actual, expected) < 1e-12
    assert relative_error(run()[2], [0, 1, 0, 1, 0, 1]) > 1e-3  # the running stats moved


MODULES = [(nn.BatchNorm2d, (2, 4, 9, 17)), (nn.BatchNorm1d, (7, 3))]


def run_module_steps(module_class, arrays, device="cpu"):
    """Two training steps (the running buffers are float32, like x: updated by the kernel),
    then one in evaluation; outputs, gradients and buffers as NumPy."""
    layer = module_class(arrays["x"].shape[1])
    layer.weight.data[...] = arrays["gamma"]
    layer.bias.data[...] = arrays["beta"]
    layer.to(device)
    results = {}
    for step, training in enumerate((True, True, False)):
        layer.train(training)
        x = minires.tensor(arrays["x"] * (step + 1), device=device, requires_grad=True)
        y = layer(x)
        y.backward(arrays["upstream"][step % 2])
        results[f"y{step}"], results[f"grad_x{step}"] = y.numpy(), to_device(x.grad, "cpu")
    results["grad_gamma"], results["grad_beta"] = to_device(layer.weight.grad, "cpu"), to_device(layer.bias.grad, "cpu")
    results["running_mean"], results["running_var"] = layer.running_mean.numpy(), layer.running_var.numpy()
    return results


@pytest.mark.parametrize("module_class, shape", MODULES, ids=["BatchNorm2d", "BatchNorm1d"])
def test_nn_batch_norm_modules_train_then_eval(emulated_kernels, module_class, shape):
    arrays = make_inputs(shape, numpy.float32, seed=4)
    expected = on_numpy(run_module_steps, module_class, arrays)
    assert_results_match(run_module_steps(module_class, arrays), expected, numpy.float32)


# ---- on a real GPU -----------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES + [(1, 2, 3, 11)], ids=ids)
def test_gpu_functional_batch_norm_matches_cpu(gpu_poisoned, shape, training, dtype):
    arrays = make_inputs(shape, dtype)
    expected = run_two_steps(arrays, training, device="cpu")
    assert_results_match(run_two_steps(arrays, training, device="cuda"), expected, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("module_class, shape", MODULES, ids=["BatchNorm2d", "BatchNorm1d"])
def test_gpu_nn_batch_norm_modules_match_cpu(gpu_poisoned, module_class, shape):
    arrays = make_inputs(shape, numpy.float32, seed=4)
    expected = run_module_steps(module_class, arrays, device="cpu")
    assert_results_match(run_module_steps(module_class, arrays, device="cuda"), expected, numpy.float32)


@pytest.mark.gpu
def test_gpu_running_stats_of_another_dtype_are_updated_like_cpu(gpu_poisoned):
    arrays = make_inputs((2, 3, 4, 5), numpy.float32, seed=2)
    stats = {}
    for device in ("cpu", "cuda"):
        stats[device] = [minires.tensor(arrays[name].astype(numpy.float64), device=device)
                         for name in ("running_mean", "running_var")]
        for step in range(2):
            F.batch_norm(minires.tensor(arrays["x"] + step, device=device), *stats[device], training=True)
    for actual, expected in zip(stats["cuda"], stats["cpu"]):
        assert actual.dtype == numpy.float64 and relative_error(actual.numpy(), expected.numpy()) < 1e-6


@pytest.mark.gpu
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 9, 17)], ids=ids)
def test_gpu_gradcheck(gpu_poisoned, shape, training):
    arrays = make_inputs(shape, numpy.float64, seed=5)
    x, gamma, beta = (minires.tensor(arrays[name], device="cuda", requires_grad=True) for name in ("x", "gamma", "beta"))
    running_mean, running_var = (minires.tensor(arrays[name], device="cuda") for name in ("running_mean", "running_var"))

    def fn(x):
        return F.batch_norm(x, running_mean, running_var, gamma, beta, training=training)

    result = minires.gradcheck(fn, (x,), params=(gamma, beta))
    assert result.passed and result.comparisons > 0
