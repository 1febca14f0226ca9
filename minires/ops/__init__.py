"""Every differentiable operation, each a ``Function`` with a hand-written backward.

The general tensor ops are re-exported here (``ops.add``, ``ops.sum`` ...); the
neural-network layers (conv2d, batch_norm, ...) are in ``minires.functional``.
"""
from minires.ops.arithmetic import add, sub, mul, div, neg, pow
from minires.ops.elementwise import exp, log, abs, sqrt, clamp, where
from minires.ops.smooth import sigmoid, tanh, softmax, log_softmax
from minires.ops.reduction import sum, mean, max, min, amax, amin, var, std
from minires.ops.shape import reshape, permute, transpose, flatten, getitem, concatenate, cat
from minires.ops.matmul import matmul

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "abs", "sqrt", "clamp", "where",
    "sigmoid", "tanh", "softmax", "log_softmax",
    "sum", "mean", "max", "min", "amax", "amin", "var", "std",
    "reshape", "permute", "transpose", "flatten", "getitem", "concatenate", "cat", "matmul",
]
