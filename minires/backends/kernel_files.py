"""Find the CUDA kernel sources (``kernels/*.cu``).

In an installed package they are the package ``minires.kernels``; in a source
checkout that has not been installed they are the top-level ``kernels/`` folder.
"""
import os


def kernel_dir():
    """The directory holding the ``.cu`` / ``.cuh`` kernel sources."""
    try:
        import minires.kernels as kernels_package

        return os.path.dirname(os.path.abspath(kernels_package.__file__))
    except ImportError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.normpath(os.path.join(here, "..", "..", "kernels"))
    if os.path.isdir(checkout):
        return checkout
    raise FileNotFoundError(
        "cannot find the CUDA kernel sources: neither the package minires.kernels "
        f"nor the folder {checkout} exists"
    )
