"""Shared pytest setup: the ``gpu`` marker (see gpu_guard.py) and the backends every op test runs on.

``backend`` runs a test once per backend this machine has:

* ``numpy``: the CPU path;
* ``emulated``: the kernel path on NumPy arrays, our ``kernels/*.cu`` run by the
  kernel emulator (skipped, saying why, without a C++ compiler);
* ``cuda``: the kernel path on a GPU (marked ``gpu``: skipped, saying why, without one).

On both kernel backends every output a kernel wrapper allocates is poisoned with NaN.
"""
import types

import pytest

import minires
from gpu_guard import pytest_collection_modifyitems, pytest_runtest_makereport  # noqa: F401  (pytest hooks)
from kernel_instruments import poison_outputs
from minires.backends import cuda_status, to_device
from minires.backends.emulator import emulate_kernels, emulator_status


def make_backend(name, device):
    def tensor(array, requires_grad=False):
        return minires.tensor(array, device=device, requires_grad=requires_grad)

    def numpy_of(value):
        """A NumPy copy of a tensor or array from this backend."""
        return to_device(getattr(value, "data", value), "cpu")

    return types.SimpleNamespace(name=name, device=device, tensor=tensor, numpy=numpy_of,
                                 uses_kernels=name != "numpy")


@pytest.fixture(params=["numpy", "emulated", pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request):
    name = request.param
    if name == "numpy":
        yield make_backend(name, "cpu")
    elif name == "emulated":
        usable, reason = emulator_status()
        if not usable:
            pytest.skip(reason)
        with emulate_kernels(), poison_outputs():
            yield make_backend(name, "cpu")
    else:
        usable, reason = cuda_status()
        if not usable:
            pytest.skip(f"no usable GPU: {reason}")
        with poison_outputs():
            yield make_backend(name, "cuda")


@pytest.fixture
def emulated_kernels():
    """Run the kernel path on NumPy arrays through the kernel emulator, outputs poisoned with NaN."""
    usable, reason = emulator_status()
    if not usable:
        pytest.skip(reason)
    with emulate_kernels(), poison_outputs():
        yield


@pytest.fixture
def gpu_poisoned():
    """On a real GPU: poison every output the kernel wrappers allocate with NaN."""
    with poison_outputs():
        yield


@pytest.fixture
def numpy_path():
    """A context manager that runs its block on the plain NumPy path, even inside an emulated test."""
    return lambda: emulate_kernels(enabled=False)

