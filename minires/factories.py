"""Tensor factories: ``zeros``, ``ones``, ``full``, ``arange``, ``eye``, ``randn``, ``rand``, and their ``*_like``.

A factory makes a new leaf tensor from a description (a shape, a dtype, a
device) instead of from data: ``minires.zeros(2, 3)`` rather than
``minires.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])``. They follow PyTorch's
spelling and defaults:

* the shape comes as ints or as one tuple/list: ``zeros(2, 3) == zeros((2, 3))``;
* floating results are float32 unless ``dtype`` says otherwise (a NumPy dtype
  or its name: ``numpy.float64``, ``"float64"``); ``arange`` of ints and
  ``full`` of an int give int64, ``full`` of a bool gives bool;
* ``zeros_like(t)`` and friends copy the shape, dtype and device of ``t``.

Each one builds its array on the CPU with NumPy and then moves it to ``device``
with :func:`minires.backends.to_device`: one code path for every device, at the
price of a copy. The random factories draw from minires's CPU generator, so
``minires.manual_seed(0)`` makes them repeatable, with the same numbers on every
device (but not the numbers PyTorch gives for the same seed: a different generator).
"""
import numbers

import numpy

from minires.backends import to_device
from minires.engine.tensor import DEFAULT_DTYPE, Tensor, require_tensor
from minires.random import generator_for

# ---- reading the arguments ---------------------------------------------------------------

def _shape(size):
    """A shape from a tuple/list of non-negative ints."""
    if not isinstance(size, (tuple, list)):
        raise TypeError(f"size must be a tuple or list of ints, like (2, 3), got {size!r}")
    for n in size:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"size must be ints, got {n!r} in {tuple(size)}")
        if n < 0:
            raise ValueError(f"size cannot have a negative dimension, got {n} in {tuple(size)}")
    return tuple(int(n) for n in size)


def _shape_from(size):
    """``*size`` as PyTorch takes it: ints ``f(2, 3)`` or one tuple/list ``f((2, 3))``."""
    if not size:
        raise TypeError("size is missing: pass ints, zeros(2, 3), or one tuple, zeros((2, 3)); () gives a 0-d tensor")
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return _shape(size)


def _dtype(dtype, default=DEFAULT_DTYPE):
    """``dtype`` (a NumPy dtype or its name) as a numpy.dtype; None means ``default``."""
    try:
        dtype = numpy.dtype(default if dtype is None else dtype)
    except TypeError:
        raise TypeError(f"dtype must be a NumPy dtype or its name (numpy.float32, 'float32'), "
                        f"got {dtype!r}") from None
    if dtype.kind not in "biuf":
        raise TypeError(f"minires tensors hold bool, integer or floating data, not {dtype}")
    return dtype


def _floating(dtype):
    dtype = _dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"random numbers need a floating-point dtype, got {dtype}")
    return dtype


