"""Stochastic gradient descent, with PyTorch's momentum, dampening and Nesterov rule."""
from minires.backends.cuda import empty_like, uses_kernels
from minires.backends.cuda import sgd as sgd_kernels
from minires.backends.cuda.loader import device_scope
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
        if uses_kernels(p.data):  # the kernel path: the whole update in one kernel (kernels/sgd.cu)
            with device_scope(p.data):  # on the GPU that holds the parameter
                self._update_with_kernel(p, state, lr, mu, tau, wd, group["nesterov"])
            return
        g = p.grad.data
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

    def _update_with_kernel(self, p, state, lr, mu, tau, wd, nesterov):
        if mu == 0:
            sgd_kernels.sgd_step(p.data, p.grad.data, lr, wd)
            return
        first_step = state.get("momentum_buffer") is None
        if first_step:  # the kernel fills it with g
            state["momentum_buffer"] = empty_like(p.data)
        sgd_kernels.sgd_momentum_step(p.data, p.grad.data, state["momentum_buffer"], lr, mu, tau, wd, nesterov, first_step)
