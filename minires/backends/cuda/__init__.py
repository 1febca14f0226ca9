"""The kernel path: Python wrappers that launch our CUDA kernels (``kernels/*.cu``).

Layers:  ops (the math, forward and backward)  ->  these wrappers (allocate the
outputs, pick the launch size, pass typed arguments)  ->  the kernels themselves.
An op takes the kernel path when :func:`uses_kernels` says so: its input lives on the
GPU, or the kernel emulator (:mod:`minires.backends.emulator`) is on.
"""
from minires.backends.cuda.loader import (
    BLOCK, KernelFile, contiguous, empty, empty_like, int32, scalar, uses_kernels,
)

__all__ = [
    "BLOCK", "KernelFile", "contiguous", "empty", "empty_like", "int32", "scalar", "uses_kernels",
    "kernel_files",
]


def kernel_files():
    """Every ``kernels/*.cu`` file's :class:`KernelFile`, by file name.

    Each wrapper module registers its file when imported, so import them all first.
    """
    import importlib
    import pkgutil

    from minires.backends.cuda.loader import KERNEL_FILES

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(KERNEL_FILES.items()))
