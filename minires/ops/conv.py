"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col + GEMM.

Forward:  col = im2col(x)  (C*kh*kw rows, one column per output pixel),  Y = W_mat @ col.

Two ways to build col on the CPU:
* stride 1 (most convolutions of a ResNet): the long-row layout of minires/ops/long_rows.py,
  where every row of col is one contiguous slice of a zero-bordered copy of the images. Its
  backward needs no col2im: the input gradient is again a stride-1 convolution, of the
  zero-bordered output gradient (see backward_long_rows).
* any other stride: ordinary im2col, window row by window row (minires/ops/im2col.py), and
  col2im in backward.

Cache blocking. For a batch of 128 CIFAR images ``col`` is 9 times the input
(75 MB for a 16-channel 32x32 layer): building it in memory and reading it back
is slower than the arithmetic. So the batch is processed in *slabs* of images
whose ``col`` fits in a few MB of cache: each slab is one col + one GEMM,
and ``col`` never travels to main memory. Backward rebuilds each slab's ``col``
instead of keeping them all: the same cache-sized work again, and no 9x copy of
every activation held between forward and backward. The cores share the slabs, each
thread building and multiplying its own (minires/backends/cpu_threads.py). The output is
channel-major memory (minires/ops/layout.py). The kernel path uses the window col layout for the
whole batch at once, with no slabs (a GPU's memory is its cache): one im2col kernel,
one GEMM per product, and a copy of the output into NCHW (see
minires/backends/cuda/conv.py).

Both paths save (x, weight): backward rebuilds col from x.
"""
import numpy

from minires.backends.cpu_threads import run_on_every_core, scratch
from minires.backends.cuda import conv as conv_kernels
from minires.engine.function import Function
from minires.ops.im2col import col2im, conv_output_size, im2col
from minires.ops.long_rows import (
    LongRowGrid, fits_long_rows, kernel_offsets, kernel_rows, matrix, multiply_in_blocks,
)
from minires.ops.validate import pair, require_float, require_ndim, require_same_dtype

SLAB_BYTES = 4 * 2**20  # one slab's col on the CPU: about two cores' L2 (a ResNet-20 step is ~10% faster than with 2 MB)


def slab_ranges(N, col_bytes_per_image):
    """Split a batch of N images into (start, stop) ranges whose col fits in SLAB_BYTES."""
    per_slab = max(1, SLAB_BYTES // col_bytes_per_image)
    return [(start, min(start + per_slab, N)) for start in range(0, N, per_slab)]


class Conv2dFunction(Function):
    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def output_size(self, x, weight):
        (H, W), (kh, kw) = x.shape[2:], weight.shape[2:]
        return (conv_output_size(H, kh, self.stride[0], self.padding[0]),
                conv_output_size(W, kw, self.stride[1], self.padding[1]))

    # ---- NumPy path: long rows for stride 1, windows otherwise, slab by slab -----------------
    def forward_numpy(self, x, weight, bias=None):
        OC = weight.shape[0]
        y = numpy.empty((OC, x.shape[0]) + self.output_size(x, weight), dtype=x.dtype)  # channel-major
        if fits_long_rows(weight.shape[2:], self.stride, self.padding):
            correlate_long_rows(x.transpose(1, 0, 2, 3), kernel_rows(weight), self.padding, y)
        else:
            self.forward_windows(x, weight, y)
        if bias is not None:
            y += bias[:, None, None, None]
        self.save_for_backward(x, weight)
        return y.transpose(1, 0, 2, 3)  # an (N, OC, OH, OW) view of channel-major memory

    def backward_numpy(self, grad):
        # Forward is Y = W_mat @ col (+ b), so with G = dL/dY as an (OC, N*OH*OW) matrix:
        #   dL/dW_mat = G @ col^T,   dL/db = G summed over columns,
        #   dL/dcol = W_mat^T @ G,   and dL/dx adds each entry of dL/dcol back onto the input
        #   pixel col copied it from. Every term is a sum over columns: slab by slab.
        need_x, need_w, need_b = self.needs_gradients()
        weight = self.saved_tensors[1]
        if fits_long_rows(weight.shape[2:], self.stride, self.padding):
            grad_x, grad_w = self.backward_long_rows(grad, need_x, need_w)
        else:
            grad_x, grad_w = self.backward_windows(grad, need_x, need_w)
        grad_b = grad.sum(axis=(0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b

    def backward_long_rows(self, grad, need_x, need_w):
        # Stride 1, so dL/dx[c, h, w] = sum over (o, i, j) of G[o, h + ph - i, w + pw - j] W[o, c, i, j]:
        # itself a stride-1 convolution, of G zero-padded by (kernel - 1 - padding), with the kernel
        # flipped in i and j and its channel axes swapped:  dX = W_flipped @ col_G,  on forward's grid
        # (one GEMM per kernel offset, summed: long_rows.py says why). No col2im at all. The same col_G
        # gives the weight gradient: with i' = kh-1-i, j' = kw-1-j,
        #   dL/dW[o, c, i, j] = sum over (h, w) of x[c, h, w] G[o, h + ph - i, w + pw - j]
        #                     = sum over grid positions q of col_G[(i', j', o), q] X[c, q],
        # X being x on the grid, zero where the grid has no pixel: a slice of x's long-row buffer.
        # Without dX (a first layer), col_x has fewer rows: dL/dW_mat = G @ col_x^T, with G on the
        # grid, a slice of G's long-row buffer.
        x, weight = self.saved_tensors
        OC, C, kh, kw = weight.shape
        padding_of_grad = (kh - 1 - self.padding[0], kw - 1 - self.padding[1])
        x_grid = LongRowGrid(x.shape[2:], (kh, kw), self.padding)
        g_grid = LongRowGrid(grad.shape[2:], (kh, kw), padding_of_grad)  # the same Hr, Wr as x_grid
        x_on_grid = self.padding[0] * x_grid.Wr + self.padding[1]  # where each grid starts in its buffer
        g_on_grid = padding_of_grad[0] * g_grid.Wr + padding_of_grad[1]
        x_cn, grad_cn = x.transpose(1, 0, 2, 3), grad.transpose(1, 0, 2, 3)  # free for channel-major memory
        col_rows = (OC if need_x else C) * kh * kw
        slabs = slab_ranges(x.shape[0], col_rows * x_grid.positions(1) * x.itemsize)
        n_max = slabs[0][1]
        if need_x:
            w_flipped = kernel_offsets(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (kh*kw, C, OC)
            grad_x_cn = numpy.empty((C,) + x.shape[:1] + x.shape[2:], dtype=grad.dtype)

        def gradients(share):  # one core's share of the slabs (backends/cpu_threads.py): its part of grad_w
            x_buffer = scratch("x buffer", (C, x_grid.buffer_length(n_max)), x.dtype, zero=True) if need_w else None
            g_buffer = scratch("grad buffer", (OC, g_grid.buffer_length(n_max)), grad.dtype, zero=True)
            col_storage = scratch("col", (col_rows * x_grid.positions(n_max),), x.dtype)
            grad_x_grid_storage = scratch("output grid", (C * x_grid.positions(n_max),), grad.dtype) if need_x else None
            partial_storage = scratch("partial product", (C * x_grid.positions(n_max),), grad.dtype) if need_x else None
            # rows (i', j', o) from col_G, or (i, j, c) from col_x
            grad_w_mat = numpy.zeros((col_rows, C if need_x else OC), dtype=grad.dtype) if need_w else None
            for start, stop in share:
                n = stop - start
                Q = x_grid.positions(n)
                g_grid.fill(g_buffer, grad_cn[:, start:stop], n)
                if need_w:
                    x_grid.fill(x_buffer, x_cn[:, start:stop], n)
                # Weight products as col @ (grid matrix)^T: OpenBLAS is many times slower on the
                # transposed product, whose inner dimension is huge and outer ones tiny.
                if need_x:
                    col_g = g_grid.gather(g_buffer, n, col_storage)
                    grad_x_grid = matrix(grad_x_grid_storage, C, Q)
                    multiply_in_blocks(w_flipped, col_g.reshape(kh * kw, OC, Q), grad_x_grid,
                                       matrix(partial_storage, C, Q))
                    grad_x_cn[:, start:stop] = g_grid.valid(grad_x_grid, n)
                    if need_w:
                        grad_w_mat += col_g.reshape(-1, Q) @ x_buffer[:, x_on_grid:x_on_grid + Q].T
                elif need_w:
                    col_x = x_grid.gather(x_buffer, n, col_storage)
                    grad_w_mat += col_x.reshape(-1, Q) @ g_buffer[:, g_on_grid:g_on_grid + Q].T
            return grad_w_mat

        grad_w_parts = run_on_every_core(gradients, slabs)
        grad_w_mat = sum(grad_w_parts[1:], grad_w_parts[0]) if need_w else None
        grad_x = grad_x_cn.transpose(1, 0, 2, 3) if need_x else None
        grad_w = None
        if need_w and need_x:  # (i', j', o) x c  ->  (o, c, i, j), flipping i' and j' back
            grad_w = grad_w_mat.reshape(kh, kw, OC, C)[::-1, ::-1].transpose(2, 3, 0, 1)
        elif need_w:  # (i, j, c) x o  ->  (o, c, i, j)
            grad_w = grad_w_mat.reshape(kh, kw, C, OC).transpose(3, 2, 0, 1)
        if grad_w is not None:
            grad_w = numpy.ascontiguousarray(grad_w)
        return grad_x, grad_w

    # Any stride or padding: ordinary im2col, one window row at a time (minires/ops/im2col.py),
    # each core taking a share of the slabs as in the long-row path.
    def forward_windows(self, x, weight, y):
        OC, C, kh, kw = weight.shape
        OH, OW = y.shape[2:]
        w_mat = weight.reshape(OC, C * kh * kw)

        def convolve(share):
            for start, stop in share:
                col = im2col(x[start:stop], (kh, kw), self.stride, self.padding)  # (C*kh*kw, n*OH*OW)
                numpy.matmul(w_mat, col, out=y[:, start:stop].reshape(OC, -1))  # one GEMM per slab

        run_on_every_core(convolve, slab_ranges(x.shape[0], C * kh * kw * OH * OW * x.itemsize))

    def backward_windows(self, grad, need_x, need_w):
        # dL/dx = col2im(W_mat^T @ G): col2im adds each column entry back where im2col took it.
        x, weight = self.saved_tensors
        OC, C, kh, kw = weight.shape
        OH, OW = grad.shape[2:]
        w_mat = weight.reshape(OC, -1)
        grad_x_cnhw = numpy.zeros((C,) + x.shape[:1] + x.shape[2:], dtype=grad.dtype) if need_x else None

        def gradients(share):  # writes its slabs of grad_x, returns its part of grad_w
            grad_w_t = numpy.zeros((C * kh * kw, OC), dtype=grad.dtype) if need_w else None
            for start, stop in share:
                g = grad[start:stop].transpose(1, 0, 2, 3).reshape(OC, -1)  # free when grad is channel-major
                col = im2col(x[start:stop], (kh, kw), self.stride, self.padding)
                if need_w:
                    grad_w_t += col @ g.T  # see backward_long_rows for why not g @ col.T
                if need_x:
                    col2im(w_mat.T @ g, (stop - start,) + x.shape[1:], (kh, kw), self.stride, self.padding,
                           out=grad_x_cnhw[:, start:stop])
            return grad_w_t

        parts = run_on_every_core(gradients, slab_ranges(x.shape[0], C * kh * kw * OH * OW * x.itemsize))
        grad_x = grad_x_cnhw.transpose(1, 0, 2, 3) if need_x else None
        grad_w = sum(parts[1:], parts[0]).T.reshape(weight.shape) if need_w else None
        return grad_x, grad_w

    # ---- kernel path: kernels/im2col.cu + one GEMM per product -------------------------------
    def forward_kernels(self, x, weight, bias=None):
        self.save_for_backward(x, weight)
        return conv_kernels.conv2d_forward(x, weight, bias, self.stride, self.padding)

    def backward_kernels(self, grad):
        # The same formulas as backward_numpy, on the whole batch at once.
        x, weight = self.saved_tensors
        return conv_kernels.conv2d_backward(grad, x, weight, self.stride, self.padding, *self.needs_gradients())

    def needs_gradients(self):
        """(x, weight, bias): which gradients backward must compute."""
        need_bias = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        return self.needs_input_grad[0], self.needs_input_grad[1], need_bias


def correlate_long_rows(x_cn, w_rows, padding, y_cn):
    """y_cn (OC, N, OH, OW) = the stride-1 convolution of x_cn (C, N, H, W) with the kernel rows
    w_rows (kh, OC, kw*C) (long_rows.kernel_rows), slab by slab: fill the slab's long-row buffer,
    gather col, one GEMM per kernel row, keep the valid outputs.
    Each core takes a share of the slabs, with scratch arrays of its own (backends/cpu_threads.py)."""
    (C, N), (kh, OC, row_length) = x_cn.shape[:2], w_rows.shape
    grid = LongRowGrid(x_cn.shape[2:], (kh, row_length // C), padding)
    slabs = slab_ranges(N, kh * row_length * grid.positions(1) * x_cn.itemsize)
    n_max = slabs[0][1]

    def convolve(share):
        buffer = scratch("x buffer", (C, grid.buffer_length(n_max)), x_cn.dtype, zero=True)
        col_storage = scratch("col", (kh * row_length * grid.positions(n_max),), x_cn.dtype)
        y_grid_storage = scratch("output grid", (OC * grid.positions(n_max),), x_cn.dtype)
        partial_storage = scratch("partial product", (OC * grid.positions(n_max),), x_cn.dtype)
        for start, stop in share:
            n = stop - start
            Q = grid.positions(n)
            grid.fill(buffer, x_cn[:, start:stop], n)
            y_grid = matrix(y_grid_storage, OC, Q)
            col = grid.gather(buffer, n, col_storage).reshape(kh, row_length, Q)
            multiply_in_blocks(w_rows, col, y_grid, matrix(partial_storage, OC, Q))
            y_cn[:, start:stop] = grid.valid(y_grid, n)

    run_on_every_core(convolve, slabs)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Convolve x (N, C, H, W) with weight (OC, C, kh, kw); PyTorch's ``F.conv2d``."""
    op = "conv2d"
    require_ndim(op, "input", x, 4)
    require_ndim(op, "weight", weight, 4)
    require_float(op, "input", x)
    require_same_dtype(op, input=x, weight=weight, bias=bias)
    stride, padding = pair(op, "stride", stride), pair(op, "padding", padding)
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}")
    N, C, H, W = x.shape
    OC, wC, kh, kw = weight.shape
    if C != wC:
        raise ValueError(
            f"{op}: input has {C} channels (shape {tuple(x.shape)}) but weight expects {wC} "
            f"(weight shape {tuple(weight.shape)})"
        )
    if kh > H + 2 * padding[0] or kw > W + 2 * padding[1]:
        raise ValueError(
            f"{op}: kernel {kh}x{kw} is larger than the padded input "
            f"{H + 2 * padding[0]}x{W + 2 * padding[1]} (input {H}x{W}, padding {padding})"
        )
    inputs = (x, weight)
    if bias is not None:
        if tuple(bias.shape) != (OC,):
            raise ValueError(f"{op}: bias must have shape ({OC},) to match weight {tuple(weight.shape)}, got {tuple(bias.shape)}")
        inputs += (bias,)
    return Conv2dFunction(stride, padding)(*inputs)



