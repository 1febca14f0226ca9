"""Convolution on the kernel path: ``kernels/im2col.cu`` moves the data, cuBLAS multiplies.

Per image n, im2col builds a matrix col_n of C*kh*kw rows and OH*OW columns, so the
convolution is one matrix product per image, Y_n = W_mat @ col_n, with W_mat the
weight seen as (OC, C*kh*kw). Keeping the images apart (col is (N, C*kh*kw, OH*OW))
is what makes the product come out as (N, OC, OH*OW): NCHW, the kernel path's layout,
with no transpose. ``xp.matmul`` broadcasts W_mat over the batch, which CuPy runs as
one batched cuBLAS GEMM.

Unlike the CPU path (see minires/ops/conv.py and minires/ops/im2col.py, whose col is
(C*kh*kw, N*OH*OW)) there are no slabs: the whole batch is one im2col and one GEMM.
Backward rebuilds col from the saved input rather than keeping it from the forward:
one cheap kernel launch instead of holding a kh*kw times larger copy of every
convolution's input in memory until backward.
"""
from minires.backends.cuda.loader import KernelFile, contiguous, empty, int32
from minires.backends.dispatch import get_array_module

IM2COL = KernelFile("im2col.cu", ["im2col", "col2im"])


def output_hw(x_shape, kernel, stride, padding):
    """(OH, OW): the convolution's output height and width."""
    H, W = x_shape[2:]
    return tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip((H, W), kernel, stride, padding))


def geometry_args(x_shape, kernel, stride, padding):
    """The int arguments both kernels take after their two arrays: N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW."""
    (N, C, H, W), (kh, kw), (OH, OW) = x_shape, kernel, output_hw(x_shape, kernel, stride, padding)
    int32(N * C * H * W)  # raises if a flat index into x or col would not fit the kernels' int
    int32(N * C * kh * kw * OH * OW)
    return tuple(int32(v) for v in (N, C, H, W, kh, kw, *stride, *padding, OH, OW))


def batched_im2col(x, kernel, stride, padding):
    """x (N, C, H, W) -> col (N, C*kh*kw, OH*OW), one column per output pixel of each image."""
    x = contiguous(x)
    N, C = x.shape[:2]
    OH, OW = output_hw(x.shape, kernel, stride, padding)
    col = empty((N, C * kernel[0] * kernel[1], OH * OW), x.dtype, like=x)
    IM2COL.launch_over("im2col", x.dtype, col.size, (x, col) + geometry_args(x.shape, kernel, stride, padding))
    return col


def batched_col2im(col, x_shape, kernel, stride, padding):
    """The adjoint of im2col: col (N, C*kh*kw, OH*OW) -> (N, C, H, W), overlapping windows summed."""
    col = contiguous(col)
    x = empty(tuple(x_shape), col.dtype, like=col)
    IM2COL.launch_over("col2im", col.dtype, x.size, (col, x) + geometry_args(x_shape, kernel, stride, padding))
    return x


def conv2d_forward(x, weight, bias, stride, padding):
    """y = conv2d(x, weight) + bias as (N, OC, OH, OW), C-contiguous."""
    xp = get_array_module(x)
    OC, C, kh, kw = weight.shape
    col = batched_im2col(x, (kh, kw), stride, padding)  # (N, C*kh*kw, OH*OW)
    y = xp.matmul(weight.reshape(OC, C * kh * kw), col)  # (N, OC, OH*OW): W_mat broadcast over the batch
    if bias is not None:
        y += bias[:, None]
    return y.reshape((x.shape[0], OC) + output_hw(x.shape, (kh, kw), stride, padding))


def conv2d_backward(grad, x, weight, stride, padding, need_x, need_w, need_b):
    """(dL/dx, dL/dweight, dL/dbias) from grad = dL/dy, each None where not needed.

    With G_n = dL/dY_n as an (OC, OH*OW) matrix per image:
    dW_mat = sum_n G_n @ col_n^T,  db = G summed over images and pixels,
    dcol_n = W_mat^T @ G_n,  dx = col2im(dcol).
    """
    xp = get_array_module(x)
    OC, C, kh, kw = weight.shape
    N = x.shape[0]
    g = contiguous(grad).reshape(N, OC, -1)  # (N, OC, OH*OW)
    w_mat = weight.reshape(OC, C * kh * kw)
    grad_x = grad_w = grad_b = None
    if need_w:
        col = batched_im2col(x, (kh, kw), stride, padding)  # rebuilt, not saved (see the module docstring)
        grad_w = xp.tensordot(g, col, axes=([0, 2], [0, 2])).reshape(weight.shape)  # sum over n and pixels
        del col  # free it before grad_col, which is as large, is allocated
    if need_b:
        grad_b = g.sum(axis=(0, 2))
    if need_x:
        grad_col = xp.matmul(w_mat.T, g)  # (N, C*kh*kw, OH*OW)
        grad_x = batched_col2im(grad_col, x.shape, (kh, kw), stride, padding)
    return grad_x, grad_w, grad_b
