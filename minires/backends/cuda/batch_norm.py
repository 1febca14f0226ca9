"""Batch normalization on the kernel path: ``kernels/batch_norm.cu``.

Inputs are (N, C) or (N, C, H, W); the kernels see every input as (N, C, HW) with
HW = 1 for the 2-D case. Per-channel values (mean, inv_std, gamma, ...) are (C,) arrays.
"""
import math

from minires.backends.cuda.loader import KernelFile, contiguous, empty, empty_like, int32, scalar

BATCH_NORM = KernelFile("batch_norm.cu", [
    "batch_norm_statistics", "batch_norm_update_running_stats", "batch_norm_forward",
    "batch_norm_backward_reduce", "batch_norm_backward_input_training", "batch_norm_backward_input_eval",
])


def _sizes(x):
    """(N, C, HW): batch, channels, and values per channel per sample."""
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def batch_norm_statistics(x, eps):
    """Per-channel batch mean, biased variance and inv_std = 1 / sqrt(var + eps)."""
    x = contiguous(x)
    N, C, HW = _sizes(x)
    mean, var, inv_std = (empty((C,), x.dtype, x) for _ in range(3))
    BATCH_NORM.launch("batch_norm_statistics", x.dtype, grid=C,
                      args=(x, mean, var, inv_std, int32(N), int32(C), int32(HW), scalar(eps, x.dtype)))
    return mean, var, inv_std


def update_running_stats(running_mean, running_var, mean, var, m, momentum):
    """Move the running averages towards the batch statistics, in place (see the kernel).
    Only for running arrays of the batch's dtype, on its device, contiguous: check with
    :func:`can_update_in_place` first."""
    C = mean.shape[0]
    BATCH_NORM.launch_over("batch_norm_update_running_stats", mean.dtype, C,
                           (running_mean, running_var, mean, var, int32(C), int32(m), scalar(momentum, mean.dtype)))


def can_update_in_place(running, like):
    """Whether the kernel can write ``running`` in place: same array type (device) and dtype
    as ``like``, and dense memory (a copy made for the kernel would not update the caller's)."""
    return type(running) is type(like) and running.dtype == like.dtype and running.flags.c_contiguous


def batch_norm_forward(x, mean, inv_std, gamma, beta):
    """y = (x - mean) * inv_std * gamma + beta, channel by channel."""
    x, mean, inv_std, gamma, beta = (contiguous(a) for a in (x, mean, inv_std, gamma, beta))
    N, C, HW = _sizes(x)
    y = empty_like(x)
    BATCH_NORM.launch_over("batch_norm_forward", x.dtype, x.size,
                           (x, mean, inv_std, gamma, beta, y, int32(x.size), int32(C), int32(HW)))
    return y


def batch_norm_backward_reduce(x, grad_y, mean, inv_std):
    """(dL/dgamma, dL/dbeta): per-channel sums of g * x_hat and of g."""
    x, grad_y, mean, inv_std = (contiguous(a) for a in (x, grad_y, mean, inv_std))
    N, C, HW = _sizes(x)
    grad_gamma, grad_beta = empty((C,), x.dtype, x), empty((C,), x.dtype, x)
    BATCH_NORM.launch("batch_norm_backward_reduce", x.dtype, grid=C,
                      args=(x, grad_y, mean, inv_std, grad_gamma, grad_beta, int32(N), int32(C), int32(HW)))
    return grad_gamma, grad_beta


def batch_norm_backward_input(x, grad_y, mean, inv_std, gamma, grad_gamma, grad_beta, training):
    """dL/dx; in training it includes the paths through the batch mean and variance."""
    grad_y, inv_std, gamma = contiguous(grad_y), contiguous(inv_std), contiguous(gamma)
    N, C, HW = _sizes(grad_y)
    grad_x = empty_like(grad_y)
    if training:
        x, mean, grad_gamma, grad_beta = (contiguous(a) for a in (x, mean, grad_gamma, grad_beta))
        BATCH_NORM.launch_over("batch_norm_backward_input_training", x.dtype, x.size,
                               (x, grad_y, mean, inv_std, gamma, grad_gamma, grad_beta, grad_x,
                                int32(x.size), int32(C), int32(HW)))
    else:
        BATCH_NORM.launch_over("batch_norm_backward_input_eval", grad_y.dtype, grad_y.size,
                               (grad_y, inv_std, gamma, grad_x, int32(grad_y.size), int32(C), int32(HW)))
    return grad_x
