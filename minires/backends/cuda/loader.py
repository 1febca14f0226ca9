"""Compile our CUDA kernels (``kernels/*.cu``) with CuPy and launch them.

Each ``.cu`` file holds *templates* such as ``template <typename T> __global__
void relu_forward(const T* x, T* y, int n)``. :class:`KernelFile` hands the
file's source to ``cupy.RawModule`` together with the instantiations we want
(``name_expressions`` like ``"relu_forward<float>"``); NVRTC compiles them once
per device and dtype, and we keep the compiled module for the rest of the run.

Launching follows CuPy's convention ``kernel(grid, block, args)``. Every array
argument must be C-contiguous and every scalar explicitly typed
(``numpy.int32`` for sizes, the array's float type for values): CUDA reads the
argument bytes exactly as the kernel's signature declares them.

A training step launches a few hundred kernels, and on a GPU Python only queues
them: if queueing a step takes longer than running it, the GPU waits. So the
launch path does as little as it can. Each compiled kernel is looked up once per
(kernel, dtype, device) and then kept; the typed size arguments are cached
(``int32``); and kernels launch on the device that holds the data (ops enter
:func:`device_scope` of their input, which costs nothing when it is already the
current device). ``benchmarks/bench_host_overhead.py`` measures what is left.

A second provider can stand in for CuPy: the kernel emulator
(:mod:`minires.backends.emulator`) compiles the same ``.cu`` files with the host
C++ compiler, so that the whole kernel path (these wrappers included) runs on
NumPy arrays on a machine without a GPU.
"""
import contextlib
import functools
import os

import numpy

from minires.backends.dispatch import cupy, get_array_module
from minires.backends.kernel_files import kernel_dir

BLOCK = 256  # threads per block for every launch (the kernels' shared arrays are this size)
MAX_GRID = 65535  # enough blocks to fill any GPU; grid-stride loops cover the rest
INT_LIMIT = 2**31  # the kernels index with int: every index, and every loop counter, stays below this
C_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}

_provider = None  # None: CuPy. Otherwise a callable standing in for cupy.RawModule (the emulator).
_poison = False  # fill new float outputs with NaN before a launch; a test instrument (tests/kernel_instruments.py)


def uses_kernels(array):
    """Whether ops on ``array`` take the kernel path: CuPy arrays, or any array while emulating."""
    if _provider is not None:
        return True
    return cupy is not None and isinstance(array, cupy.ndarray)


@contextlib.contextmanager
def _kernel_provider(provider):
    """Route every kernel launch to ``provider(code=..., options=..., name_expressions=...)``, a
    RawModule look-alike, and send NumPy arrays down the kernel path; ``None`` restores CuPy.
    Use the public switch :func:`minires.backends.emulator.emulate_kernels` instead."""
    global _provider
    previous, _provider = _provider, provider
    try:
        yield
    finally:
        _provider = previous


def current_device():
    """The CUDA device kernels launch on now (-1 while an emulator provides the kernels)."""
    return -1 if _provider is not None else cupy.cuda.runtime.getDevice()


_NO_SCOPE = contextlib.nullcontext()


def device_scope(array):
    """A ``with`` block that makes ``array``'s GPU the current device, so that outputs are
    allocated and kernels launched there (``cuda:1`` data must not run on GPU 0). Costs
    nothing for NumPy arrays, while emulating, or when the device is already current."""
    if _provider is not None or cupy is None or not isinstance(array, cupy.ndarray):
        return _NO_SCOPE
    device = array.device
    return _NO_SCOPE if device.id == cupy.cuda.runtime.getDevice() else device


def empty(shape, dtype, like):
    """An uninitialised output array on the same device as ``like`` (NaN while poisoning)."""
    xp = get_array_module(like)
    out = xp.empty(shape, dtype=dtype)
    if _poison and out.dtype.kind == "f":
        out.fill(numpy.nan)
    return out


def empty_like(array):
    return empty(array.shape, array.dtype, array)


