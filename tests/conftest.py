"""Shared pytest setup: the ``gpu`` marker (see gpu_guard.py) and the backends every op test runs on.

``backend`` runs a test once per backend (backend_tools.py builds what it yields):

* ``numpy``: the CPU path;
* ``emulated``: the kernel path on NumPy arrays, our ``kernels/*.cu`` run by the
  kernel emulator (skipped, saying why, without a C++ compiler);
* ``cuda``: the kernel path on a GPU (marked ``gpu``: skipped, saying why, without one).

On both kernel backends every output a kernel wrapper allocates is poisoned with NaN,
so an element a kernel forgets to write fails the test instead of passing by luck.
A test narrows the backends with ``backend_tools.only_on`` or ``cases_on_backends``.
"""
import pytest

from backend_tools import BACKEND_NAMES, backend_param, make_backend
from gpu_guard import pytest_collection_modifyitems, pytest_runtest_makereport  # noqa: F401  (pytest hooks)
from kernel_instruments import poison_outputs
from minires.backends import cuda_status
from minires.backends.emulator import emulate_kernels, emulator_status


@pytest.fixture(params=[backend_param(name) for name in BACKEND_NAMES])
def backend(request):
    name = request.param
    if name == "numpy":
        yield make_backend(name)
    elif name == "emulated":
        usable, reason = emulator_status()
        if not usable:
            pytest.skip(reason)
        with emulate_kernels(), poison_outputs():
            yield make_backend(name)
    else:
        usable, reason = cuda_status()
        if not usable:
            pytest.skip(f"no usable GPU: {reason}")
        with poison_outputs():
            yield make_backend(name)


# ---- older fixtures, for the tests that have not moved to ``backend`` yet ----------------

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
def torch():
    """PyTorch as an optional oracle (the test skips without it), on one thread: on a busy machine its
    thread pool waits on minires's."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)
