"""The SGD update on the kernel path: ``kernels/sgd.cu``.

Both functions change ``param`` (and ``buffer``) in place, so these must be the
optimizer's own C-contiguous arrays: a contiguous *copy* would be updated and
then thrown away.
"""
from minires.backends.cuda.loader import KernelFile, contiguous, int32, scalar

SGD_UPDATE = KernelFile("sgd.cu", ["sgd_step", "sgd_momentum_step"])


def _updated_in_place(name, array):
    if not array.flags.c_contiguous:
        raise ValueError(f"the SGD kernels update {name} in place and need it C-contiguous")
    return array


def _gradient_for(param, grad):
    """The gradient as a contiguous array of the parameter's dtype (normally already one)."""
    return contiguous(grad.astype(param.dtype, copy=False))


def sgd_step(param, grad, lr, weight_decay):
    """p -= lr * (g + weight_decay * p)."""
    param = _updated_in_place("the parameter", param)
    t = param.dtype
    SGD_UPDATE.launch_over("sgd_step", t, param.size,
                    (param, _gradient_for(param, grad), scalar(lr, t), scalar(weight_decay, t), int32(param.size)))


def sgd_momentum_step(param, grad, buffer, lr, momentum, dampening, weight_decay, nesterov, is_first_step):
    """One momentum step; ``buffer`` is overwritten with g when ``is_first_step``."""
    param = _updated_in_place("the parameter", param)
    buffer = _updated_in_place("the momentum buffer", buffer)
    t = param.dtype
    SGD_UPDATE.launch_over("sgd_momentum_step", t, param.size,
                    (param, _gradient_for(param, grad), buffer, scalar(lr, t), scalar(momentum, t),
                     scalar(dampening, t), scalar(weight_decay, t), int32(bool(nesterov)), int32(bool(is_first_step)),
                     int32(param.size)))
