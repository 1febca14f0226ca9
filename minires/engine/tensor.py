"""``Tensor``: an n-dimensional array that remembers how it was computed.

``.data`` is the array itself (NumPy on the CPU, CuPy on a GPU), ``.grad`` the
gradient that backward leaves there (a Tensor of the same shape, dtype and device,
or None; as in PyTorch), and ``.grad_fn`` the Function that produced it (None for
tensors made by the user: the leaves).
"""
import numbers
import operator

import numpy

from minires.backends import device_of, get_array_module, to_device, normalize_device

DEFAULT_DTYPE = numpy.float32


def require_tensor(where, name, value):
    """Refuse anything but a Tensor, with the fix for the usual mistake: a raw array."""
    if isinstance(value, Tensor):
        return
    kind = f"{type(value).__module__}.{type(value).__name__}"
    is_array = hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__")
    hint = "; wrap it first: minires.tensor(array) (torch.tensor in PyTorch)" if is_array else ""
    raise TypeError(f"{where}: {name} is a {kind}, not a minires Tensor{hint}")


class Tensor:
    # Makes ``cupy_array + Tensor`` call Tensor.__radd__ instead of CuPy's own add
    # (NumPy arrays ask __array_ufunc__ below instead).
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False):
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {data.dtype}")
        self.data = data
        self._grad = None
        self.requires_grad = bool(requires_grad)
        self.grad_fn = None

    # ---- what the array is -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def size(self, dim=None):
        """The shape, as PyTorch's ``x.size()``; ``x.size(0)`` is the length of one dimension.
        (The number of elements, NumPy's ``.size``, is ``numel()``.)"""
        return self.shape if dim is None else self.shape[dim]

    def numel(self):
        """The number of elements."""
        return self.data.size

    def dim(self):
        """The number of dimensions (also ``ndim``)."""
        return self.data.ndim

    @property
    def device(self):
        return device_of(self.data)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        """``numpy.asarray(t)`` for a tensor on the CPU; a GPU tensor must come over with ``.cpu()``
        first, as in PyTorch, so that no copy from the device happens unseen."""
        if self.device != "cpu":
            raise TypeError(f"cannot convert a tensor on {self.device} to a NumPy array; "
                            "call .cpu() (or .numpy(), which copies) first")
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy and array is self.data else array

    def __repr__(self):
        body = numpy.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extras = [f"dtype={self.dtype}"]
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={type(self.grad_fn).__name__}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """What a NumPy function does when it meets a Tensor:

        * ``array -= lr * p.grad`` (an ``out=`` array): plain arithmetic on the arrays, in place,
          outside the graph, as PyTorch's ``p.data -= lr * p.grad``;
        * ``array + t``, ``array * t``, ``array < t``, ...: our op, so the graph is kept;
        * any other function (``numpy.exp(t)``): on the arrays, for tensors that need no gradient;
          for one that does, an error, since the result would silently leave the graph.
        """
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        if out is not None:
            outs = tuple(o.data if isinstance(o, Tensor) else o for o in out)
            return getattr(ufunc, method)(*arrays, out=outs, **kwargs)
        if method == "__call__" and ufunc in _OPERATOR_OF_UFUNC and not kwargs:
            return _OPERATOR_OF_UFUNC[ufunc](*(as_tensor(x, like=self) for x in inputs))
        if any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
            raise TypeError(f"numpy.{ufunc.__name__} cannot take a tensor that requires grad (its result would "
                            "leave the graph); use minires's op (for example t.exp(), minires.sqrt(t)) or "
                            "pass t.detach()")
        return getattr(ufunc, method)(*arrays, **kwargs)

    # ---- gradients -----------------------------------------------------------
    @property
    def grad(self):
        """The gradient backward accumulated here: a Tensor like this one, or None."""
        return self._grad

    @grad.setter
    def grad(self, value):
        # PyTorch's checks: a gradient is a Tensor of the parameter's shape, dtype and device.
        if value is not None:
            require_tensor("assigning .grad", "the gradient", value)
            if (value.shape, value.dtype, value.device) != (self.shape, self.dtype, self.device):
                raise ValueError(f"assigned grad has shape {value.shape}, dtype {value.dtype} on {value.device}; "
                                 f"the tensor has shape {self.shape}, dtype {self.dtype} on {self.device}")
        self._grad = value
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad`` is the upstream gradient; it may be left out only for a
        single-element tensor (a loss), where it is 1.
        """
        from minires.engine.autograd import backward

        backward(self, grad, retain_graph)

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor too (leaves always keep theirs)."""
        if self.grad_fn is not None:
            self.grad_fn.retained = self

    def register_hook(self, hook):
        """Call ``hook(grad)`` with this tensor's gradient (a Tensor) each time backward computes it;
        a hook that returns a Tensor or array replaces the gradient from then on. Returns a handle
        whose ``remove()`` takes the hook off. As in PyTorch, a leaf's hook sees the sum of every
        contribution of one backward pass, before it is added to ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        owner = self.grad_fn if self.grad_fn is not None else self  # a non-leaf's gradient is its Function's output gradient
        hooks = owner.__dict__.setdefault("output_hooks" if owner is self.grad_fn else "_hooks", [])
        return RemovableHandle(hooks, hook)

    def _accumulate(self, grad):
        # The first gradient is copied because backward may hand the same array
        # to several tensors (the two inputs of an add, for instance).
        if self._grad is None:
            self._grad = Tensor(get_array_module(grad).array(grad, dtype=self.dtype, copy=True))
        else:
            self._grad.data = self._grad.data + grad

    def zero_grad(self):
        self._grad = None

    # ---- leaving the graph / moving --------------------------------------------
    def detach(self):
        """The same data, cut off from the graph (no grad_fn, no requires_grad)."""
        return Tensor(self.data)

    def numpy(self):
        """The data as a NumPy array on the CPU (a copy when it lives on a GPU)."""
        return to_device(self.data, "cpu")

    def item(self):
        """The value of a one-element tensor as a Python number (on a GPU this waits for it)."""
        if self.numel() != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    # float(loss), int(count), bool(flag) and `if t:` work on one-element tensors, as in PyTorch.
    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of a Tensor with {self.numel()} values is ambiguous; "
                               "use .any() or .all() on the data, or compare one element")
        return bool(self.item())

    def tolist(self):
        return self.numpy().tolist()

    def to(self, device):
        """A copy on ``device`` ('cpu', 'cuda', 'cuda:N'); gradients flow back through it."""
        if normalize_device(device) == self.device:
            return self
        from minires.ops.shape import ToDevice

        return ToDevice(device)(self)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def astype(self, dtype):
        from minires.ops.shape import Cast

        return Cast(dtype)(self)

    def clone(self):
        """A copy with its own array; gradients flow back through it, as with PyTorch's clone()."""
        from minires.ops.shape import Cast

        return Cast(self.dtype)(self)  # astype to the same dtype copies

    def float(self):
        return self.astype(numpy.float32)

    def double(self):
        return self.astype(numpy.float64)

    # ---- operators (the ops live in minires.ops) --------------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __pow__(self, exponent):
        return ops.pow(self, exponent)

    def __rpow__(self, base):
        return ops.pow(base, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __getitem__(self, key):
        return ops.getitem(self, key)

    def __abs__(self):
        return ops.abs(self)

    # ---- comparisons: elementwise, giving bool tensors outside the graph (as in PyTorch) -------
    # Defining == elementwise would make tensors unhashable; they stay hashable by identity,
    # so they still work as dict keys and in sets.
    __hash__ = object.__hash__

    def _compare(self, other, compare):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(compare(self.data, other))

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def argmax(self, dim=None, keepdim=False):
        """Indices of the maxima (int64, outside the graph); over all elements when dim is None."""
        return self._indices(self.data.argmax, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return self._indices(self.data.argmin, dim, keepdim)

    def _indices(self, find, dim, keepdim):
        indices = find(axis=dim, keepdims=keepdim and dim is not None)
        return Tensor(get_array_module(self.data).asarray(indices, dtype=numpy.int64))

    def requires_grad_(self, requires_grad=True):
        """Switch gradient tracking on or off for a leaf, in place (e.g. to freeze a layer); returns self."""
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("requires_grad_(False) only works on leaf tensors; use .detach() for a "
                               "non-leaf you want cut off from the graph")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def abs(self):
        return ops.abs(self)

    def sqrt(self):
        return ops.sqrt(self)

    def clamp(self, min=None, max=None):
        return ops.clamp(self, min, max)

    def sigmoid(self):
        return ops.sigmoid(self)

    def tanh(self):
        return ops.tanh(self)

    def softmax(self, dim):
        return ops.softmax(self, dim)

    def log_softmax(self, dim):
        return ops.log_softmax(self, dim)

    # Reductions take PyTorch's dim= / keepdim= (and NumPy's axis= / keepdims=, for NumPy habits).
    def sum(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.sum(self, *_reduction_args(dim, keepdim, axis, keepdims))

    def mean(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.mean(self, *_reduction_args(dim, keepdim, axis, keepdims))

    def max(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """PyTorch's max: ``x.max()`` is the largest element (0-d); ``x.max(dim)`` is the pair
        ``(values, indices)`` along one dim. For the values alone, over any dims, use ``amax``."""
        return ops.max(self, *_reduction_args(dim, keepdim, axis, keepdims))

    def min(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        """PyTorch's min: the smallest element, or ``(values, indices)`` along one dim (see ``max``)."""
        return ops.min(self, *_reduction_args(dim, keepdim, axis, keepdims))

    def amax(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.amax(self, *_reduction_args(dim, keepdim, axis, keepdims))

    def amin(self, dim=None, keepdim=False, *, axis=None, keepdims=None):
        return ops.amin(self, *_reduction_args(dim, keepdim, axis, keepdims))

    # var and std divide by n - correction; PyTorch's default correction=1 is the unbiased estimate.
    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
        dim, keepdim = _reduction_args(dim, keepdim, axis, keepdims)
        return ops.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
        dim, keepdim = _reduction_args(dim, keepdim, axis, keepdims)
        return ops.std(self, dim, unbiased, keepdim, correction=correction)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.reshape(self, shape)

    def view(self, *shape):
        """PyTorch's view: here the same as reshape (NumPy reshapes without copying when it can,
        and copies when it cannot, where PyTorch's view would raise)."""
        return self.reshape(*shape)

    def permute(self, *dims):
        """The axes in the order ``dims``: ``x.permute(0, 2, 3, 1)`` turns NCHW into NHWC."""
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return ops.permute(self, dims)

    def transpose(self, dim0, dim1):
        """PyTorch's transpose: swap two axes. (NumPy's transpose(axes), all axes at once, is ``permute``.)"""
        return ops.transpose(self, dim0, dim1)

    @property
    def T(self):
        """All axes reversed (the matrix transpose, for a 2-D tensor)."""
        return ops.permute(self, None)

    def flatten(self, start_dim=0, end_dim=-1):
        return ops.flatten(self, start_dim, end_dim)


class RemovableHandle:
    """What ``register_hook`` (and the Module hooks) return: ``handle.remove()`` unregisters."""

    def __init__(self, hooks, hook):
        self.hooks, self.hook = hooks, hook
        hooks.append(hook)

    def remove(self):
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


# NumPy's ufuncs behind Python's operators: ``ndarray + Tensor`` reaches Tensor.__array_ufunc__ as numpy.add.
_OPERATOR_OF_UFUNC = {
    numpy.add: operator.add, numpy.subtract: operator.sub, numpy.multiply: operator.mul,
    numpy.true_divide: operator.truediv, numpy.power: operator.pow, numpy.matmul: operator.matmul,
    numpy.equal: operator.eq, numpy.not_equal: operator.ne, numpy.less: operator.lt,
    numpy.less_equal: operator.le, numpy.greater: operator.gt, numpy.greater_equal: operator.ge,
}


def run_hooks(hooks, grad):
    """Pass a gradient array through tensor hooks; each may return a replacement."""
    for hook in list(hooks):
        result = hook(Tensor(grad))
        if result is not None:
            grad = result.data if isinstance(result, Tensor) else result
    return grad


def _reduction_args(dim, keepdim, axis, keepdims):
    """(axis, keepdims) from PyTorch's names or NumPy's, refusing both at once."""
    if axis is not None and dim is not None:
        raise TypeError("give dim= (PyTorch's name) or axis= (NumPy's), not both")
    return (dim if axis is None else axis), (keepdim if keepdims is None else keepdims)


def _default_dtype_for(array):
    """float data without a dtype of its own becomes float32, as in PyTorch."""
    return DEFAULT_DTYPE if array.dtype.kind == "f" else array.dtype


def tensor(data, dtype=None, device="cpu", requires_grad=False):
    """Make a leaf tensor from a list, a number or an array (copies the data).

    NumPy/CuPy arrays keep their dtype (so float64 stays float64); Python
    numbers and lists of floats become float32.
    """
    if isinstance(data, Tensor):
        data = data.data
    if hasattr(data, "dtype") and hasattr(data, "shape"):
        array = to_device(data, device)
        if array is data:
            array = array.copy()
        if dtype is not None:
            array = array.astype(dtype, copy=False)
    else:
        array = numpy.asarray(data)
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise TypeError(f"cannot make a tensor from {type(data).__name__} data of dtype {array.dtype}")
        array = array.astype(dtype if dtype is not None else _default_dtype_for(array))
        array = to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(value, like=None):
    """``value`` as a Tensor; a Python number takes the dtype and device of ``like``."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number) and like is not None:
        # A Python number is "weak": float32 * 0.5 stays float32, but int * 0.5 becomes float.
        value = value.item() if hasattr(value, "item") else value
        xp = get_array_module(like.data)
        return Tensor(xp.asarray(value, dtype=numpy.result_type(like.dtype, value)))
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # an ndarray
        return Tensor(value)
    return tensor(value, device=like.device if like is not None else "cpu")


from minires import ops  # noqa: E402  (the ops need Tensor, so they come last)
