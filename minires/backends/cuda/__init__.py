"""The GPU backend: Python wrappers that launch our CUDA kernels (``kernels/*.cu``).

Layers:  ops (the math, forward and backward)  ->  these wrappers (allocate the
outputs, pick the launch size, pass typed arguments)  ->  the kernels themselves.
An op calls a wrapper when :func:`uses_kernels` says its input lives on the GPU.
"""
from minires.backends.cuda.loader import (
    BLOCK, KernelFile, contiguous, empty, empty_like, int32, poison_outputs, scalar, use_kernel_provider, uses_kernels,
)

__all__ = [
    "BLOCK", "KernelFile", "contiguous", "empty", "empty_like", "int32", "poison_outputs", "scalar",
    "use_kernel_provider", "uses_kernels",
]
