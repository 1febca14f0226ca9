"""minires: a small deep-learning framework for learning residual networks from scratch.

    import minires
    x = minires.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()          # x.grad == 2 * x
"""
from minires.engine import Tensor, tensor, as_tensor, Function, no_grad, enable_grad, is_grad_enabled
from minires.ops import (
    add, sub, mul, div, neg, pow, exp, log, sum, mean, max,
    reshape, transpose, flatten, getitem, concatenate, cat, matmul,
)
from minires import functional
from minires.gradcheck import gradcheck, GradcheckError
from minires.random import manual_seed
from minires.backends import cuda_status

__version__ = "0.1.0"


def cuda_is_available():
    """True when CuPy is installed and a CUDA device answers (see ``cuda_status`` for why not)."""
    return cuda_status()[0]