@functools.lru_cache(maxsize=4096)  # the same few hundred sizes come back every step
def int32(value):
    """A size or index as the kernels' ``int``; refuse values that would wrap around."""
    if not -INT_LIMIT <= int(value) < INT_LIMIT:
        raise ValueError(f"{value} does not fit in a 32-bit int; the kernels index with int (use a smaller batch)")
    return numpy.int32(value)


def scalar(value, dtype):
    """A float argument typed like the kernel's ``T`` (float or double)."""
    return numpy.dtype(dtype).type(value)


def blocks_for(n):
    """Enough BLOCK-sized blocks for n threads (at least 1, at most MAX_GRID)."""
    return max(1, min((int(n) + BLOCK - 1) // BLOCK, MAX_GRID))


def check_grid_stride(n, threads):
    """Refuse a grid-stride loop ``for (int i = start; i < n; i += threads)`` whose counter would
    overflow: its last value is below n + threads, so that sum must stay within an int."""
    if n + threads > INT_LIMIT:
        raise ValueError(
            f"{n} elements with {threads} threads per grid-stride pass overflow the kernels' 32-bit int "
            f"(n + threads must be at most 2^31 = {INT_LIMIT}); use a smaller batch")


KERNEL_FILES = {}  # filename -> KernelFile, filled as the wrapper modules are imported


class KernelFile:
    """One ``kernels/<filename>`` and the template kernels it defines."""

    def __init__(self, filename, kernel_names):
        self.filename, self.kernel_names = filename, tuple(kernel_names)
        self._modules = {}  # (provider, device id, C type) -> compiled module
        self._kernels = {}  # (provider, device id, kernel name, dtype) -> compiled kernel, ready to launch
        KERNEL_FILES[filename] = self

    def source(self):
        with open(os.path.join(kernel_dir(), self.filename), encoding="utf-8") as f:
            return f.read()

    def name_expressions(self, c_type):
        return [f"{name}<{c_type}>" for name in self.kernel_names]

    def function(self, name, dtype):
        """The compiled ``name<T>`` for arrays of ``dtype`` on the current device."""
        key = (_provider, current_device(), name, dtype)
        kernel = self._kernels.get(key)
        if kernel is None:  # first launch of this kernel for this dtype and device
            kernel = self._kernels[key] = self._compile(name, dtype, key[1])
        return kernel

    def _compile(self, name, dtype, device):
        if name not in self.kernel_names:
            raise KeyError(f"{self.filename} declares no kernel {name!r} (it has {', '.join(self.kernel_names)})")
        dtype = numpy.dtype(dtype)
        if dtype not in C_TYPES:
            raise TypeError(f"our CUDA kernels take float32 or float64 arrays, got {dtype}")
        c_type = C_TYPES[dtype]
        key = (_provider, device, c_type)
        if key not in self._modules:  # compile once per device and dtype, all the file's kernels at once
            make_module = _provider or cupy.RawModule
            self._modules[key] = make_module(
                code=self.source(), options=("-std=c++14",), name_expressions=self.name_expressions(c_type))
        return self._modules[key].get_function(f"{name}<{c_type}>")

    def launch(self, name, dtype, grid, args):
        """Run ``name<T>`` on ``grid`` blocks of BLOCK threads: an int, or a tuple (x, y[, z])
        for kernels that read blockIdx.y or blockIdx.z."""
        self.function(name, dtype)(grid if isinstance(grid, tuple) else (grid,), _BLOCK_DIM, args)

    def launch_over(self, name, dtype, n, args):
        """Run ``name<T>`` with enough threads for n elements (the kernel loops grid-stride)."""
        grid = blocks_for(n)
        check_grid_stride(n, grid * BLOCK)
        self.function(name, dtype)((grid,), _BLOCK_DIM, args)


_BLOCK_DIM = (BLOCK,)


def contiguous(array):
    """The kernels index arrays as dense C-ordered memory; copy if the array is a strided view."""
    return array if array.flags.c_contiguous else get_array_module(array).ascontiguousarray(array)
