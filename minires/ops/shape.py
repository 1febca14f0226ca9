"""Ops that move elements around without arithmetic: reshape, transpose, flatten,
indexing, concatenation, padding, and copies between dtypes and devices.

Their backward moves the gradient back to where each element came from.
"""
import numpy

from minires.backends import device_of, normalize_device, to_device
from minires.engine.function import Function
from minires.engine.tensor import Tensor, as_tensor
from minires.ops.concat import channel_concat


class Reshape(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.x_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} into shape {self.shape}") from None

    def backward(self, grad):
        # Reshape keeps every element: the gradient only takes the old shape back.
        return grad.reshape(self.x_shape)


class Permute(Function):
    """Reorder the axes: y has x's axis ``axes[k]`` as its axis k (all of them reversed when None)."""

    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x):
        if self.axes is not None and sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"axes {self.axes} are not a permutation of the {x.ndim} axes of shape {x.shape}")
        return x.transpose(self.axes)

    def backward(self, grad):
        # Element (i, j) went to (j, i): send the gradient back with the inverse permutation.
        if self.axes is None:
            return grad.transpose()
        return grad.transpose(numpy.argsort([a % grad.ndim for a in self.axes]))


class GetItem(Function):
    def __init__(self, key):
        self.key = key

    def forward(self, x):
        self.x_shape = x.shape
        return x[self.key]

    def backward(self, grad):
        # y = x[key]: each selected element gets its gradient back, the rest get 0;
        # an element selected several times (advanced indexing) gets the sum.
        xp = self.xp(grad)
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)
        if _is_basic_index(self.key):
            grad_x[self.key] = grad  # slices never select an element twice
        else:
            xp.add.at(grad_x, self.key, grad)
        return grad_x


def _is_basic_index(key):
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) for k in key)


class Concatenate(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        self.sizes = [x.shape[self.axis] for x in xs]
        return self.xp(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, grad):
        # Each input owns a block of the output along ``axis``: cut the gradient into those blocks.
        xp = self.xp(grad)
        bounds = numpy.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.split(grad, bounds, axis=self.axis))


class Pad(Function):
    """Constant padding; ``pad_width`` is NumPy's ((before, after), ...) per axis."""

    def __init__(self, pad_width, value=0.0):
        self.pad_width = pad_width
        self.value = value

    def forward(self, x):
        if len(self.pad_width) != x.ndim:
            raise ValueError(f"pad needs one (before, after) pair per axis: got {self.pad_width} for shape {x.shape}")
        return self.xp(x).pad(x, self.pad_width, mode="constant", constant_values=self.value)

    def backward(self, grad):
        # The padding is constant, so only the original region carries gradient: crop it out.
        index = tuple(slice(before, grad.shape[i] - after) for i, (before, after) in enumerate(self.pad_width))
        return grad[index]


class Cast(Function):
    def __init__(self, dtype):
        self.dtype = numpy.dtype(dtype)

    def forward(self, x):
        self.x_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, grad):
        # y = x in another precision: the gradient is cast back.
        return grad.astype(self.x_dtype)


class ToDevice(Function):
    def __init__(self, device):
        self.device = normalize_device(device)

    def forward(self, x):
        self.x_device = device_of(x)
        return to_device(x, self.device)

    def backward(self, grad):
        # y = x on another device: the gradient travels back.
        return to_device(grad, self.x_device)


def reshape(x, shape):
    return Reshape(shape)(x)


def permute(x, dims):
    """PyTorch's ``torch.permute``: the axes in the order ``dims`` (NumPy's ``transpose(axes)``)."""
    return Permute(dims)(x)


def transpose(x, dim0, dim1):
    """PyTorch's ``torch.transpose``: swap two axes."""
    dims = list(range(x.ndim))
    try:
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    except (IndexError, TypeError):
        raise ValueError(f"transpose: dims {dim0!r} and {dim1!r} must be axes of shape {tuple(x.shape)}; "
                         "to reorder all axes at once use permute(...)") from None
    return Permute(dims)(x)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge the axes start_dim..end_dim into one (PyTorch's ``torch.flatten``)."""
    ndim = x.ndim
    start, end = start_dim % max(ndim, 1), end_dim % max(ndim, 1)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    merged = 1
    for n in x.shape[start : end + 1]:
        merged *= n
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1 :])


def getitem(x, key):
    if isinstance(key, Tensor):
        key = key.data
    elif isinstance(key, tuple):
        key = tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return GetItem(key)(x)


def concatenate(tensors, axis=0):
    """Join tensors along ``axis``. 4-D floating-point tensors along the channel axis (1 or -3), a
    DenseNet's hot path, go to :class:`minires.ops.concat.ChannelConcat`, which keeps the NumPy
    path's channel-major layout and whose backward hands out views; everything else to Concatenate."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    if _is_channel_concat(tensors, axis):
        return channel_concat(tensors, op="cat")
    return Concatenate(axis)(*tensors)


def _is_channel_concat(tensors, axis):
    """Whether this is a concatenation of 4-D floating-point tensors along dim 1 (or -3)."""
    if isinstance(axis, bool) or axis not in (1, -3):
        return False
    return all(t.ndim == 4 for t in tensors) and all(t.dtype.kind == "f" for t in tensors)


def cat(tensors, dim=0):
    """PyTorch's spelling of :func:`concatenate`."""
    return concatenate(tensors, axis=dim)

