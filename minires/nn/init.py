"""Weight initialisers, in place, PyTorch spelling (``kaiming_normal_``...).

He (Kaiming) et al. 2015: for a ReLU network keep the variance of activations
constant from layer to layer with Var(w) = 2 / fan_in (fan_out for the backward
pass). Glorot & Bengio 2010 (Xavier): Var(w) = 2 / (fan_in + fan_out).
For a conv weight (out, in, kh, kw): fan_in = in*kh*kw, fan_out = out*kh*kw.
"""
import math

from minires.backends import get_array_module
from minires.random import generator_for


def _fans(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {tensor.shape}")
    receptive = 1
    for n in tensor.shape[2:]:
        receptive *= n
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fill(tensor, sample):
    xp = get_array_module(tensor.data)
    tensor.data[...] = xp.asarray(sample(generator_for(xp), tensor.shape), dtype=tensor.dtype)
    return tensor


def kaiming_normal_(tensor, mode="fan_in", nonlinearity="relu"):
    """Normal(0, std^2) with std = gain / sqrt(fan); gain = sqrt(2) for ReLU."""
    fan_in, fan_out = _fans(tensor)
    gain = math.sqrt(2.0) if nonlinearity == "relu" else 1.0
    std = gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    return _fill(tensor, lambda rng, shape: rng.normal(0.0, std, size=shape))


def kaiming_uniform_(tensor, a=0.0, mode="fan_in"):
    """Uniform(-b, b) with b = gain * sqrt(3 / fan), gain = sqrt(2 / (1 + a^2))."""
    fan_in, fan_out = _fans(tensor)
    bound = math.sqrt(2.0 / (1 + a * a)) * math.sqrt(3.0 / (fan_in if mode == "fan_in" else fan_out))
    return _fill(tensor, lambda rng, shape: rng.uniform(-bound, bound, size=shape))


def xavier_uniform_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill(tensor, lambda rng, shape: rng.uniform(-bound, bound, size=shape))


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = _fans(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, lambda rng, shape: rng.normal(0.0, std, size=shape))


def uniform_(tensor, low=0.0, high=1.0):
    return _fill(tensor, lambda rng, shape: rng.uniform(low, high, size=shape))


def constant_(tensor, value):
    tensor.data[...] = value
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)
