"""Backends: where arrays live and which array module (NumPy or CuPy) computes on them.

Every op asks :func:`get_array_module` for ``xp`` and then writes ``xp.sum``,
``xp.zeros`` ... so one piece of code serves both the CPU and the GPU.
"""
from minires.backends.dispatch import (
    cupy,
    cuda_status,
    get_array_module,
    device_of,
    normalize_device,
    to_device,
)
from minires.backends.kernel_files import kernel_dir

__all__ = [
    "cupy",
    "cuda_status",
    "get_array_module",
    "device_of",
    "normalize_device",
    "to_device",
    "kernel_dir",
]
