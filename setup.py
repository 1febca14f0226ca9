"""Packaging for minires. The top-level ``kernels/`` folder (CUDA sources) is
installed as the package ``minires.kernels``."""
from setuptools import find_packages, setup

setup(
    name="minires",
    version="0.1.0",
    description="A from-scratch deep-learning framework for learning and experimenting with residual networks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",  # CuPy 14 (our GPU extras) needs 3.10; 3.9 is past its end of life
    packages=find_packages(include=["minires", "minires.*"]) + ["minires.kernels"],
    package_dir={"minires.kernels": "kernels"},
    package_data={
        "minires.kernels": ["*.cu", "*.cuh"],
        "minires.backends.emulator": ["cuda_emulation.h"],
        "minires.data": ["mnist_sample/*.gz", "mnist_sample/README.md"],
    },
    # threadpoolctl: the CPU convolution runs its slabs on every core, each with a single-threaded
    # BLAS (minires/ops/slab_threads.py); it is the portable way to set NumPy's BLAS thread count
    # (OpenBLAS, MKL or BLIS) and put it back. Pure Python, no dependencies of its own.
    install_requires=["numpy>=1.22", "matplotlib>=3.5", "tqdm>=4.60", "threadpoolctl>=3.1"],
    extras_require={
        # [ctk]: the CUDA runtime libraries CuPy loads (NVRTC compiles our kernels, cuBLAS
        # multiplies), so a machine with only the NVIDIA driver works. CuPy 14 needs NumPy 2.
        "cuda12": ["cupy-cuda12x[ctk]>=14", "numpy>=2"],
        "cuda13": ["cupy-cuda13x[ctk]>=14", "numpy>=2"],
        # jupytext: the tutorials are checked as notebooks too; nbclient + ipykernel execute
        # tutorial 6 as a notebook (tests/test_notebook.py: its figures show inline)
        "dev": ["pytest>=7", "jupytext>=1.14", "nbclient>=0.5", "ipykernel>=6"],
        # [interop]: safetensors files (minires.save_safetensors / load_safetensors), the format in which
        # pretrained weights are published; its NumPy API needs no torch. The README's test command
        # installs it, so CI tests the interchange.
        "interop": ["safetensors>=0.4"],
        # [mpi]: data-parallel training (minires.distributed, train --distributed) on MPI through mpi4py,
        # the engine ChainerMN and Horovod build on. An MPI library with its mpiexec comes as a wheel too, so
        # a laptop needs nothing else (mpi4py's wheels find it): MPICH's on Linux and macOS, Intel MPI's on
        # Windows (MPICH publishes none there). On a cluster, build mpi4py against the system's MPI instead
        # (README: "Training on several processes or machines"). The README's test command installs it, so
        # CI runs the 2-rank tests.
        "mpi": ["mpi4py>=4", "mpich>=4; sys_platform != 'win32'", "impi-rt; sys_platform == 'win32'"],
    },
    entry_points={"console_scripts": ["minires=minires.__main__:main"]},
    license="MIT",
)
