"""What the op tests share: the backends they run on, and how they compare a result with its reference.

A *backend* is where a test's tensors live and which path the ops take:

* ``numpy``: NumPy arrays, the NumPy path;
* ``emulated``: NumPy arrays, the kernel path, our ``kernels/*.cu`` run on host threads
  by the kernel emulator (slow: every launch starts 256 threads);
* ``cuda``: CuPy arrays, the kernel path on a GPU (marked ``gpu``).

conftest.py's ``backend`` fixture yields the namespace :func:`make_backend` builds.
By default a test runs on all three; :func:`cases_on_backends` gives the emulator a
smaller list of cases than the GPU (which is fast) gets, and :func:`only_on` keeps
a test that is about one path on that path.

:func:`assert_close` compares a backend's result with a float64 reference: 1e-5
(outputs) and 1e-4 (gradients) relative to the largest reference element in
float32, 1e-12 and 1e-11 in float64. :func:`float32_exact` makes test data that
float32 holds exactly, so one float64 reference serves both dtypes.
"""
import types

import numpy as np
import pytest

import minires
from minires.backends import to_device

BACKEND_NAMES = ("numpy", "emulated", "cuda")

# Caps on minires.gradcheck's sampling per backend: on the emulator every sampled element and every
# random direction costs two emulated runs of everything fn launches.
GRADCHECK_OPTIONS = {"numpy": {}, "emulated": dict(max_elements=1, directions=1), "cuda": {}}

TOLERANCES = {np.dtype(np.float32): (1e-5, 1e-4), np.dtype(np.float64): (1e-12, 1e-11)}  # (outputs, gradients)


def as_numpy(value):
    """A NumPy array holding a tensor's or an array's values, wherever they live."""
    return to_device(getattr(value, "data", value), "cpu")


def make_backend(name):
    """The namespace a test gets as ``backend``: name, device, uses_kernels, tensor, array, numpy, gradcheck."""
    device = "cuda" if name == "cuda" else "cpu"

    def tensor(array, requires_grad=False):
        """A minires tensor on this backend."""
        return minires.tensor(array, device=device, requires_grad=requires_grad)

    def array(numpy_array):
        """A raw array on this backend (an upstream gradient, labels, running statistics)."""
        return to_device(np.asarray(numpy_array), device)

    def gradcheck(fn, inputs, params=(), **options):
        """minires.gradcheck (``options`` are its own), sampling at most GRADCHECK_OPTIONS' elements
        and directions on the emulator; asserts that it passed and compared something."""
        for option, most in GRADCHECK_OPTIONS[name].items():
            options[option] = min(options.get(option, most), most)
        result = minires.gradcheck(fn, inputs, params=params, **options)
        assert result.passed and result.comparisons > 0
        return result

    return types.SimpleNamespace(name=name, device=device, uses_kernels=name != "numpy",
                                 tensor=tensor, array=array, numpy=as_numpy, gradcheck=gradcheck)


def backend_param(name, *values, id=None):
    """One parameter set for the ``backend`` fixture (plus ``values``), marked ``gpu`` on cuda."""
    return pytest.param(name, *values, marks=[pytest.mark.gpu] if name == "cuda" else [], id=id or name)


def only_on(*names):
    """Run a test on these backends only (a test about one path)."""
    return pytest.mark.parametrize("backend", [backend_param(name) for name in names], indirect=True)


def cases_on_backends(argname, cases, emulated, ids, numpy=None):
    """Parametrize ``backend`` and ``argname``: every one of ``cases`` on cuda and (unless a shorter
    ``numpy`` list is given) on numpy, only the (few, small) ``emulated`` ones on the emulator.
    ``ids`` names a case."""
    per_backend = {"numpy": cases if numpy is None else numpy, "emulated": emulated, "cuda": cases}
    params = [backend_param(name, case, id=f"{name}-{ids(case)}")
              for name in BACKEND_NAMES for case in per_backend[name]]
    return pytest.mark.parametrize(f"backend,{argname}", params, indirect=["backend"])


def float32_exact(array):
    """``array`` rounded to the nearest float32 values, as float64: the same numbers in either dtype."""
    return np.asarray(array, dtype=np.float64).astype(np.float32).astype(np.float64)


def assert_close(actual, expected, dtype, grad=False, scale=None):
    """``actual`` (a tensor or array on any backend) has ``expected``'s shape, the ``dtype`` asked for,
    and every element within the tolerance (see TOLERANCES) times ``scale``: by default the largest
    |expected|; a result that is a small difference of large terms passes the size of those terms."""
    actual = as_numpy(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    tolerance = TOLERANCES[np.dtype(dtype)][1 if grad else 0]
    if scale is None:
        scale = float(np.abs(expected).max()) if expected.size else 0.0
    np.testing.assert_allclose(actual.astype(np.float64), expected, rtol=tolerance,
                               atol=tolerance * max(scale, np.finfo(np.float64).tiny))
