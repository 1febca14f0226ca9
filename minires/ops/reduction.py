"""Reductions over axes: sum, mean, max."""
from minires.engine.function import Function


def _normalize_axes(axis, ndim):
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


def _expand_back(grad, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input of ``shape``."""
    if not keepdims:
        grad = grad.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return grad


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
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
        self.axes = _normalize_axes(self.axis, x.ndim)
        self.x_shape = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        # y = (1/m) sum_i x_i: dy/dx_i = 1/m, m = number of elements averaged.
        xp = self.xp(grad)
        count = 1
        for a in self.axes:
            count *= self.x_shape[a]
        grad = _expand_back(grad, self.x_shape, self.axes, self.keepdims) / count
        return xp.broadcast_to(grad, self.x_shape).astype(grad.dtype, copy=True)


class Max(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axes(self.axis, x.ndim)
        y = x.max(axis=self.axes, keepdims=True)
        self.save_for_backward(x, y)
        return y if self.keepdims else y.reshape([n for i, n in enumerate(y.shape) if i not in self.axes])

    def backward(self, grad):
        # y = max_i x_i: dy/dx_i = 1 where x_i is the maximum, 0 elsewhere.
        # When several elements tie for the maximum they share the gradient equally.
        x, y = self.saved_tensors
        grad = _expand_back(grad, x.shape, self.axes, self.keepdims)
        is_max = x == y
        count = is_max.sum(axis=self.axes, keepdims=True)
        return grad * is_max / count.astype(grad.dtype)  # keep float32 float32


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):
    return Max(axis, keepdims)(x)
