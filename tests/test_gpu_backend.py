"""The GPU backend as a whole: whole training steps on our kernels against the NumPy path.

* emulated (runs everywhere with a C++ compiler): a small ResNet's training step
  with every layer kernel running through the CPU emulation harness equals the
  pure-NumPy step: loss, every gradient, the running statistics, the updated weights;
* on a GPU (``gpu`` marker): ResNet-20's step on the GPU equals the CPU step, and the
  bundled MNIST sample trains on the GPU to the CPU's accuracy;
* without a GPU: the reason given names what is missing.
"""
import json
import types

import numpy
import pytest

import minires
import minires.functional as F
from minires import optim
from minires.backends import dispatch, to_device
from minires.backends.emulator import emulate_kernels
from minires.models import CifarResNet, PreActResNet


def fake_cupy(error):
    """A stand-in for the cupy module whose driver query fails with ``error``."""
    def get_device_count():
        raise error

    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count)))


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient"), "driver is too old"),
    (RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), "no CUDA device was found"),
    (RuntimeError("libcuda.so.1: cannot open shared object file"), "is the NVIDIA driver installed"),
])
def test_cuda_status_says_what_is_missing(monkeypatch, error, expected):
    monkeypatch.setattr(dispatch, "cupy", fake_cupy(error))
    usable, reason = dispatch.cuda_status()
    assert not usable and expected in reason


def test_cuda_status_without_cupy_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(dispatch, "cupy", None)
    usable, reason = dispatch.cuda_status()
    assert not usable and "CuPy is not installed" in reason and 'pip install ".[cuda12]"' in reason


def fake_cupy_with_a_gpu(nvrtc_error=None, cublas_error=None):
    """A stand-in for cupy that sees one GPU and fails to load NVRTC or cuBLAS as told."""
    def fail_with(error):
        def call():
            if error is not None:
                raise error
            return (12, 9)
        return call

    return types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        nvrtc=types.SimpleNamespace(getVersion=fail_with(nvrtc_error)),
        device=types.SimpleNamespace(get_cublas_handle=fail_with(cublas_error))))


@pytest.mark.parametrize("missing", ["NVRTC", "cuBLAS"])
def test_cuda_status_says_a_gpu_without_the_cuda_libraries_is_not_usable(monkeypatch, missing):
    error = OSError(f"lib{missing.lower()}.so.12: cannot open shared object file")
    fake = fake_cupy_with_a_gpu(**{("nvrtc_error" if missing == "NVRTC" else "cublas_error"): error})
    monkeypatch.setattr(dispatch, "cupy", fake)
    monkeypatch.setattr(dispatch, "_libraries_loaded", False)
    usable, reason = dispatch.cuda_status()
    assert not usable and f"cannot load {missing}" in reason and "[ctk]" in reason and 'pip install ".[cuda12]"' in reason
    monkeypatch.setattr(dispatch, "cupy", fake_cupy_with_a_gpu())
    assert dispatch.cuda_status() == (True, "1 CUDA device(s) found")


def test_cuda_status_reports_a_cupy_that_fails_to_import(monkeypatch):
    monkeypatch.setattr(dispatch, "cupy", None)
    monkeypatch.setattr(dispatch, "cupy_import_error", ImportError("numpy.core.multiarray failed to import"))
    usable, reason = dispatch.cuda_status()
    assert not usable and "cannot be imported" in reason and "numpy.core.multiarray" in reason


def set_dtype(model, dtype):
    for _, t in model.named_tensors():
        t.data = t.data.astype(dtype)
    return model


def training_step(model, images, labels, device="cpu"):
    """One SGD step; returns the loss, the gradients and the new state, all on the CPU."""
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = minires.tensor(images, device=device)
    loss = F.cross_entropy(model(x), to_device(labels, device), label_smoothing=0.1)
    optimizer.zero_grad()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    optimizer.step()
    return float(loss.item()), grads, model.state_dict()


