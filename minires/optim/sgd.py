"""Stochastic gradient descent, with PyTorch's momentum, dampening and Nesterov rule."""
from minires.optim.optimizer import Optimizer, _check_non_negative


class SGD(Optimizer):
    """``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``

    With g = p.grad, mu = momentum, tau = dampening, lambda = weight_decay:

        g   = g + lambda * p                      (L2 weight decay)
        buf = g                                   (first step)
        buf = mu * buf + (1 - tau) * g            (later steps)
        g   = g + mu * buf   if nesterov   else   buf
        p   = p - lr * g

    (the momentum lines only when mu > 0). The buffer is ``state[p]["momentum_buffer"]``.
    """

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_group(self, group):
        _check_non_negative(group, "lr", "momentum", "dampening", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, p, state, group):
        lr, mu, tau, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
        g = p.grad
        if wd != 0:
            g = g + wd * p.data
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= mu
                buf += (1 - tau) * g
            g = g + mu * buf if group["nesterov"] else buf
        p.data -= lr * g
