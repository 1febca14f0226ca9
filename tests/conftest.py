"""Shared pytest setup: the ``gpu`` marker (see gpu_guard.py) and the kernel fixtures."""
import pytest

from gpu_guard import pytest_collection_modifyitems, pytest_runtest_makereport  # noqa: F401  (pytest hooks)


@pytest.fixture
def emulated_kernels():
    """Run the GPU kernel path on NumPy arrays: kernels/*.cu compiled for host threads
    by the harness in tests/cuda_emulation, with every new output poisoned with NaN."""
    from cuda_emulation.emulator import EmulatedModule, compiler
    from minires.backends.cuda import poison_outputs, use_kernel_provider

    if compiler() is None:
        pytest.skip("no C++ compiler (g++ or clang++) for the CUDA emulation harness")
    with use_kernel_provider(EmulatedModule), poison_outputs():
        yield EmulatedModule


@pytest.fixture
def gpu_poisoned():
    """On a real GPU: poison every output the kernel wrappers allocate with NaN."""
    from minires.backends.cuda import poison_outputs

    with poison_outputs():
        yield
