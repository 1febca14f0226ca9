"""Reductions over dimensions: sum, mean, max/min (amax/amin), var and std.

Every reduction takes PyTorch's ``dim`` (an int, a tuple of ints, or None for
all of them; negatives count from the end) and ``keepdim`` (keep each reduced
dimension with size 1, so the result broadcasts against the input).

max and min come in PyTorch's two flavours:

* ``amax(x, dim)`` / ``amin(x, dim)``: the values only, over any dims;
* ``max(x)`` (no dim): the largest value, 0-d; ``max(x, dim)`` (one int dim): a
  named pair ``(values, indices)``, like ``torch.return_types.max``; the values
  are differentiable, the indices (int64, the first extreme along dim) are not.

Ties: when several elements share the maximum, our backward splits the gradient
equally among them. That is PyTorch's rule for ``amax`` and for ``max()``
without dim; PyTorch's ``max(x, dim)`` gives it all to the element at the
returned index instead (the same sum, spread differently).
"""
import numbers
import warnings
from collections import namedtuple

import numpy
from numpy.exceptions import AxisError

from minires.engine.function import Function
from minires.engine.tensor import Tensor
from minires.ops.validate import require_float

# What max(x, dim) and min(x, dim) return: unpack it, values, indices = x.max(1), or read .values / .indices.
MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])
# A dim out of range raises NumPy's AxisError: both an IndexError (as in PyTorch) and a ValueError (as in NumPy).


def _normalize_axes(axis, ndim, op="reduction"):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of axes.

    As in PyTorch, a 0-d tensor may be reduced over dim 0 or -1 (its single element)."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    size = ndim or 1
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"{op}: dim must be an int or a tuple of ints, got {axis!r}")
        if not -size <= a < size:
            raise AxisError(f"{op}: dim {a} is out of range for a tensor with {ndim} dimensions "
                            f"(expected a dim in [{-size}, {size - 1}])")
    normalized = tuple(sorted(int(a) % size for a in axes))
    if len(set(normalized)) < len(normalized):
        raise ValueError(f"{op}: dim {axis!r} names a dimension more than once")
    return normalized if ndim else ()


def _expand_back(grad, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input of ``shape``."""
    if not keepdims:
        grad = grad.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return grad


def _count(shape, axes):
    """How many elements each output element reduces: the product of the reduced sizes."""
    count = 1
    for a in axes:
        count *= shape[a]
    return count


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim, "sum")
        self.x_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # y = sum_i x_i: dy/dx_i = 1, so every summed element receives grad.
        xp = self.xp(grad)
        grad = _expand_back(grad, self.x_shape, self.axes, self.keepdims)
        return xp.broadcast_to(grad, self.x_shape).copy()


class Mean(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim, "mean")
        self.x_shape = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # y = (1/m) sum_i x_i: dy/dx_i = 1/m, m = number of elements averaged.
        xp = self.xp(grad)
        count = _count(self.x_shape, self.axes)
        grad = _expand_back(grad, self.x_shape, self.axes, self.keepdims) / count
        return xp.broadcast_to(grad, self.x_shape).astype(grad.dtype, copy=True)


class Max(Function):
    """The largest element over ``axis`` (PyTorch's amax); Min below reuses everything but ``extreme``."""
    name = "max"

    def __init__(self, axis=None, keepdims=False, name=None):
        self.axis, self.keepdims = axis, keepdims
        self.name = name or self.name  # what errors call the op: max, or amax

    def extreme(self, x, axes):
        return x.max(axis=axes, keepdims=True)

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim, self.name)
        if any(x.shape[a] == 0 for a in self.axes):
            raise RuntimeError(f"{self.name}: cannot reduce an empty dimension (shape {tuple(x.shape)}): "
                               "it has no largest or smallest element")
        y = self.extreme(x, self.axes)
        self.save_for_backward(x, y)
        return y if self.keepdims else y.reshape([n for i, n in enumerate(y.shape) if i not in self.axes])

    def backward(self, grad):
        # y = max_i x_i (or min_i x_i): y moves with the extreme element and ignores the rest, so
        # dy/dx_i = 1 where x_i == y and 0 elsewhere. When several elements tie they share the
        # gradient equally, 1/count each (PyTorch's rule for amax/amin and for max()/min() without dim).
        x, y = self.saved_tensors
        grad = _expand_back(grad, x.shape, self.axes, self.keepdims)
        is_max = x == y
        count = is_max.sum(axis=self.axes, keepdims=True)
        return grad * is_max / count.astype(grad.dtype)  # keep float32 float32


class Min(Max):
    """The smallest element over ``axis`` (PyTorch's amin); the backward is Max's, with y the minimum."""
    name = "min"

    def extreme(self, x, axes):
        return x.min(axis=axes, keepdims=True)


def _deviations(x, axes, correction):
    """(d, dof, ss): x minus its mean over ``axes``, the divisor max(0, n - correction) with n the
    elements each mean averages (PyTorch's rule), and sum(d^2) over ``axes`` (kept as size-1 dims)."""
    d = x - x.mean(axis=axes, keepdims=True)
    n = _count(x.shape, axes)
    return d, (n - correction if n > correction else 0), (d * d).sum(axis=axes, keepdims=True)


def _divide(total, dof):
    """total / dof; a dof of 0 gives inf (or nan for 0/0) without NumPy's warnings: the op warns itself."""
    with numpy.errstate(divide="ignore", invalid="ignore"):
        return total / dof


class Var(Function):
    """The variance over ``axis``: sum of squared deviations from the mean, divided by n - correction."""

    def __init__(self, axis=None, keepdims=False, correction=1):
        self.axis, self.keepdims, self.correction = axis, keepdims, correction

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim, "var")
        d, self.dof, ss = _deviations(x, self.axes, self.correction)
        self.save_for_backward(d)
        v = _divide(ss, self.dof)
        return v if self.keepdims else v.reshape([k for i, k in enumerate(v.shape) if i not in self.axes])

    def backward(self, grad):
        # v = sum_i (x_i - m)^2 / dof with m = mean(x): dv/dx_j = 2 (x_j - m) / dof - (2/n) sum_i (x_i - m) / dof,
        # and sum_i (x_i - m) = 0, so dv/dx_j = 2 (x_j - m) / dof.
        (d,) = self.saved_tensors
        grad = _expand_back(grad, d.shape, self.axes, self.keepdims)
        return _divide(grad * 2 * d, self.dof)