def make_model(kind, dtype, seed=0):
    minires.manual_seed(seed)
    if kind == "resnet_a":
        model = CifarResNet(8, "A", width=4, num_classes=5)
    elif kind == "resnet_b":
        model = CifarResNet(8, "B", width=4, num_classes=5)
    else:
        model = PreActResNet(8, False, 4, 5)
    return set_dtype(model, dtype)


def assert_steps_agree(reference, other, rtol, atol):
    (loss_a, grads_a, state_a), (loss_b, grads_b, state_b) = reference, other
    numpy.testing.assert_allclose(loss_b, loss_a, rtol=rtol)
    for name in grads_a:
        numpy.testing.assert_allclose(grads_b[name], grads_a[name], rtol=rtol, atol=atol, err_msg=f"grad {name}")
    for name in state_a:
        numpy.testing.assert_allclose(state_b[name], state_a[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("kind", ["resnet_a", "resnet_b", "preact"])
@pytest.mark.parametrize("dtype, rtol, atol", [(numpy.float64, 1e-10, 1e-12), (numpy.float32, 1e-4, 1e-5)])
def test_emulated_kernels_train_a_resnet_step_like_numpy(emulated_kernels, kind, dtype, rtol, atol):
    rng = numpy.random.default_rng(0)
    images = rng.standard_normal((3, 3, 8, 8)).astype(dtype)
    labels = numpy.array([0, 4, 2])
    with emulate_kernels(enabled=False):  # the plain NumPy path, as reference
        reference = training_step(make_model(kind, dtype), images, labels)
    emulated = training_step(make_model(kind, dtype), images, labels)
    assert_steps_agree(reference, emulated, rtol, atol)


def test_emulated_kernels_evaluate_like_numpy(emulated_kernels):
    rng = numpy.random.default_rng(1)
    images = rng.standard_normal((2, 3, 8, 8))
    with emulate_kernels(enabled=False):
        model = make_model("resnet_a", numpy.float64).eval()
        reference = model(minires.tensor(images)).data
    emulated = make_model("resnet_a", numpy.float64).eval()(minires.tensor(images)).data
    numpy.testing.assert_allclose(emulated, reference, rtol=1e-10)


@pytest.mark.gpu
def test_resnet20_training_step_on_gpu_equals_the_cpu_step(gpu_poisoned):
    rng = numpy.random.default_rng(0)
    images = rng.standard_normal((16, 3, 32, 32)).astype(numpy.float32)
    labels = rng.integers(0, 10, size=16)
    cpu = training_step(set_dtype(_resnet20(), numpy.float32), images, labels)
    gpu = training_step(set_dtype(_resnet20(), numpy.float32).to("cuda"), images, labels, device="cuda")
    assert_steps_agree(cpu, gpu, rtol=1e-3, atol=1e-5)


def _resnet20():
    minires.manual_seed(0)
    return CifarResNet(20)


@pytest.mark.gpu
def test_resnet20_float64_step_on_gpu_matches_the_cpu_closely():
    rng = numpy.random.default_rng(0)
    images = rng.standard_normal((4, 3, 32, 32))
    labels = rng.integers(0, 10, size=4)
    cpu = training_step(set_dtype(_resnet20(), numpy.float64), images, labels)
    gpu = training_step(set_dtype(_resnet20(), numpy.float64).to("cuda"), images, labels, device="cuda")
    assert_steps_agree(cpu, gpu, rtol=1e-9, atol=1e-11)


@pytest.mark.gpu
@pytest.mark.slow
def test_bundled_mnist_sample_trains_on_the_gpu_to_the_cpu_accuracy(tmp_path, capsys):
    from minires.__main__ import main

    accuracy = {}
    for device in ("cuda", "cpu"):
        assert main(["train", "--device", device, "--out", str(tmp_path / device), "--quiet"]) == 0
        accuracy[device] = json.loads(capsys.readouterr().out.splitlines()[-1])["test_acc"]
    assert accuracy["cuda"] >= 0.97
    assert abs(accuracy["cuda"] - accuracy["cpu"]) <= 0.005, accuracy  # within 10 of 2,000 test images
