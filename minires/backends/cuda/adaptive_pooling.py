"""Adaptive average and max pooling on the kernel path: ``kernels/adaptive_pooling.cu``.

The kernels see the N*C channels of the batch as N*C independent "planes" and compute
each bin's edges from (H, OH) and (W, OW) themselves. Max pooling keeps, for every
output, the winner's pixel index h*W + w within its plane, as int32 (the kernels read
it as ``int``).
"""
import numpy

from minires.backends.cuda.loader import KernelFile, contiguous, empty, int32

ADAPTIVE_POOLING = KernelFile("adaptive_pooling.cu", [
    "adaptive_avg_pool_forward", "adaptive_avg_pool_backward",
    "adaptive_max_pool_forward", "adaptive_max_pool_backward",
])


def _sizes(x_shape, out_hw):
    """(N*C, H, W, OH, OW) as int32, after checking that every index and bin edge fits an int."""
    N, C, H, W = x_shape
    OH, OW = out_hw
    # the kernels index x and y with int, and compute bin edges as (h + 1) * OH and (i + 1) * H
    int32(N * C * H * W), int32(N * C * OH * OW), int32((H + 1) * OH), int32((W + 1) * OW)
    return tuple(int32(v) for v in (N * C, H, W, OH, OW))


def adaptive_avg_pool_forward(x, out_hw):
    """y (N, C, OH, OW) = the mean of each bin."""
    x = contiguous(x)
    y = empty(x.shape[:2] + tuple(out_hw), x.dtype, x)
    ADAPTIVE_POOLING.launch_over("adaptive_avg_pool_forward", x.dtype, y.size, (x, y, *_sizes(x.shape, out_hw)))
    return y


def adaptive_avg_pool_backward(grad_y, x_shape):
    """dL/dx: each input pixel gathers its share of dL/dy from every bin covering it."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    ADAPTIVE_POOLING.launch_over("adaptive_avg_pool_backward", grad_y.dtype, grad_x.size,
                                 (grad_y, grad_x, *_sizes(x_shape, grad_y.shape[2:])))
    return grad_x


def adaptive_max_pool_forward(x, out_hw):
    """y (N, C, OH, OW) = the max of each bin, and pixel = the winner's index h*W + w in its plane."""
    x = contiguous(x)
    out_shape = x.shape[:2] + tuple(out_hw)
    y = empty(out_shape, x.dtype, x)
    pixel = empty(out_shape, numpy.int32, x)
    ADAPTIVE_POOLING.launch_over("adaptive_max_pool_forward", x.dtype, y.size,
                                 (x, y, pixel, *_sizes(x.shape, out_hw)))
    return y, pixel


def adaptive_max_pool_backward(grad_y, pixel, x_shape):
    """dL/dx: each input pixel gathers dL/dy from the bins it won."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    ADAPTIVE_POOLING.launch_over("adaptive_max_pool_backward", grad_y.dtype, grad_x.size,
                                 (grad_y, pixel, grad_x, *_sizes(x_shape, grad_y.shape[2:])))
    return grad_x
