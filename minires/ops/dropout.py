"""Dropout (Srivastava et al. 2014), in the "inverted" form PyTorch uses.

Training: each element is zeroed with probability p and the survivors are
scaled by 1/(1-p), so the expected output equals the input and evaluation
needs no rescaling. Evaluation: the identity.
"""
from minires.engine.function import Function
from minires.ops.validate import require_float
from minires.random import generator_like


class DropoutFunction(Function):
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        keep = generator_like(x).random(x.shape) >= self.p
        scale = keep.astype(x.dtype) / (1.0 - self.p) if self.p < 1 else keep.astype(x.dtype)
        self.save_for_backward(scale)
        return x * scale

    def backward(self, grad):
        # y = x * scale with a fixed random scale (0 or 1/(1-p)): dy/dx = scale.
        (scale,) = self.saved_tensors
        return grad * scale


def dropout(x, p=0.5, training=True):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    require_float("dropout", "input", x)
    if not training or p == 0.0:
        return x
    return DropoutFunction(p)(x)
