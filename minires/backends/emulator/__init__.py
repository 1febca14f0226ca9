"""The kernel emulator: our real ``kernels/*.cu`` files, run on NumPy arrays on the CPU.

No GPU? Switch the emulator on and every op that has kernels of its own (conv,
batch norm, ReLU, pooling, cross-entropy, the option-A shortcut, the SGD update)
takes the *kernel path* on NumPy arrays: the same wrappers that allocate outputs
and choose launch sizes on a GPU run, and the kernels, compiled by the host C++
compiler, run each CUDA thread as a host thread::

    from minires.backends.emulator import emulate_kernels

    with emulate_kernels():
        y = F.relu(x)            # x a NumPy-backed tensor; kernels/relu.cu computes y

It is slow (every launch starts a host thread per CUDA thread), so use it on
small arrays: to read a kernel in action, or to test one. Matrix products stay
NumPy's (on a GPU they are cuBLAS's, not ours).

``emulate_kernels(launches=my_list)`` also appends ``(kernel name, grid, block)``
to ``my_list`` at every launch. :class:`EmulatedModule` is the emulator's
``cupy.RawModule`` look-alike, for compiling a kernel of your own.
"""
import contextlib

from minires.backends.cuda import loader
from minires.backends.emulator.module import EmulatedModule, compiler

__all__ = ["emulate_kernels", "emulator_status", "EmulatedModule"]


def emulator_status():
    """``(usable, reason)``: whether the emulator can run here, and if not, why."""
    cxx = compiler()
    if cxx is None:
        return False, "the kernel emulator needs a C++ compiler (g++ or clang++): install one, or set CXX"
    return True, f"kernels compile with {cxx} and run on host threads"


@contextlib.contextmanager
def emulate_kernels(enabled=True, launches=None):
    """Inside this block, ops send NumPy arrays down the kernel path, run by the emulator.

    ``enabled=False`` switches it off for the block instead (the plain NumPy path),
    e.g. to compute a reference inside an emulated test. ``launches``, a list, gets
    ``(kernel name, grid, block)`` appended at every launch.
    """
    if not enabled:
        with loader._kernel_provider(None):
            yield
        return
    usable, reason = emulator_status()
    if not usable:
        raise RuntimeError(reason)

    def make_module(**kwargs):
        module = EmulatedModule(**kwargs)
        if launches is not None:
            module.launches = launches
        return module

    # One provider per block would compile again each time; the module cache is keyed by
    # provider, so reuse the plain class unless launches are being recorded.
    with loader._kernel_provider(EmulatedModule if launches is None else make_module):
        yield
