"""Shared pytest setup: the ``gpu`` marker skips, saying why, where no GPU is usable."""
import pytest

from minires.backends import cuda_status


def pytest_collection_modifyitems(config, items):
    usable, reason = cuda_status()
    if usable:
        return
    skip_gpu = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


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
