"""Adaptive pooling: name the output size, and the windows ("bins") follow from it.

For an input of length H pooled to length OH, bin i covers the rows

    start_i = floor(i * H / OH)    up to (not including)    end_i = ceil((i + 1) * H / OH)

(PyTorch's rule). When OH divides H the bins are ordinary windows, kernel = stride = H / OH;
otherwise neighbouring bins may differ in size by one and may overlap. The 2-D bins are
products of a row bin and a column bin.

* **Average** pooling is linear and separable: with the (OH, H) matrix A_h, whose row i holds
  1 / (end_i - start_i) over bin i's rows (and A_w likewise for the columns),

      y = A_h  x  A_w^T        for every image and channel.

* **Max** pooling gathers each bin's values into a window of the largest bin size (a smaller
  bin repeats its last row or column, which cannot change a maximum) and takes the max.

Both also have CUDA kernels (``kernels/adaptive_pooling.cu``), now that spatial pyramid
pooling and Squeeze-and-Excitation put them inside the network: one thread per output for
forward, and for backward one thread per input pixel that gathers from the bins covering it
(no atomics even where bins overlap). For a pixel at row h the covering bins are
i = floor(h * OH / H) ... floor(((h + 1) * OH - 1) / H), derived in the .cu file.
"""
import math

import numpy

from minires.backends.cuda import adaptive_pooling as adaptive_pooling_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float, require_ndim


def bin_edges(length, out_length):
    """(start, end) of each of the ``out_length`` bins over ``length`` positions."""
    return [(i * length // out_length, math.ceil((i + 1) * length / out_length)) for i in range(out_length)]


def averaging_matrix(xp, length, out_length, dtype):
    """The (out_length, length) matrix whose row i averages bin i."""
    matrix = xp.zeros((out_length, length), dtype=dtype)
    for i, (start, end) in enumerate(bin_edges(length, out_length)):
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def window_indices(xp, length, out_length):
    """(out_length, k) positions: row i lists bin i's positions, its last one repeated up to
    k, the size of the largest bin."""
    edges = bin_edges(length, out_length)
    k = max(end - start for start, end in edges)
    rows = [[min(start + a, end - 1) for a in range(k)] for start, end in edges]
    return xp.asarray(rows, dtype="int64")


class AdaptiveAvgPool2dFunction(Function):
    """The NumPy path saves the averaging matrices A_h and A_w; the kernel path computes each
    bin's edges itself and saves nothing. Both keep the input's shape."""

    def __init__(self, output_size):
        self.output_size = output_size

    def forward_numpy(self, x):
        H, W = x.shape[2:]
        self.x_shape = x.shape
        A_h = averaging_matrix(numpy, H, self.output_size[0], x.dtype)
        A_w = averaging_matrix(numpy, W, self.output_size[1], x.dtype)
        self.save_for_backward(A_h, A_w)
        return A_h @ x @ A_w.T  # (OH, H) @ (N, C, H, W) @ (W, OW) -> (N, C, OH, OW)

    def backward_numpy(self, grad):
        # y = A_h x A_w^T is linear in x, so dL/dx = A_h^T (dL/dy) A_w: each output's gradient is
        # shared equally by the pixels of its bin, and a pixel in two bins gets both shares.
        A_h, A_w = self.saved_tensors
        return A_h.T @ grad @ A_w

    def forward_kernels(self, x):  # one thread per output averages its bin
        self.x_shape = x.shape
        return adaptive_pooling_kernels.adaptive_avg_pool_forward(x, self.output_size)

    def backward_kernels(self, grad):  # the same gradient: one thread per input pixel gathers its shares
        return adaptive_pooling_kernels.adaptive_avg_pool_backward(grad, self.x_shape)


class AdaptiveMaxPool2dFunction(Function):
    """Both paths save ``pixel``: for each output, where its winner sits in its image, as the
    index h * W + w (int64 on the NumPy path, int32 on the kernel path; the same values).
    The first of equal maxima wins."""

    def __init__(self, output_size):
        self.output_size = output_size

    def forward_numpy(self, x):
        N, C, H, W = x.shape
        OH, OW = self.output_size
        rows, cols = window_indices(numpy, H, OH), window_indices(numpy, W, OW)  # (OH, kh), (OW, kw)
        kh, kw = rows.shape[1], cols.shape[1]
        # windows[n, c, i, a, j, b] = x[n, c, rows[i, a], cols[j, b]]
        windows = x[:, :, rows[:, :, None, None], cols[None, None, :, :]]
        windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape(N, C, OH, OW, kh * kw)
        y = windows.max(axis=-1)
        winner = windows.argmax(axis=-1)  # a = winner // kw, b = winner % kw; the first of equal maxima wins
        # Where each winner sits in its image, as the pixel index h * W + w (broadcast to (N, C, OH, OW)).
        h = rows[numpy.arange(OH)[:, None], winner // kw]
        w = cols[numpy.arange(OW), winner % kw]
        self.save_for_backward(h * W + w)
        self.x_shape = x.shape
        return y

    def backward_numpy(self, grad):
        # y = x[winner]: each output's gradient goes to its winning pixel; a pixel that wins
        # several (overlapping) bins collects all their gradients, summed by bincount.
        (pixel,) = self.saved_tensors
        N, C, H, W = self.x_shape
        image = numpy.arange(N * C).reshape(N, C, 1, 1)  # which (n, c) image each output belongs to
        flat = (image * (H * W) + pixel).ravel()
        grad_x = numpy.bincount(flat, weights=grad.ravel(), minlength=N * C * H * W)
        return grad_x.astype(grad.dtype).reshape(self.x_shape)

    def forward_kernels(self, x):  # one thread per output scans its bin
        self.x_shape = x.shape
        y, pixel = adaptive_pooling_kernels.adaptive_max_pool_forward(x, self.output_size)
        self.save_for_backward(pixel)
        return y

    def backward_kernels(self, grad):  # the same gradient: one thread per input pixel gathers from the bins it won
        (pixel,) = self.saved_tensors
        return adaptive_pooling_kernels.adaptive_max_pool_backward(grad, pixel, self.x_shape)


def _output_size(op, x, output_size):
    """(OH, OW) from an int, a pair, or a pair with None (keep that dimension's size)."""
    require_ndim(op, "input", x, 4)
    require_float(op, "input", x)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{op}: the input's height and width must be at least 1 (every bin needs a pixel), "
                         f"got shape {tuple(x.shape)}")
    sizes = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair (OH, OW), got {output_size!r}")
    sizes = tuple(x.shape[2 + k] if size is None else size for k, size in enumerate(sizes))
    if not all(isinstance(size, int) and size >= 1 for size in sizes):
        raise ValueError(f"{op}: output sizes must be positive integers (or None), got {output_size!r}")
    return sizes


def adaptive_avg_pool2d(x, output_size):
    """PyTorch's ``F.adaptive_avg_pool2d``: (N, C, H, W) -> (N, C, OH, OW). ``output_size=1`` gives
    (N, C, 1, 1), the global average with the two unit dimensions kept."""
    return AdaptiveAvgPool2dFunction(_output_size("adaptive_avg_pool2d", x, output_size))(x)


def adaptive_max_pool2d(x, output_size):
    """PyTorch's ``F.adaptive_max_pool2d`` (without ``return_indices``): (N, C, H, W) -> (N, C, OH, OW)."""
    return AdaptiveMaxPool2dFunction(_output_size("adaptive_max_pool2d", x, output_size))(x)
