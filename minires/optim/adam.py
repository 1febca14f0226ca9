"""Adam and AdamW (PyTorch's update rules, bias correction included)."""
import math

from minires.backends import get_array_module
from minires.optim.optimizer import Optimizer, _check_non_negative


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``

    With g = p.grad and t the number of steps taken by this parameter (1, 2, ...):

        g  = g + weight_decay * p                 (L2 penalty, added to the gradient)
        m  = beta1 * m + (1 - beta1) * g          (state["exp_avg"], starts at 0)
        v  = beta2 * v + (1 - beta2) * g**2       (state["exp_avg_sq"], starts at 0)
        p  = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    _decoupled = False  # AdamW sets this

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _check_group(self, group):
        _check_non_negative(group, "lr", "eps", "weight_decay")
        group["betas"] = tuple(group["betas"])
        if len(group["betas"]) != 2 or not all(0 <= b < 1 for b in group["betas"]):
            raise ValueError(f"Invalid betas: {group['betas']!r} (need two numbers in [0, 1))")

    def _update(self, p, state, group):
        xp = get_array_module(p.data)
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        g = p.grad.data
        if wd != 0:
            if self._decoupled:
                p.data *= 1 - lr * wd  # AdamW: shrink p directly
            else:
                g = g + wd * p.data  # Adam: L2 penalty through the gradient
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size = lr / (1 - beta1**t)
        denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + eps
        p.data -= step_size * (m / denom)


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)``

    Adam with *decoupled* weight decay (Loshchilov & Hutter): before the Adam step

        p = p * (1 - lr * weight_decay)

    and the gradient itself gets no L2 term.
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
