"""Convolution on the kernel path: ``kernels/im2col.cu`` moves the data, cuBLAS multiplies.

im2col builds ONE matrix for the whole batch, the same layout as the CPU path's
(minires/ops/im2col.py): col has K = C*kh*kw rows (c, i, j) and N*OH*OW columns
(n, oh, ow). With W_mat the weight seen as (OC, K), every product of the convolution
is then one plain 2-D GEMM on whole matrices:

    forward    Y2 = W_mat @ col                 (OC, K) @ (K, N*OH*OW)
    backward   dW_mat = G2 @ col.T              (OC, N*OH*OW) @ (N*OH*OW, K)
               db = G2 summed over its columns
               dcol = W_mat.T @ G2              (K, OC) @ (OC, N*OH*OW),   dx = col2im(dcol)

where Y2 and G2 = dL/dY2 are channel-major, (OC, N*OH*OW). ``col.T`` and ``W_mat.T``
are transposed *views*: cuBLAS reads a transposed matrix through a flag, so no
product copies its operands, and col (the largest array of a convolution, about
kh*kw times its input) is never copied at all. What is copied is the small side: Y2 once
into the NCHW layout the rest of the kernel path uses (adding the bias on the way),
and the upstream gradient once into G2's channel-major layout (K/OC times smaller
than col; 9 times for a 3x3 convolution that keeps its channel count).

Why not one matrix per image (col as (N, K, OH*OW), the product then coming out as
NCHW)? Because the weight gradient sums over images *and* pixels, axes 0 and 2, which
are not next to each other in that layout: the array library has to copy all of col
(and the gradient) to line them up, 75 MB for a 16-channel 32x32 layer at batch 128
in float32. And the other two products become batched GEMMs of a broadcast W_mat.

There are no slabs as on the CPU: the whole batch is one im2col and one GEMM.
Backward rebuilds col from the saved input rather than keeping it from the forward:
one cheap kernel launch instead of holding a kh*kw times larger copy of every
convolution's input in memory until backward; and it frees col before dcol, which is
as large, is allocated.

Launch geometry: im2col runs on a grid (X, K), one grid row per row of col; col2im
on (X, C), one grid row per channel (see the comment at the top of im2col.cu). X is
chosen so that each thread handles about COLUMNS_PER_THREAD columns (pixels): the
per-thread set-up (splitting indices into digits) is paid once for several elements,
and there are still plenty of blocks, from 512 (col2im of a 64-channel 8x8 layer) to
18432 (im2col of a 16-channel 32x32 one) in a CIFAR ResNet at batch 128.
:func:`launch_geometry` works it all out once per shape and caches it, typed ints included.
"""
import collections
import functools

from minires.backends.cuda.loader import (
    BLOCK,
    MAX_GRID,
    KernelFile,
    check_grid_stride,
    contiguous,
    empty,
    int32,
)
from minires.backends.dispatch import get_array_module

IM2COL = KernelFile("im2col.cu", ["im2col", "col2im"])

COLUMNS_PER_THREAD = 4  # how many columns (im2col) or pixels (col2im) each thread walks, about


def output_hw(x_shape, kernel, stride, padding):
    """(OH, OW): the convolution's output height and width."""
    H, W = x_shape[2:]
    return tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip((H, W), kernel, stride, padding))


