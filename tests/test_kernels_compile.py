"""Every kernels/*.cu file compiles, for float and double, without a GPU.

* with ``nvcc`` (skipped with a reason where it is not installed): the whole CUDA
  toolchain down to machine code for one architecture;
* with NVRTC, the runtime compiler that ``cupy.RawModule`` uses, given the same
  ``name_expressions`` the loader passes (skipped where libnvrtc is not found).
  NVRTC sees no system headers, so this catches a kernel that only compiles
  thanks to something nvcc includes for free.

It also checks that the wrappers and the .cu files agree on the kernel names.
"""
import ctypes
import ctypes.util
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

from minires.backends import kernel_dir
from minires.backends.cuda import kernel_files
from minires.backends.cuda.loader import C_TYPES

KERNEL_FILES = kernel_files()  # every wrapper registers its KernelFile

CU_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(kernel_dir(), "*.cu")))
GPU_ARCH = "80"  # Ampere (A100); any architecture we support would do for a compile check


def source_of(filename):
    with open(os.path.join(kernel_dir(), filename), encoding="utf-8") as f:
        return f.read()


def test_every_cu_file_is_loaded_by_a_wrapper_and_declares_the_same_kernels():
    assert CU_FILES, "no kernels/*.cu files found"
    assert sorted(KERNEL_FILES) == CU_FILES
    for filename in CU_FILES:
        defined = re.findall(r"__global__\s+void\s+(\w+)\s*\(", source_of(filename))
        assert sorted(defined) == sorted(KERNEL_FILES[filename].kernel_names), filename


@pytest.mark.parametrize("filename", CU_FILES)
def test_kernel_file_starts_by_explaining_its_thread_mapping(filename):
    lines = source_of(filename).splitlines()
    header = []
    for line in lines:
        if not line.startswith("//"):
            break
        header.append(line)
    assert len(header) >= 4, f"{filename} should open with a comment explaining its thread-to-data mapping"
    assert "thread" in " ".join(header).lower()
    assert "#include" not in source_of(filename).replace('#include "', ""), "NVRTC has no system headers"


@pytest.mark.parametrize("filename", CU_FILES)
def test_compiles_with_nvcc_for_float_and_double(filename, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed on this machine")
    # Taking each instantiation's address makes nvcc compile it, as name_expressions do for NVRTC.
    names = [expr for c_type in C_TYPES.values() for expr in KERNEL_FILES[filename].name_expressions(c_type)]
    program = tmp_path / "instantiate.cu"
    program.write_text(
        f'#include "{os.path.join(kernel_dir(), filename)}"\n'
        "void* instantiations[] = {\n" + "".join(f"    (void*)&{name},\n" for name in names) + "};\n")
    command = [nvcc, "-std=c++14", f"-arch=sm_{GPU_ARCH}", "-Werror", "all-warnings", "-c",
               "-o", str(tmp_path / "out.o"), str(program)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"


def find_nvrtc():
    """libnvrtc from the system CUDA, or from the nvidia-cuda-nvrtc wheel that CuPy can use."""
    candidates = [ctypes.util.find_library("nvrtc")]
    for root in sys.path + [os.environ.get("CUDA_HOME", "/usr/local/cuda")]:
        candidates += glob.glob(os.path.join(root, "nvidia", "*", "lib", "libnvrtc.so*"))
        candidates += glob.glob(os.path.join(root, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
        candidates += glob.glob(os.path.join(root, "lib64", "libnvrtc.so*"))
    for path in candidates:
        if path and "builtins" not in path:
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    return None


def nvrtc_compile(nvrtc, code, name_expressions):
    """Compile like cupy.RawModule: returns (ok, log, lowered names)."""
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), code.encode(), b"kernel.cu", 0, None, None) == 0
    try:
        for name in name_expressions:
            assert nvrtc.nvrtcAddNameExpression(program, name.encode()) == 0
        options = [b"-std=c++14", f"--gpu-architecture=compute_{GPU_ARCH}".encode()]
        status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        lowered = {}
        if status == 0:
            for name in name_expressions:
                mangled = ctypes.c_char_p()
                assert nvrtc.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(mangled)) == 0
                lowered[name] = mangled.value.decode()
        return status == 0, log.value.decode(errors="replace"), lowered
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.mark.parametrize("c_type", sorted(C_TYPES.values()))
@pytest.mark.parametrize("filename", CU_FILES)
def test_compiles_with_nvrtc_as_cupy_rawmodule_would(filename, c_type):
    nvrtc = find_nvrtc()
    if nvrtc is None:
        pytest.skip("libnvrtc not found (install nvidia-cuda-nvrtc or a CUDA toolkit)")
    kernel_file = KERNEL_FILES[filename]
    names = kernel_file.name_expressions(c_type)
    ok, log, lowered = nvrtc_compile(nvrtc, kernel_file.source(), names)
    assert ok, log
    assert sorted(lowered) == sorted(names) and all(lowered.values())


def test_nvrtc_check_catches_a_broken_kernel():
    nvrtc = find_nvrtc()
    if nvrtc is None:
        pytest.skip("libnvrtc not found (install nvidia-cuda-nvrtc or a CUDA toolkit)")
    broken = "template <typename T> __global__ void k(T* y) { y[0] = undefined_name; }"
    ok, log, _ = nvrtc_compile(nvrtc, broken, ["k<float>"])
    assert not ok and "undefined_name" in log
