"""minires: a small deep-learning framework for learning residual networks from scratch.

    import minires
    x = minires.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x
"""
from minires.engine import Tensor, tensor, as_tensor, Function, no_grad, enable_grad, is_grad_enabled
from minires.ops import (
    add, sub, mul, div, neg, pow, exp, log, sum, mean, max,
    reshape, permute, transpose, flatten, getitem, concatenate, cat, matmul,
    abs, sqrt, clamp, where, min, amax, amin, var, std, sigmoid, tanh, softmax, log_softmax,
)
from minires.factories import (
    zeros, ones, full, arange, eye, randn, rand, zeros_like, ones_like, full_like, randn_like, rand_like,
)
from minires import functional
from minires.gradcheck import gradcheck, GradcheckError
from minires.serialization import save, load
from minires.interop.safetensors_io import save_safetensors, load_safetensors  # needs minires[interop] when called
from minires.summary import summary
from minires.random import manual_seed
from minires.backends import cuda_status

__version__ = "0.1.0"

# Reachable as attributes after a plain ``import minires`` (minires.nn.Conv2d, minires.models.resnet20()),
# imported on first use: loading them all up front would add about 0.15 s to every ``import minires``.
_LAZY_SUBMODULES = ("nn", "optim", "models", "data", "training", "experiments", "viz", "prune", "interop")

__all__ = [
    "Tensor", "tensor", "as_tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled",
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sum", "mean", "max",
    "reshape", "permute", "transpose", "flatten", "getitem", "concatenate", "cat", "matmul",
    "abs", "sqrt", "clamp", "where", "min", "amax", "amin", "var", "std", "sigmoid", "tanh", "softmax", "log_softmax",
    "zeros", "ones", "full", "arange", "eye", "randn", "rand",
    "zeros_like", "ones_like", "full_like", "randn_like", "rand_like",
    "gradcheck", "GradcheckError", "manual_seed", "cuda_is_available", "cuda_status", "save", "load", "save_safetensors", "load_safetensors", "summary",
    "functional", *_LAZY_SUBMODULES,
]


def __getattr__(name):
    """Import a lazy submodule the first time it is named (PEP 562)."""
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f"minires.{name}")
        globals()[name] = module  # later lookups find it directly
        return module
    raise AttributeError(f"module 'minires' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))


def cuda_is_available():
    """True when CuPy is installed and a CUDA device answers (see ``cuda_status`` for why not)."""
    return cuda_status()[0]
