"""The one place that decides between NumPy (CPU) and CuPy (NVIDIA GPU).

CuPy is optional: importing minires must work on a laptop without it, so the
import is attempted once here and every other module asks this one.
"""
import numpy

try:  # CuPy is an optional extra (pip install ".[cuda12]" or ".[cuda13]")
    import cupy
    cupy_import_error = None
except ImportError as err:
    cupy, cupy_import_error = None, None if err.name == "cupy" else err  # absent, or broken
except Exception as err:  # a CuPy build that fails to load its CUDA libraries or this NumPy
    cupy, cupy_import_error = None, err

INSTALL_HINT = "pip install \".[cuda12]\" (or \".[cuda13]\") from the minires folder, as the README says"


def cuda_status():
    """Return ``(usable, reason)``: whether a CUDA device can be used, and if not, why."""
    if cupy is None:
        if cupy_import_error is not None:
            return False, (f"CuPy is installed but cannot be imported ({type(cupy_import_error).__name__}: "
                           f"{cupy_import_error}); reinstall it with {INSTALL_HINT}")
        return False, f"CuPy is not installed ({INSTALL_HINT})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, driver too old for this CuPy, ...
        message = str(err)
        if "InsufficientDriver" in message:
            return False, ("the NVIDIA driver is too old for this CuPy build; update the driver or install "
                           f"the CuPy for your CUDA version ('.[cuda12]' instead of '.[cuda13]') ({message})")
        if "NoDevice" in message:
            return False, f"CuPy is installed but no CUDA device was found ({message})"
        return False, f"CuPy could not talk to the CUDA driver (is the NVIDIA driver installed?): {message}"
    if count == 0:
        return False, "CuPy is installed but no CUDA device was found"
    problem = cuda_libraries_problem()
    if problem:
        return False, problem
    return True, f"{count} CUDA device(s) found"


def cuda_libraries_problem():
    """Why the CUDA libraries our kernel path needs cannot be used, or None.

    A machine may have a GPU and its driver but not the CUDA runtime pieces CuPy
    loads on first use: NVRTC, which compiles our kernels, and cuBLAS, which does
    the matrix products. Without this check a GPU would look usable and the first
    convolution would fail. Our ``cuda12``/``cuda13`` extras install them (CuPy's
    ``[ctk]`` extra). Once they have loaded, the answer is remembered."""
    global _libraries_loaded
    if _libraries_loaded:
        return None
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as err:
        return (f"CuPy cannot load NVRTC, the CUDA compiler our kernels need ({type(err).__name__}: {err}); "
                f"{INSTALL_HINT} brings it (with cuBLAS) as CuPy's [ctk] extra, or install the CUDA Toolkit")
    try:
        cupy.cuda.device.get_cublas_handle()
    except Exception as err:
        return (f"CuPy cannot load cuBLAS, which does our matrix products ({type(err).__name__}: {err}); "
                f"{INSTALL_HINT} brings it as CuPy's [ctk] extra, or install the CUDA Toolkit")
    _libraries_loaded = True
    return None


_libraries_loaded = False


def normalize_device(device):
    """Turn 'cpu', 'cuda', 'cuda:1' into the canonical spelling 'cpu' or 'cuda:N'."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda', got {device!r}")
    name = device.strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda":
        return "cuda:0"
    if name.startswith("cuda:") and name[5:].isdigit():
        return name
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


def get_array_module(x):
    """The array module (numpy or cupy) that owns the array ``x``.

    A NumPy subclass may name a module of its own in an ``array_module`` class attribute:
    the test suite's stand-in for GPU arrays does (tests/kernel_instruments.py)."""
    if type(x) is numpy.ndarray:
        return numpy
    if cupy is not None and isinstance(x, cupy.ndarray):
        return cupy
    return getattr(type(x), "array_module", numpy)


def device_of(array):
    """The device string of an ndarray: 'cpu' for NumPy, 'cuda:N' for CuPy."""
    if cupy is not None and isinstance(array, cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy if it is already there)."""
    device = normalize_device(device)
    if device == "cpu":
        if cupy is not None and isinstance(array, cupy.ndarray):
            return cupy.asnumpy(array)
        return numpy.asarray(array)
    usable, reason = cuda_status()
    if not usable:
        raise RuntimeError(f"cannot move data to {device}: {reason}")
    with cupy.cuda.Device(int(device.split(":")[1])):
        return cupy.asarray(array)
