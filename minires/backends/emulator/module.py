"""A stand-in for ``cupy.RawModule`` that runs our CUDA kernels on host threads.

:class:`EmulatedModule` takes what CuPy's RawModule takes (the ``.cu`` source and
the ``name_expressions`` to instantiate), compiles the source with the host C++
compiler together with ``cuda_emulation.h`` (which turns threadIdx, __shared__
and __syncthreads into host threads, statics and a barrier), and returns
functions you call the CuPy way: ``kernel(grid, block, args)``.

It is stricter than a GPU about the arguments, which is the point on a machine
without one:

* every scalar must be a typed NumPy scalar (``numpy.int32(n)``, ``numpy.float32(x)``),
  and the argument list must match the kernel's C signature exactly;
* every array must be C-contiguous, of a dtype the kernel declares;
* each array is surrounded by guard bytes, so a write past either end is reported.

Most code does not use it directly: :func:`minires.backends.emulator.emulate_kernels`
makes every op send its NumPy arrays through the kernel path, which then compiles
the kernels with this class instead of CuPy.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_emulation.h")
CACHE = os.path.join(tempfile.gettempdir(), "minires-cuda-emulation")
GUARD = 64  # guard elements on each side of every array argument
GUARD_BYTE = 0xA5

ARRAY_TYPES = {
    numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double",
    numpy.dtype(numpy.int32): "int", numpy.dtype(numpy.int64): "long long",
    numpy.dtype(numpy.int8): "signed char", numpy.dtype(numpy.uint8): "unsigned char",
}
SCALAR_TYPES = {
    numpy.float32: ("float", ctypes.c_float), numpy.float64: ("double", ctypes.c_double),
    numpy.int32: ("int", ctypes.c_int32), numpy.int64: ("long long", ctypes.c_int64),
}


def compiler():
    """The host C++ compiler, or None."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def build_library(code, name_expressions):
    """Compile ``code`` with the emulation header into a shared library (cached by content)."""
    registrations = "\n".join(f'EMU_KERNEL("{name}", {name})' for name in name_expressions)
    program = f'#include "{HEADER}"\n#line 1 "kernel.cu"\n{code}\n{registrations}\n'
    with open(HEADER, encoding="utf-8") as f:
        digest = hashlib.sha256((f.read() + program).encode()).hexdigest()[:16]
    os.makedirs(CACHE, exist_ok=True)
    library = os.path.join(CACHE, f"kernels-{digest}.so")
    if not os.path.exists(library):
        source = os.path.join(CACHE, f"kernels-{digest}.cpp")
        with open(source, "w", encoding="utf-8") as f:
            f.write(program)
        partial = f"{library}.{os.getpid()}.tmp"
        command = [compiler(), "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-Wall",
                   "-Wno-unused-function", "-o", partial, source]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"emulation build failed:\n{' '.join(command)}\n{result.stderr}")
        os.replace(partial, library)  # atomic: parallel test runs never load half a file
    return library


class EmulatedModule:
    """``cupy.RawModule`` look-alike that runs kernels on host threads."""

    def __init__(self, code, options=(), name_expressions=()):
        self.name_expressions = list(name_expressions)
        self.library = ctypes.CDLL(build_library(code, self.name_expressions))
        self.library.emu_signature.restype = ctypes.c_char_p
        self.library.emu_launch.restype = ctypes.c_int
        self.launches = []  # (name, grid, block), for tests that look at launch sizes

    def get_function(self, name):
        signature = self.library.emu_signature(name.encode()).decode()
        if not signature:
            raise KeyError(f"kernel {name!r} was not among the name_expressions {self.name_expressions}")
        return EmulatedFunction(self, name, signature.split(","))


class EmulatedFunction:
    def __init__(self, module, name, signature):
        self.module, self.name, self.signature = module, name, signature

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = _dim3(grid), _dim3(block)
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments ({', '.join(self.signature)}), got {len(args)}")
        holders, pointers, arrays = [], [], []
        for position, (arg, expected) in enumerate(zip(args, self.signature)):
            passed = _c_type(arg)
            if passed != expected:
                raise TypeError(f"{self.name}: argument {position} should be {expected}, got {passed}")
            if isinstance(arg, numpy.ndarray):
                padded = _guarded_copy(arg)
                arrays.append((arg, padded))
                holders.append(ctypes.c_void_p(padded[GUARD * arg.itemsize:].ctypes.data))
            else:
                holders.append(SCALAR_TYPES[type(arg)][1](arg.item()))
            pointers.append(ctypes.cast(ctypes.pointer(holders[-1]), ctypes.c_void_p))
        argv = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        self.module.launches.append((self.name, grid, block))
        if self.module.library.emu_launch(self.name.encode(), *grid, *block, argv) != 0:
            raise KeyError(f"no emulated kernel {self.name}")
        for array, padded in arrays:
            _check_guards(self.name, padded, array)
            array.reshape(-1)[...] = padded[GUARD * array.itemsize:][:array.nbytes].view(array.dtype)


def _dim3(value):
    value = tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    return value + (1,) * (3 - len(value))


def _c_type(arg):
    if isinstance(arg, numpy.ndarray):
        if not arg.flags.c_contiguous:
            raise TypeError(f"array argument of shape {arg.shape} is not C-contiguous; kernels index dense memory")
        if arg.dtype not in ARRAY_TYPES:
            raise TypeError(f"no kernel takes arrays of dtype {arg.dtype}")
        return ARRAY_TYPES[arg.dtype] + "*"
    if type(arg) in SCALAR_TYPES:
        return SCALAR_TYPES[type(arg)][0]
    raise TypeError(
        f"untyped scalar argument {arg!r} ({type(arg).__name__}): pass numpy.int32 / numpy.float32 / numpy.float64")


def _guarded_copy(array):
    """The array's bytes with GUARD elements of GUARD_BYTE on each side."""
    guard = GUARD * array.itemsize
    padded = numpy.full(array.nbytes + 2 * guard, GUARD_BYTE, dtype=numpy.uint8)
    padded[guard:guard + array.nbytes] = array.reshape(-1).view(numpy.uint8)
    return padded


def _check_guards(name, padded, array):
    guard = GUARD * array.itemsize
    before, after = padded[:guard], padded[guard + array.nbytes:]
    if (before != GUARD_BYTE).any() or (after != GUARD_BYTE).any():
        raise RuntimeError(f"{name} wrote outside an array of shape {array.shape} ({array.dtype})")
