"""2-D convolution (cross-correlation, as in every deep-learning framework) by im2col + GEMM.

Forward:  col = im2col(x)  (C*kh*kw rows, one column per output pixel),  Y = W_mat @ col.

Cache blocking. For a batch of 128 CIFAR images ``col`` is 9 times the input
(75 MB for a 16-channel 32x32 layer): building it in memory and reading it back
is slower than the arithmetic. So the batch is processed in *slabs* of images
whose ``col`` fits in about 2 MB of cache: each slab is one im2col + one GEMM,
and ``col`` never travels to main memory. Backward rebuilds each slab's ``col``
instead of keeping them all: the same cache-sized work again, and no 9x copy of
every activation held between forward and backward. The kernel path uses the
same col layout for the whole batch at once, with no slabs (a GPU's memory is
its cache): one im2col kernel, one GEMM per product, and a copy of the output
into NCHW (see minires/backends/cuda/conv.py).

Both paths save (x, weight): backward rebuilds col from x.
"""
import numpy

from minires.backends.cuda import conv as conv_kernels
from minires.engine.function import Function
from minires.ops.im2col import col2im, conv_output_size, im2col
from minires.ops.validate import pair, require_float, require_ndim, require_same_dtype

SLAB_BYTES = 2 * 2**20  # target size of one slab's col matrix on the CPU


def image_slabs(x, weight, output_size):
    """Split the batch into (start, stop) ranges of images whose col fits in SLAB_BYTES."""
    N = x.shape[0]
    OC, C, kh, kw = weight.shape
    col_bytes_per_image = C * kh * kw * output_size[0] * output_size[1] * x.itemsize
    per_slab = max(1, SLAB_BYTES // col_bytes_per_image)
    return [(start, min(start + per_slab, N)) for start in range(0, N, per_slab)]


class Conv2dFunction(Function):
    def __init__(self, stride, padding):
        self.stride, self.padding = stride, padding

    def output_size(self, x, weight):
        (H, W), (kh, kw) = x.shape[2:], weight.shape[2:]
        return (conv_output_size(H, kh, self.stride[0], self.padding[0]),
                conv_output_size(W, kw, self.stride[1], self.padding[1]))

    # ---- NumPy path: im2col + GEMM, slab by slab --------------------------------------------
    def forward_numpy(self, x, weight, bias=None):
        OC, C, kh, kw = weight.shape
        N = x.shape[0]
        OH, OW = self.output_size(x, weight)
        w_mat = weight.reshape(OC, C * kh * kw)
        y = numpy.empty((OC, N, OH, OW), dtype=x.dtype)  # channel-major, like W_mat @ col
        for start, stop in image_slabs(x, weight, (OH, OW)):
            col = im2col(x[start:stop], (kh, kw), self.stride, self.padding)  # (C*kh*kw, n*OH*OW)
            numpy.matmul(w_mat, col, out=y[:, start:stop].reshape(OC, -1))  # one GEMM per slab
        if bias is not None:
            y += bias[:, None, None, None]
        self.save_for_backward(x, weight)
        return y.transpose(1, 0, 2, 3)  # an (N, OC, OH, OW) view of channel-major memory

    def backward_numpy(self, grad):
        # Forward is Y = W_mat @ col (+ b), so with G = dL/dY as an (OC, N*OH*OW) matrix:
        #   dL/dW_mat = G @ col^T,   dL/db = G summed over columns,
        #   dL/dcol = W_mat^T @ G,   and dL/dx = col2im(dL/dcol), which adds each
        #   column entry back onto the input pixel im2col copied it from.
        # Every term is a sum over columns, so it can be done slab by slab.
        x, weight = self.saved_tensors
        need_x, need_w, need_b = self.needs_gradients()
        OC, C, kh, kw = weight.shape
        w_mat = weight.reshape(OC, -1)
        grad_w_t = numpy.zeros((C * kh * kw, OC), dtype=grad.dtype) if need_w else None
        grad_x_cnhw = numpy.zeros((C,) + x.shape[:1] + x.shape[2:], dtype=grad.dtype) if need_x else None
        for start, stop in image_slabs(x, weight, grad.shape[2:]):
            g = grad[start:stop].transpose(1, 0, 2, 3).reshape(OC, -1)  # free when grad is channel-major
            col = im2col(x[start:stop], (kh, kw), self.stride, self.padding)
            if need_w:
                # col @ g^T, transposed at the end: the same product as g @ col^T, but OpenBLAS
                # is many times slower when the inner dimension is huge and the outer ones tiny.
                grad_w_t += col @ g.T
            if need_x:
                col2im(w_mat.T @ g, (stop - start,) + x.shape[1:], (kh, kw), self.stride, self.padding,
                       out=grad_x_cnhw[:, start:stop])
        grad_x = grad_x_cnhw.transpose(1, 0, 2, 3) if need_x else None
        grad_w = grad_w_t.T.reshape(weight.shape) if need_w else None
        grad_b = grad.sum(axis=(0, 2, 3)) if need_b else None
        return grad_x, grad_w, grad_b

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