class Std(Function):
    """The standard deviation over ``axis``: the square root of Var."""

    def __init__(self, axis=None, keepdims=False, correction=1):
        self.axis, self.keepdims, self.correction = axis, keepdims, correction

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim, "std")
        d, self.dof, ss = _deviations(x, self.axes, self.correction)
        s = self.xp(x).sqrt(_divide(ss, self.dof))
        self.save_for_backward(d, s)
        return s if self.keepdims else s.reshape([k for i, k in enumerate(s.shape) if i not in self.axes])

    def backward(self, grad):
        # s = sqrt(v): ds/dx_j = (dv/dx_j) / (2 s) = 2 (x_j - m) / dof / (2 s) = (x_j - m) / (dof s).
        # Where s = 0 (all elements equal) that is 0/0; PyTorch gives 0 there, and so do we.
        d, s = self.saved_tensors
        grad = _expand_back(grad, d.shape, self.axes, self.keepdims)
        nonzero = s != 0
        safe_s = self.xp(s).where(nonzero, s, 1)
        return _divide(grad * nonzero * d / safe_s, self.dof)


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def amax(input, dim=None, keepdim=False):
    """The largest values over ``dim`` (an int, a tuple, None for all); PyTorch's ``torch.amax``."""
    return Max(dim, keepdim, "amax")(input)


def amin(input, dim=None, keepdim=False):
    """The smallest values over ``dim``; PyTorch's ``torch.amin``."""
    return Min(dim, keepdim, "amin")(input)


def _extreme(op, function, result, input, dim, keepdim):
    """max and min: the 0-d extreme when dim is None, else ``result(values, indices)`` along one dim."""
    if dim is None:
        if keepdim:
            raise TypeError(f"{op}: keepdim needs a dim; {op}(x) without one reduces every dimension")
        return function(None, False)(input)
    if isinstance(dim, Tensor):
        raise TypeError(f"{op}: the elementwise {op}imum of two tensors is not supported; "
                        f"write where(a {'>' if op == 'max' else '<'} b, a, b)")
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op}: dim must be one int, got {dim!r}; a{op}(x, dim) reduces several dims at once")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    values = function(dim, keepdim)(input)
    data = input.data
    xp = Function.xp(data)
    if input.ndim == 0:  # dim 0 or -1 of a 0-d tensor: its one element, at index 0
        indices = xp.zeros((), dtype=numpy.int64)
    else:
        find = data.argmax if function is Max else data.argmin  # NumPy's, like PyTorch's, finds the first
        indices = find(axis=int(dim), keepdims=keepdim)
    return result(values, Tensor(xp.asarray(indices, dtype=numpy.int64)))


def max(input, dim=None, keepdim=False):
    """PyTorch's ``torch.max``: ``max(x)`` is the largest element (0-d); ``max(x, dim)`` (one int dim)
    is the pair ``(values, indices)`` along dim, unpacked or read as ``.values`` / ``.indices``.
    For the values alone, over any dims, use :func:`amax`."""
    return _extreme("max", Max, MaxResult, input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    """PyTorch's ``torch.min``: the smallest element, or ``(values, indices)`` along one dim."""
    return _extreme("min", Min, MinResult, input, dim, keepdim)


def _correction(op, unbiased, correction):
    """The number n is reduced by: PyTorch's correction= (default 1), or its older unbiased= (True: 1)."""
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: give correction= or unbiased=, not both")
    if unbiased is not None:
        if not isinstance(unbiased, bool):
            raise TypeError(f"{op}: unbiased must be True or False, got {unbiased!r} (a number goes in correction=)")
        return 1 if unbiased else 0
    if correction is None:
        return 1
    if isinstance(correction, bool) or not isinstance(correction, numbers.Real):
        raise TypeError(f"{op}: correction must be a number, got {correction!r}")
    return correction


def _variance_op(op, function, input, dim, unbiased, keepdim, correction):
    require_float(op, "input", input)
    if isinstance(dim, bool):  # PyTorch's older spelling std(x, unbiased), as in x.std(False)
        if unbiased is not None:
            raise TypeError(f"{op}: dim must be an int, a tuple of ints or None, got {dim!r}")
        dim, unbiased = None, dim
    correction = _correction(op, unbiased, correction)
    n = _count(input.shape, _normalize_axes(dim, input.ndim, op))
    if n - correction <= 0:
        warnings.warn(f"{op}: degrees of freedom <= 0 (each result averages {n} elements and correction is "
                      f"{correction}); the result is inf or nan, as in PyTorch", RuntimeWarning, stacklevel=3)
    return function(dim, keepdim, correction)(input)


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The variance over ``dim``: sum (x - mean)^2 / (n - correction). As PyTorch's ``torch.var``, the
    default correction is 1 (Bessel's, unbiased); correction=0 (or unbiased=False) divides by n."""
    return _variance_op("var", Var, input, dim, unbiased, keepdim, correction)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The standard deviation, sqrt of :func:`var` with the same arguments; PyTorch's ``torch.std``."""
    return _variance_op("std", Std, input, dim, unbiased, keepdim, correction)
