"""Gradient clipping by the total norm (``torch.nn.utils.clip_grad_norm_``)."""
import math

from minires.backends import get_array_module
from minires.engine.tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together, in place, so that their total norm is at most ``max_norm``.

    The total norm treats every gradient as one long vector:

        total = (sum over params of ||g||_p ** p) ** (1/p)     (p = norm_type; max |g| for inf)
        coef  = max_norm / (total + 1e-6)
        g     = g * coef                                        (only when coef < 1)

    Parameters without a gradient are skipped. Returns the total norm *before*
    clipping, as a Python float (0.0 when no parameter has a gradient).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad.data for p in parameters if p.grad is not None]  # the arrays, scaled in place
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    norms = [float(get_array_module(g).linalg.norm(g.ravel(), ord=norm_type)) for g in grads]
    if norm_type == math.inf:
        total = max(norms)
    else:
        total = sum(n**norm_type for n in norms) ** (1.0 / norm_type)
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g *= coef
    return total
