"""Batch normalization on the kernel path: ``kernels/batch_norm.cu``.

Inputs are (N, C) or (N, C, H, W); the kernels see every input as (N, C, HW) with
HW = 1 for the 2-D case. Per-channel values (mean, inv_std, gamma, ...) are (C,) arrays.

Every kernel that reads x (or the gradient) runs on a (P, C) grid: blockIdx.y is the
channel, and P blocks share each channel's m = N * HW values. The two per-channel sums
(the batch statistics, dL/dgamma and dL/dbeta) are two launches each: every block writes
one partial sum into a (C, P) array, then one thread per channel adds its P partials.

Choosing P (:func:`blocks_per_channel`). One block per channel (the simplest grid) gives
only 16 to 64 blocks in a ResNet for a GPU with 132 multiprocessors (an H200): most of it
would sit idle. So P is the smallest of
  * enough blocks to fill the GPU: GPU_BLOCKS = 4 x 132 in all (four blocks of 256 threads
    per multiprocessor: half of the 2048 threads one can hold, so every block is resident
    at once, in one wave, even if a kernel needs up to 64 registers a thread);
  * enough work per thread: at least MIN_VALUES_PER_THREAD values each, so that a block's
    final tree sum and its partial are not most of what it does;
  * MAX_BLOCKS_PER_CHANNEL = 64, so the second pass adds at most 64 partials per channel.
Small inputs get P = 1, a single block per channel as before.
"""
import functools
import math
from typing import NamedTuple

from minires.backends.cuda.loader import (
    BLOCK,
    MAX_GRID,
    KernelFile,
    blocks_for,
    contiguous,
    empty,
    empty_like,
    int32,
    scalar,
)

BATCH_NORM = KernelFile("batch_norm.cu", [
    "batch_norm_statistics_partials", "batch_norm_statistics_combine", "batch_norm_update_running_stats",
    "batch_norm_forward", "batch_norm_backward_reduce_partials", "batch_norm_backward_reduce_combine",
    "batch_norm_backward_input_training", "batch_norm_backward_input_eval",
])

GPU_BLOCKS = 4 * 132  # blocks in all to aim for: four per multiprocessor of an H200
MIN_VALUES_PER_THREAD = 4
MAX_BLOCKS_PER_CHANNEL = 64


def blocks_per_channel(m, C):
    """P, the blocks that share each channel's m values (see the module docstring)."""
    fill_the_gpu = -(-GPU_BLOCKS // C)  # ceil(GPU_BLOCKS / C)
    enough_work = m // (MIN_VALUES_PER_THREAD * BLOCK)
    return max(1, min(fill_the_gpu, enough_work, MAX_BLOCKS_PER_CHANNEL))


class LaunchPlan(NamedTuple):
    """Everything a launch needs for one input shape, built once (see :func:`launch_plan`)."""
    grid: tuple  # (P, C): blockIdx.y is the channel
    sizes: tuple  # (N, C, HW) as int32: the last arguments of every kernel on that grid
    partials_shape: tuple  # (C, P): one partial sum per block
    combine_grid: int  # blocks for the second passes, one thread per channel
    combine_sizes: tuple  # (C, HW, P, m) as int32, with m = N * HW the values per channel


@functools.lru_cache(maxsize=1024)  # a network has a handful of batch-norm shapes
def launch_plan(N, C, HW):
    """The grid and typed int arguments for an (N, C, HW) input."""
    if not 1 <= C <= MAX_GRID:
        raise ValueError(f"batch_norm kernels take 1 to {MAX_GRID} channels (one grid row of blocks "
                         f"per channel, and CUDA's grid.y stops at {MAX_GRID}), got {C}")
    int32(N * C * HW)  # raises if an index into x would not fit the kernels' int
    P = blocks_per_channel(N * HW, C)
    return LaunchPlan(grid=(P, C), sizes=(int32(N), int32(C), int32(HW)), partials_shape=(C, P),
                      combine_grid=blocks_for(C), combine_sizes=(int32(C), int32(HW), int32(P), int32(N * HW)))


def _plan(x):
    """The launch plan for x, seen as (N, C, HW)."""
    return launch_plan(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


def batch_norm_statistics(x, eps):
    """Per-channel batch mean, biased variance and inv_std = 1 / sqrt(var + eps)."""
    x = contiguous(x)
    plan = _plan(x)
    partial_sum, partial_squares = (empty(plan.partials_shape, x.dtype, x) for _ in range(2))
    BATCH_NORM.launch("batch_norm_statistics_partials", x.dtype, grid=plan.grid,
                      args=(x, partial_sum, partial_squares) + plan.sizes)
    mean, var, inv_std = (empty((x.shape[1],), x.dtype, x) for _ in range(3))
    BATCH_NORM.launch("batch_norm_statistics_combine", x.dtype, grid=plan.combine_grid,
                      args=(x, partial_sum, partial_squares, mean, var, inv_std) + plan.combine_sizes
                      + (scalar(eps, x.dtype),))
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
    plan = _plan(x)
    y = empty_like(x)
    BATCH_NORM.launch("batch_norm_forward", x.dtype, grid=plan.grid,
                      args=(x, mean, inv_std, gamma, beta, y) + plan.sizes)
    return y


def batch_norm_backward_reduce(x, grad_y, mean, inv_std):
    """(dL/dgamma, dL/dbeta): per-channel sums of g * x_hat and of g."""
    x, grad_y, mean, inv_std = (contiguous(a) for a in (x, grad_y, mean, inv_std))
    plan = _plan(x)
    partial_g, partial_g_x_hat = (empty(plan.partials_shape, x.dtype, x) for _ in range(2))
    BATCH_NORM.launch("batch_norm_backward_reduce_partials", x.dtype, grid=plan.grid,
                      args=(x, grad_y, mean, inv_std, partial_g, partial_g_x_hat) + plan.sizes)
    C, _, P, _ = plan.combine_sizes
    grad_gamma, grad_beta = (empty((x.shape[1],), x.dtype, x) for _ in range(2))
    BATCH_NORM.launch("batch_norm_backward_reduce_combine", x.dtype, grid=plan.combine_grid,
                      args=(partial_g, partial_g_x_hat, grad_gamma, grad_beta, C, P))
    return grad_gamma, grad_beta


def batch_norm_backward_input(x, grad_y, mean, inv_std, gamma, grad_gamma, grad_beta, training):
    """dL/dx; in training it includes the paths through the batch mean and variance."""
    grad_y, inv_std, gamma = contiguous(grad_y), contiguous(inv_std), contiguous(gamma)
    plan = _plan(grad_y)
    grad_x = empty_like(grad_y)
    if training:
        x, mean, grad_gamma, grad_beta = (contiguous(a) for a in (x, mean, grad_gamma, grad_beta))
        BATCH_NORM.launch("batch_norm_backward_input_training", x.dtype, grid=plan.grid,
                          args=(x, grad_y, mean, inv_std, gamma, grad_gamma, grad_beta, grad_x) + plan.sizes)
    else:
        BATCH_NORM.launch("batch_norm_backward_input_eval", grad_y.dtype, grid=plan.grid,
                          args=(grad_y, inv_std, gamma, grad_x) + plan.sizes)
    return grad_x
