"""Max, average and global average pooling on the kernel path: ``kernels/pooling.cu``.

``kernel``, ``stride`` and ``padding`` are (height, width) pairs, already checked by
the op. The kernels see the N*C channels of the batch as N*C independent "planes".

Max pooling's argmax (the winning window offset k = i*kw + j of every output) is
kept as int32: the kernels read it as ``int``, which holds any window size, so one
kernel serves every kernel size (the CPU path picks int8 for small windows to save
memory; the values are the same).
"""
import numpy

from minires.backends.cuda.loader import KernelFile, contiguous, empty, int32

POOLING = KernelFile("pooling.cu", [
    "max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
    "global_avg_pool_forward", "global_avg_pool_backward",
])


def _window_arguments(x_shape, out_hw, kernel, stride, padding):
    """The int arguments every window kernel takes after its arrays."""
    N, C, H, W = x_shape
    int32(N * C * H * W), int32(N * C * out_hw[0] * out_hw[1])  # the kernels index both with int
    return tuple(int32(v) for v in (N * C, H, W, *out_hw, *kernel, *stride, *padding))


def max_pool_forward(x, kernel, stride, padding, out_hw):
    """y (N, C, OH, OW) = the max of each window, and argmax, the offset k of the winner."""
    x = contiguous(x)
    out_shape = x.shape[:2] + tuple(out_hw)
    y = empty(out_shape, x.dtype, x)
    argmax = empty(out_shape, numpy.int32, x)
    sizes = _window_arguments(x.shape, out_hw, kernel, stride, padding)
    POOLING.launch_over("max_pool_forward", x.dtype, y.size, (x, y, argmax, *sizes))
    return y, argmax


def max_pool_backward(grad_y, argmax, x_shape, kernel, stride, padding):
    """dL/dx: each input pixel gathers dL/dy from the windows it won."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    sizes = _window_arguments(x_shape, grad_y.shape[2:], kernel, stride, padding)
    POOLING.launch_over("max_pool_backward", grad_y.dtype, grad_x.size, (grad_y, argmax, grad_x, *sizes))
    return grad_x


def avg_pool_forward(x, kernel, stride, padding, out_hw):
    """y (N, C, OH, OW) = the mean of each window, padding counted as zeros."""
    x = contiguous(x)
    y = empty(x.shape[:2] + tuple(out_hw), x.dtype, x)
    sizes = _window_arguments(x.shape, out_hw, kernel, stride, padding)
    POOLING.launch_over("avg_pool_forward", x.dtype, y.size, (x, y, *sizes))
    return y


def avg_pool_backward(grad_y, x_shape, kernel, stride, padding):
    """dL/dx: each input pixel gathers dL/dy / (kh*kw) from every window containing it."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    sizes = _window_arguments(x_shape, grad_y.shape[2:], kernel, stride, padding)
    POOLING.launch_over("avg_pool_backward", grad_y.dtype, grad_x.size, (grad_y, grad_x, *sizes))
    return grad_x


def global_avg_pool_forward(x):
    """(N, C, H, W) -> (N, C): one block of threads reduces each channel."""
    x = contiguous(x)
    N, C, H, W = x.shape
    y = empty((N, C), x.dtype, x)
    int32(x.size)  # the kernel indexes x with int
    if y.size:  # a grid of 0 blocks is not a valid launch
        POOLING.launch("global_avg_pool_forward", x.dtype, grid=N * C, args=(x, y, int32(H * W)))
    return y


def global_avg_pool_backward(grad_y, x_shape):
    """dL/dx[n, c, h, w] = dL/dy[n, c] / (H*W)."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    pixels = x_shape[2] * x_shape[3]
    POOLING.launch_over("global_avg_pool_backward", grad_y.dtype, grad_x.size,
                        (grad_y, grad_x, int32(grad_y.size), int32(pixels)))
    return grad_x
