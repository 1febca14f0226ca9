"""CUDA kernel sources for minires' GPU backend, shipped as ``minires.kernels``.

The ``.cu`` files here are compiled at run time by CuPy (``cupy.RawModule``);
this package only carries them. See ``minires.backends.kernel_dir``.
"""