def _generator(generator):
    if generator is None:
        return generator_for(numpy)  # minires's own, seeded by minires.manual_seed
    if not isinstance(generator, numpy.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator, got {type(generator).__name__}")
    return generator


def _leaf(array, device, requires_grad):
    """Move a NumPy array to ``device`` (None: the CPU, as in PyTorch) and wrap it as a leaf."""
    return Tensor(to_device(array, "cpu" if device is None else device), requires_grad=requires_grad)


# ---- filled with a constant ----------------------------------------------------------------

def zeros(*size, dtype=None, device="cpu", requires_grad=False):
    """A tensor of zeros of shape ``size`` (float32 by default), like ``torch.zeros``."""
    return _leaf(numpy.zeros(_shape_from(size), dtype=_dtype(dtype)), device, requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False):
    """A tensor of ones of shape ``size`` (float32 by default), like ``torch.ones``."""
    return _leaf(numpy.ones(_shape_from(size), dtype=_dtype(dtype)), device, requires_grad)


def _dtype_of_fill(fill_value):
    """The dtype PyTorch gives ``full``: bool for a bool, int64 for an int, float32 for a float."""
    if isinstance(fill_value, (bool, numpy.bool_)):
        return numpy.dtype(bool)
    if isinstance(fill_value, numbers.Integral):
        return numpy.dtype(numpy.int64)
    if isinstance(fill_value, numbers.Real):
        return numpy.dtype(DEFAULT_DTYPE)
    raise TypeError(f"fill_value must be a bool, an int or a float, got {fill_value!r}")


def full(size, fill_value, *, dtype=None, device="cpu", requires_grad=False):
    """A tensor of shape ``size`` (a tuple or list) filled with ``fill_value``, like ``torch.full``.

    Without ``dtype`` the dtype follows ``fill_value``: bool, int64 or float32.
    """
    dtype = _dtype(dtype, default=_dtype_of_fill(fill_value))
    return _leaf(numpy.full(_shape(size), fill_value, dtype=dtype), device, requires_grad)


# ---- ranges and the identity ---------------------------------------------------------------

def arange(start, end=None, step=1, *, dtype=None, device="cpu", requires_grad=False):
    """The 1-d tensor ``start, start + step, ...`` up to but not including ``end``, like ``torch.arange``.

    ``arange(n)`` counts ``0 .. n-1``. Int arguments give int64, any float one
    float32. With an integer ``dtype`` the arguments are truncated to ints first.
    """
    if end is None:
        start, end = 0, start
    for name, value in (("start", start), ("end", end), ("step", step)):
        if not isinstance(value, numbers.Real):
            raise TypeError(f"arange(): {name} must be a number, got {value!r}")
        if not numpy.isfinite(value):
            raise ValueError(f"arange(): {name} must be finite, got {value!r}")
    all_ints = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    dtype = _dtype(dtype, default=numpy.int64 if all_ints else DEFAULT_DTYPE)
    if dtype.kind == "b":
        raise TypeError("arange() does not make bool tensors")
    if dtype.kind in "iu":
        start, end, step = int(start), int(end), int(step)
    if step == 0:
        raise ValueError("arange(): step must be nonzero")
    if (end - start) * step < 0:
        raise ValueError(f"arange(): start {start} and end {end} are inconsistent with the sign of step {step}")
    # Computed in int64 or float64, then cast: float32 steps would pile up rounding errors.
    exact = numpy.int64 if dtype.kind in "iu" else numpy.float64
    return _leaf(numpy.arange(start, end, step, dtype=exact).astype(dtype), device, requires_grad)


def eye(n, m=None, *, dtype=None, device="cpu", requires_grad=False):
    """The ``n`` x ``m`` identity matrix (``m`` defaults to ``n``), like ``torch.eye``."""
    m = n if m is None else m
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"eye(): {name} must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"eye(): {name} must be greater or equal to 0, got {value}")
    return _leaf(numpy.eye(int(n), int(m), dtype=_dtype(dtype)), device, requires_grad)


# ---- random --------------------------------------------------------------------------------

def _uniform(rng, shape, dtype):
    """[0, 1) as PyTorch draws it: a random integer k < 2**p times 2**-p, p the dtype's precision.

    Every value is exact in ``dtype``, so rounding can never turn one into 1.0
    (as casting a float64 draw to float32 could)."""
    p = numpy.finfo(dtype).nmant + 1
    return (rng.integers(0, 2 ** p, size=shape) * 2.0 ** -p).astype(dtype)


def randn(*size, generator=None, dtype=None, device="cpu", requires_grad=False):
    """Samples of the standard normal N(0, 1) in shape ``size``, like ``torch.randn``.

    Drawn from minires's generator (``minires.manual_seed`` makes them repeatable)
    or ``generator``, a numpy.random.Generator; not PyTorch's numbers for the same seed.
    """
    shape, dtype = _shape_from(size), _floating(dtype)
    array = _generator(generator).standard_normal(shape).astype(dtype)
    return _leaf(array, device, requires_grad)


def rand(*size, generator=None, dtype=None, device="cpu", requires_grad=False):
    """Samples of the uniform distribution on [0, 1) in shape ``size``, like ``torch.rand``.

    Drawn from minires's generator (``minires.manual_seed`` makes them repeatable)
    or ``generator``, a numpy.random.Generator; not PyTorch's numbers for the same seed.
    """
    shape, dtype = _shape_from(size), _floating(dtype)
    return _leaf(_uniform(_generator(generator), shape, dtype), device, requires_grad)


# ---- *_like: shape, dtype and device from another tensor ----------------------------------

def _like(where, input, dtype, device):
    require_tensor(where, "input", input)
    return input.shape, input.dtype if dtype is None else dtype, input.device if device is None else device


def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    """Zeros with the shape, dtype and device of ``input``, like ``torch.zeros_like``."""
    shape, dtype, device = _like("zeros_like", input, dtype, device)
    return zeros(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    """Ones with the shape, dtype and device of ``input``, like ``torch.ones_like``."""
    shape, dtype, device = _like("ones_like", input, dtype, device)
    return ones(shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    """``fill_value`` in the shape, dtype and device of ``input``, like ``torch.full_like``.

    The dtype is ``input``'s, not ``fill_value``'s: ``full_like(int_tensor, 2.5)`` holds 2.
    """
    shape, dtype, device = _like("full_like", input, dtype, device)
    return full(shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(input, *, generator=None, dtype=None, device=None, requires_grad=False):
    """``randn`` in the shape, dtype and device of ``input``, like ``torch.randn_like``."""
    shape, dtype, device = _like("randn_like", input, dtype, device)
    return randn(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def rand_like(input, *, generator=None, dtype=None, device=None, requires_grad=False):
    """``rand`` in the shape, dtype and device of ``input``, like ``torch.rand_like``."""
    shape, dtype, device = _like("rand_like", input, dtype, device)
    return rand(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)
