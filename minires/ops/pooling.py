"""Pooling: max, average, and global average over each channel.

Like convolution, max and average pooling loop over the kh*kw offsets inside
the window (see ``minires.ops.im2col.kernel_offsets``); each step handles all
images, channels and output pixels at once.
"""
import numpy

from minires.backends.cuda import pooling as pooling_kernels
from minires.engine.function import Function
from minires.ops.im2col import conv_output_size, kernel_offsets
from minires.ops.layout import channel_major_zeros
from minires.ops.validate import pair, require_float, require_ndim


class PoolFunction(Function):
    """What the window poolings share: the window geometry and the input's shape."""

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def output_size(self, x_shape):
        return tuple(conv_output_size(n, k, s, p) for n, k, s, p in zip(x_shape[2:], self.kernel, self.stride, self.padding))

    def offsets(self, output_size):
        """(i, j, output slices, input slices) for every offset of the window (see im2col.kernel_offsets)."""
        return kernel_offsets(self.kernel, self.stride, self.padding, self.x_shape[2:], output_size)


class MaxPool2dFunction(PoolFunction):
    """Both paths save ``argmax``: for each output, the window offset k = i*kw + j of the input that won
    (int8 on the NumPy path while the window has at most 127 offsets, int32 on the kernel path)."""

    def forward_numpy(self, x):
        self.x_shape = x.shape
        N, C = x.shape[:2]
        output_size = self.output_size(x.shape)
        offsets = list(self.offsets(output_size))
        y = numpy.full((N, C) + output_size, -numpy.inf, dtype=x.dtype)  # padding counts as -inf
        for _, _, out_index, in_index in offsets:
            y_part = y[:, :, out_index[0], out_index[1]]  # a view into y, updated in place
            numpy.maximum(y_part, x[:, :, in_index[0], in_index[1]], out=y_part)
        # Record which offset k = i*kw + j won each window. Scanning the offsets from
        # last to first lets the first one keep the win when several tie.
        argmax = numpy.zeros((N, C) + output_size, dtype=numpy.int8 if self.kernel[0] * self.kernel[1] <= 127 else numpy.int32)
        for i, j, out_index, in_index in reversed(offsets):
            is_max = x[:, :, in_index[0], in_index[1]] == y[:, :, out_index[0], out_index[1]]
            numpy.copyto(argmax[:, :, out_index[0], out_index[1]], i * self.kernel[1] + j, where=is_max)
        self.save_for_backward(argmax)
        return y

    def backward_numpy(self, grad):
        # y = x[argmax]: the whole gradient goes to the input pixel that won, others get 0.
        # Windows overlap when stride < kernel, so one pixel can collect from several outputs.
        (argmax,) = self.saved_tensors
        grad_x = numpy.zeros(self.x_shape, dtype=grad.dtype)
        for i, j, out_index, in_index in self.offsets(grad.shape[2:]):
            won = argmax[:, :, out_index[0], out_index[1]] == i * self.kernel[1] + j
            grad_x[:, :, in_index[0], in_index[1]] += grad[:, :, out_index[0], out_index[1]] * won
        return grad_x

    def forward_kernels(self, x):  # kernels/pooling.cu, one thread per output
        self.x_shape = x.shape
        y, argmax = pooling_kernels.max_pool_forward(x, self.kernel, self.stride, self.padding,
                                                     self.output_size(x.shape))
        self.save_for_backward(argmax)
        return y

    def backward_kernels(self, grad):  # one thread per input pixel gathers from the windows it won
        (argmax,) = self.saved_tensors
        return pooling_kernels.max_pool_backward(grad, argmax, self.x_shape, self.kernel, self.stride, self.padding)


class AvgPool2dFunction(PoolFunction):
    """Average over each window; padded positions count as zeros (PyTorch's count_include_pad=True).
    Nothing is saved but the input's shape."""

    def forward_numpy(self, x):
        self.x_shape = x.shape
        output_size = self.output_size(x.shape)
        y = numpy.zeros(x.shape[:2] + output_size, dtype=x.dtype)
        for _, _, out_index, in_index in self.offsets(output_size):
            y[:, :, out_index[0], out_index[1]] += x[:, :, in_index[0], in_index[1]]
        y /= self.kernel[0] * self.kernel[1]
        return y

    def backward_numpy(self, grad):
        # y = (1/(kh*kw)) sum over the window: each pixel in it gets grad / (kh*kw).
        grad_x = numpy.zeros(self.x_shape, dtype=grad.dtype)
        share = grad / (self.kernel[0] * self.kernel[1])
        for _, _, out_index, in_index in self.offsets(grad.shape[2:]):
            grad_x[:, :, in_index[0], in_index[1]] += share[:, :, out_index[0], out_index[1]]
        return grad_x

    def forward_kernels(self, x):  # kernels/pooling.cu, one thread per output
        self.x_shape = x.shape
        return pooling_kernels.avg_pool_forward(x, self.kernel, self.stride, self.padding, self.output_size(x.shape))

    def backward_kernels(self, grad):  # one thread per input pixel gathers from the windows containing it
        return pooling_kernels.avg_pool_backward(grad, self.x_shape, self.kernel, self.stride, self.padding)


class GlobalAvgPool2dFunction(Function):
    """Nothing is saved but the input's shape."""

    def forward_numpy(self, x):
        self.x_shape = x.shape
        return x.mean(axis=(2, 3))

    def backward_numpy(self, grad):
        # y[n, c] = (1/(H*W)) sum_hw x[n, c, h, w]: every pixel gets grad[n, c] / (H*W).
        H, W = self.x_shape[2:]
        grad_x = channel_major_zeros(self.x_shape, grad.dtype)  # the layout of the conv path (ops/layout.py)
        grad_x += (grad / (H * W))[:, :, None, None]
        return grad_x

    def forward_kernels(self, x):  # one block of threads per (n, c) sums the channel in shared memory
        self.x_shape = x.shape
        return pooling_kernels.global_avg_pool_forward(x)

    def backward_kernels(self, grad):
        return pooling_kernels.global_avg_pool_backward(grad, self.x_shape)


def _pool_arguments(op, x, kernel_size, stride, padding):
    require_ndim(op, "input", x, 4)
    require_float(op, "input", x)
    kernel = pair(op, "kernel_size", kernel_size)
    stride = kernel if stride is None else pair(op, "stride", stride)
    padding = pair(op, "padding", padding)
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"{op}: kernel_size and stride must be >= 1, got {kernel} and {stride}")
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding must be between 0 and half the kernel size, got padding {padding} for kernel {kernel}")
    H, W = x.shape[2:]
    if kernel[0] > H + 2 * padding[0] or kernel[1] > W + 2 * padding[1]:
        raise ValueError(f"{op}: kernel {kernel} is larger than the padded input {H + 2 * padding[0]}x{W + 2 * padding[1]}")
    return kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """PyTorch's ``F.max_pool2d``: stride defaults to the kernel size; padding counts as -inf."""
    return MaxPool2dFunction(*_pool_arguments("max_pool2d", x, kernel_size, stride, padding))(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """PyTorch's ``F.avg_pool2d`` (count_include_pad=True)."""
    return AvgPool2dFunction(*_pool_arguments("avg_pool2d", x, kernel_size, stride, padding))(x)


def global_avg_pool2d(x):
    """Average each channel over all pixels: (N, C, H, W) -> (N, C)."""
    require_ndim("global_avg_pool2d", "input", x, 4)
    require_float("global_avg_pool2d", "input", x)
    return GlobalAvgPool2dFunction()(x)
