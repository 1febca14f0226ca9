"""Pooling: max, average, and global average over each channel.

Like convolution, max and average pooling loop over the kh*kw offsets inside
the window (see ``minires.ops.im2col.kernel_offsets``); each step handles all
images, channels and output pixels at once.
"""
from minires.backends.cuda import pooling as pooling_kernels
from minires.backends.cuda import uses_kernels
from minires.engine.function import Function
from minires.ops.im2col import conv_output_size, kernel_offsets
from minires.ops.validate import pair, require_float, require_ndim


class MaxPool2dFunction(Function):
    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        xp = self.xp(x)
        N, C, H, W = x.shape
        OH, OW = (conv_output_size(n, k, s, p) for n, k, s, p in zip((H, W), self.kernel, self.stride, self.padding))
        self.x_shape = x.shape
        if uses_kernels(x):  # GPU: kernels/pooling.cu, one thread per output (argmax kept as int32)
            y, argmax = pooling_kernels.max_pool_forward(x, self.kernel, self.stride, self.padding, (OH, OW))
            self.save_for_backward(argmax)
            return y
        offsets = list(kernel_offsets(self.kernel, self.stride, self.padding, (H, W), (OH, OW)))
        y = xp.full((N, C, OH, OW), -xp.inf, dtype=x.dtype)  # padding counts as -inf
        for _, _, out_index, in_index in offsets:
            y_part = y[:, :, out_index[0], out_index[1]]  # a view into y, updated in place
            xp.maximum(y_part, x[:, :, in_index[0], in_index[1]], out=y_part)
        # Record which offset k = i*kw + j won each window. Scanning the offsets from
        # last to first lets the first one keep the win when several tie.
        argmax = xp.zeros((N, C, OH, OW), dtype=xp.int8 if self.kernel[0] * self.kernel[1] <= 127 else xp.int32)
        for i, j, out_index, in_index in reversed(offsets):
            is_max = x[:, :, in_index[0], in_index[1]] == y[:, :, out_index[0], out_index[1]]
            xp.copyto(argmax[:, :, out_index[0], out_index[1]], i * self.kernel[1] + j, where=is_max)
        self.save_for_backward(argmax)
        return y

    def backward(self, grad):
        # y = x[argmax]: the whole gradient goes to the input pixel that won, others get 0.
        # Windows overlap when stride < kernel, so one pixel can collect from several outputs.
        (argmax,) = self.saved_tensors
        if uses_kernels(grad):  # GPU: one thread per input pixel gathers from the windows it won
            return pooling_kernels.max_pool_backward(grad, argmax, self.x_shape, self.kernel, self.stride, self.padding)
        xp = self.xp(grad)
        H, W = self.x_shape[2:]
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)
        for i, j, out_index, in_index in kernel_offsets(self.kernel, self.stride, self.padding, (H, W), grad.shape[2:]):
            won = argmax[:, :, out_index[0], out_index[1]] == i * self.kernel[1] + j
            grad_x[:, :, in_index[0], in_index[1]] += grad[:, :, out_index[0], out_index[1]] * won
        return grad_x


class AvgPool2dFunction(Function):
    """Average over each window; padded positions count as zeros (PyTorch's count_include_pad=True)."""

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x):
        xp = self.xp(x)
        N, C, H, W = x.shape
        OH, OW = (conv_output_size(n, k, s, p) for n, k, s, p in zip((H, W), self.kernel, self.stride, self.padding))
        self.x_shape = x.shape
        if uses_kernels(x):  # GPU: kernels/pooling.cu, one thread per output
            return pooling_kernels.avg_pool_forward(x, self.kernel, self.stride, self.padding, (OH, OW))
        y = xp.zeros((N, C, OH, OW), dtype=x.dtype)
        for _, _, out_index, in_index in kernel_offsets(self.kernel, self.stride, self.padding, (H, W), (OH, OW)):
            y[:, :, out_index[0], out_index[1]] += x[:, :, in_index[0], in_index[1]]
        y /= self.kernel[0] * self.kernel[1]
        return y

    def backward(self, grad):
        # y = (1/(kh*kw)) sum over the window: each pixel in it gets grad / (kh*kw).
        if uses_kernels(grad):  # GPU: one thread per input pixel gathers from the windows containing it
            return pooling_kernels.avg_pool_backward(grad, self.x_shape, self.kernel, self.stride, self.padding)
        xp = self.xp(grad)
        H, W = self.x_shape[2:]
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)
        share = grad / (self.kernel[0] * self.kernel[1])
        for _, _, out_index, in_index in kernel_offsets(self.kernel, self.stride, self.padding, (H, W), grad.shape[2:]):
            grad_x[:, :, in_index[0], in_index[1]] += share[:, :, out_index[0], out_index[1]]
        return grad_x


class GlobalAvgPool2dFunction(Function):
    def forward(self, x):
        self.x_shape = x.shape
        if uses_kernels(x):  # GPU: one block of threads per (n, c) sums the channel in shared memory
            return pooling_kernels.global_avg_pool_forward(x)
        return x.mean(axis=(2, 3))

    def backward(self, grad):
        # y[n, c] = (1/(H*W)) sum_hw x[n, c, h, w]: every pixel gets grad[n, c] / (H*W).
        if uses_kernels(grad):
            return pooling_kernels.global_avg_pool_backward(grad, self.x_shape)
        xp = self.xp(grad)
        H, W = self.x_shape[2:]
        return xp.broadcast_to((grad / (H * W))[:, :, None, None], self.x_shape).copy()


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