def blocks_along_x(n):
    """Blocks along x for a grid row whose threads walk n elements: about COLUMNS_PER_THREAD
    elements per thread (at least 1 block, at most MAX_GRID; the loop strides over the rest)."""
    return max(1, min(-(-n // (BLOCK * COLUMNS_PER_THREAD)), MAX_GRID))


Geometry = collections.namedtuple("Geometry", "out_hw col_shape im2col_grid col2im_grid args")
Geometry.__doc__ = """What both kernels need for one convolution shape: the output (OH, OW), col's
shape (K, N*OH*OW), the two grids, and the typed ints both kernels take after their two
arrays (N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)."""


@functools.lru_cache(maxsize=256)  # a network has a few dozen conv shapes; a launch rebuilds nothing
def launch_geometry(x_shape, kernel, stride, padding):
    """The :class:`Geometry` of a convolution of an x of ``x_shape`` (all arguments are tuples).
    Raises ValueError where the kernels cannot index it with int or launch it."""
    (N, C, H, W), (kh, kw) = x_shape, kernel
    OH, OW = output_hw(x_shape, kernel, stride, padding)
    rows, columns, pixels = C * kh * kw, N * OH * OW, N * H * W
    if rows > MAX_GRID:
        raise ValueError(
            f"conv2d kernel path: col would have C*kh*kw = {C}*{kh}*{kw} = {rows} rows, but im2col "
            f"launches one grid row per row of col and CUDA allows at most {MAX_GRID} (grid.y)")
    int32(N * C * H * W)  # raises if a flat index into x or col would not fit the kernels' int
    int32(rows * columns)
    im2col_grid = (blocks_along_x(columns), rows)
    col2im_grid = (blocks_along_x(pixels), C)
    check_grid_stride(columns, im2col_grid[0] * BLOCK)  # PixelWalk's index runs up to n + step (im2col.cu)
    check_grid_stride(pixels, col2im_grid[0] * BLOCK)
    args = tuple(int32(v) for v in (N, C, H, W, kh, kw, *stride, *padding, OH, OW))
    return Geometry((OH, OW), (rows, columns), im2col_grid, col2im_grid, args)


def geometry_of(x_shape, kernel, stride, padding):
    """:func:`launch_geometry`, its arguments made tuples (the cache's keys must be hashable)."""
    return launch_geometry(tuple(x_shape), tuple(kernel), tuple(stride), tuple(padding))


def im2col(x, kernel, stride, padding):
    """x (N, C, H, W) -> col (C*kh*kw, N*OH*OW): row (c, i, j), column (n, oh, ow)."""
    x = contiguous(x)
    geometry = geometry_of(x.shape, kernel, stride, padding)
    col = empty(geometry.col_shape, x.dtype, like=x)
    IM2COL.launch("im2col", x.dtype, geometry.im2col_grid, (x, col) + geometry.args)
    return col


def col2im(col, x_shape, kernel, stride, padding):
    """The adjoint of im2col: col (C*kh*kw, N*OH*OW) -> (N, C, H, W), overlapping windows summed."""
    col = contiguous(col)
    geometry = geometry_of(x_shape, kernel, stride, padding)
    if tuple(col.shape) != geometry.col_shape:
        raise ValueError(f"col2im: col has shape {tuple(col.shape)}, expected {geometry.col_shape} for x {tuple(x_shape)}")
    x = empty(tuple(x_shape), col.dtype, like=col)
    IM2COL.launch("col2im", col.dtype, geometry.col2im_grid, (col, x) + geometry.args)
    return x


def conv2d_forward(x, weight, bias, stride, padding):
    """y = conv2d(x, weight) + bias as (N, OC, OH, OW), C-contiguous."""
    xp = get_array_module(x)
    N, OC = x.shape[0], weight.shape[0]
    kernel = weight.shape[2:]
    OH, OW = output_hw(x.shape, kernel, stride, padding)
    col = im2col(x, kernel, stride, padding)  # (K, N*OH*OW)
    y2 = xp.matmul(weight.reshape(OC, -1), col)  # (OC, N*OH*OW): one GEMM, channel-major
    del col
    y2_as_nchw = y2.reshape(OC, N, OH * OW).transpose(1, 0, 2)  # a view, (N, OC, OH*OW)
    y = empty((N, OC, OH * OW), y2.dtype, like=y2)
    if bias is None:
        y[...] = y2_as_nchw  # the one copy, into NCHW
    else:
        xp.add(y2_as_nchw, bias[:, None], out=y)  # the same copy, adding the bias on the way
    return y.reshape(N, OC, OH, OW)


def conv2d_backward(grad, x, weight, stride, padding, need_x, need_w, need_b):
    """(dL/dx, dL/dweight, dL/dbias) from grad = dL/dy, each None where not needed.

    With G2 = dL/dY2 as an (OC, N*OH*OW) matrix (see the module docstring):
    dW_mat = G2 @ col.T,  db = G2 summed over columns,  dcol = W_mat.T @ G2,  dx = col2im(dcol).
    """
    xp = get_array_module(x)
    OC = weight.shape[0]
    kernel = weight.shape[2:]
    if not (need_x or need_w):  # the bias alone needs no G2
        return None, None, (grad.sum(axis=(0, 2, 3)) if need_b else None)
    grad_x = grad_w = grad_b = None
    # (N, OC, OH, OW) -> (OC, N, OH, OW) -> (OC, N*OH*OW): one transposing copy of the gradient
    # (none when it is already channel-major, e.g. for batch 1).
    g2 = xp.ascontiguousarray(grad.transpose(1, 0, 2, 3)).reshape(OC, -1)
    if need_w:
        col = im2col(x, kernel, stride, padding)  # rebuilt, not saved (see the module docstring)
        grad_w = xp.matmul(g2, col.T).reshape(weight.shape)  # col.T: a view, read by cuBLAS transposed
        del col  # free it before grad_col, which is as large, is allocated
    if need_b:
        grad_b = g2.sum(axis=1)
    if need_x:
        grad_col = xp.matmul(weight.reshape(OC, -1).T, g2)  # (K, N*OH*OW)
        grad_x = col2im(grad_col, x.shape, kernel, stride, padding)
    return grad_x, grad_w, grad_b
