"""Input checks shared by the layer ops, so bad input fails with a message that
names the problem instead of a broadcasting error deep inside NumPy."""
from minires.engine.tensor import Tensor, require_tensor


def require_float(op, name, array):
    if not isinstance(array, Tensor):
        require_tensor(op, name, array)
    if array.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {array.dtype}")


def require_ndim(op, name, array, ndims):
    if not isinstance(array, Tensor):
        require_tensor(op, name, array)
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if array.ndim not in ndims:
        wanted = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{op}: {name} must be {wanted}, got shape {tuple(array.shape)}")


def require_same_dtype(op, **arrays):
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{op}: inputs must share one dtype, got {listed}")


def pair(op, name, value):
    """An int or a pair of ints as a pair of ints (height, width)."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return value
