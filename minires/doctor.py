"""``python -m minires doctor``: what minires sees on this machine, and whether the GPU path works.

It prints, in order:

1. Python, NumPy and the BLAS NumPy was built with (the CPU path's speed);
2. CuPy, the CUDA runtime, the driver and NVRTC (the compiler CuPy hands our
   ``kernels/*.cu`` to), or why CuPy cannot be used;
3. each GPU: name, memory, compute capability, multiprocessors;
4. on each GPU, a trial compile of every kernel of every ``.cu`` file for
   float32 and float64, and one ReLU launch checked against NumPy;
5. a one-line verdict.

Exit status: 0 when the GPU path works, or when there is simply no GPU (the CPU
path is complete on its own); 1 when a GPU is there but CuPy cannot use it (the
CUDA libraries it loads are missing, say), or a kernel fails to compile or gives
a wrong answer.
"""
import platform
import sys
import time

import numpy

from minires.backends import cuda_status
from minires.backends.cuda.loader import C_TYPES

FLOAT_TYPES = tuple(C_TYPES)  # float32 and float64: the dtypes our kernels are instantiated for


def blas_name():
    """The BLAS library NumPy was built against, e.g. 'scipy-openblas 0.3.29'."""
    try:
        config = numpy.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # NumPy older than 1.26 has no mode="dicts"
        return "unknown (NumPy does not report it)"


def cuda_versions(cupy):
    """CuPy's, the CUDA runtime's, the driver's and NVRTC's versions, as text."""
    def dotted(version):  # 12040 -> '12.4'
        return f"{version // 1000}.{version % 1000 // 10}"

    def ask(query):  # one failing query must not hide the others
        try:
            return query()
        except Exception as err:
            return f"unknown ({type(err).__name__}: {err})"

    runtime = ask(lambda: dotted(cupy.cuda.runtime.runtimeGetVersion()))
    driver = ask(lambda: dotted(cupy.cuda.runtime.driverGetVersion()))
    nvrtc = ask(lambda: ".".join(str(part) for part in cupy.cuda.nvrtc.getVersion()))
    return f"CuPy {cupy.__version__}, CUDA runtime {runtime}, driver supports CUDA {driver}, NVRTC {nvrtc}"


def describe_device(cupy, index):
    props = cupy.cuda.runtime.getDeviceProperties(index)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    memory = props["totalGlobalMem"] / 2**30
    return (f"GPU {index}: {name}, {memory:.1f} GiB, compute capability {props['major']}.{props['minor']}, "
            f"{props['multiProcessorCount']} multiprocessors")


def trial_compiles(kernel_files, out):
    """Compile every kernel of every file for each float type on the current device.

    Returns the number of (file, dtype) pairs that failed; prints one line per pair.
    """
    failures = 0
    for filename, kernel_file in kernel_files.items():
        for dtype in FLOAT_TYPES:
            start = time.perf_counter()
            try:
                for name in kernel_file.kernel_names:  # getting a function compiles and lowers it
                    kernel_file.function(name, dtype)
            except Exception as err:
                failures += 1
                first_lines = "\n      ".join(str(err).strip().splitlines()[:6])
                out(f"    {filename:<18} {numpy.dtype(dtype).name:<8} FAILED: {type(err).__name__}: {first_lines}")
                continue
            seconds = time.perf_counter() - start
            out(f"    {filename:<18} {numpy.dtype(dtype).name:<8} ok ({len(kernel_file.kernel_names)} kernels, {seconds:.2f} s)")
    return failures


def relu_launch_is_right(cupy):
    """Launch relu_forward on 1,000 numbers and compare with NumPy: the smallest real kernel run."""
    from minires.backends.cuda.relu import relu_forward

    x = numpy.random.default_rng(0).standard_normal(1000).astype(numpy.float32)
    y = cupy.asnumpy(relu_forward(cupy.asarray(x)))
    return bool(numpy.array_equal(y, numpy.maximum(x, 0)))


def gpu_count():
    """How many GPUs the driver reports through CuPy (0 without CuPy or a driver)."""
    from minires.backends.dispatch import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() if cupy is not None else 0
    except Exception:
        return 0


def mpi_description():
    """mpi4py's version and the MPI library it loads, or how to get them."""
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install ".[mpi]")'
    import mpi4py
    from mpi4py import MPI

    return f"mpi4py {mpi4py.__version__}, {MPI.Get_library_version().splitlines()[0].strip()}"


def run_doctor(out=print):
    """Print the report; returns the exit status (0 fine or no GPU, 1 GPU path broken)."""
    out(f"Python {platform.python_version()} ({sys.executable})")
    out(f"NumPy {numpy.__version__}, BLAS: {blas_name()}")
    out(f"MPI (train --distributed): {mpi_description()}")
    usable, reason = cuda_status()
    if not usable and gpu_count() > 0:  # a GPU is there, but CuPy cannot use it (e.g. no NVRTC)
        out(f"CUDA: a GPU is present but unusable: {reason}")
        out(f"verdict: GPU path BROKEN: {reason}")
        return 1
    if not usable:
        out(f"CUDA: unavailable: {reason}")
        out("verdict: no GPU path on this machine; minires runs on the CPU (NumPy), which is complete on its own. "
            f"Reason: {reason}")
        return 0

    from minires.backends.cuda import kernel_files
    from minires.backends.dispatch import cupy

    out(cuda_versions(cupy))
    from cupy.cuda import nccl

    out(f"NCCL (the GPU all-reduce of train --distributed): {'available' if nccl.available else 'not in this CuPy'}")
    files = kernel_files()
    count = cupy.cuda.runtime.getDeviceCount()
    broken = []
    for index in range(count):
        out(describe_device(cupy, index))
        with cupy.cuda.Device(index):
            out(f"  trial compile of {len(files)} kernel files through NVRTC:")
            failures = trial_compiles(files, out)
            launch_ok = failures == 0 and relu_launch_is_right(cupy)
            out(f"  relu_forward launch against NumPy: {'ok' if launch_ok else 'FAILED' if failures == 0 else 'not run'}")
        if failures or not launch_ok:
            broken.append(f"GPU {index}: {failures} of {len(files) * len(FLOAT_TYPES)} compiles failed"
                          + ("" if failures else ", the ReLU launch gave a wrong answer"))
    if broken:
        out("verdict: GPU path BROKEN: " + "; ".join(broken) + " (see above)")
        return 1
    out(f"verdict: GPU path ready: {count} GPU(s); all {len(files)} kernel files compile for float32 and float64 "
        "and a kernel launch matches NumPy")
    return 0
