"""Long-row im2col: a stride-1 convolution as one GEMM whose ``col`` is copied in long slices.

Ordinary im2col (minires/ops/im2col.py) copies, for every kernel offset, one window
row at a time: for a 32x32 image and a 3x3 kernel those rows are 32 floats long, and
the copy runs far below memory speed. The long-row layout makes every row of ``col``
ONE contiguous slice thousands of floats long.

The buffer. Each channel of a slab of n images goes into one long row of zeros,
written as a grid of rows ``Wr = W + pw`` wide, images ``Hr = H + ph`` rows tall, with
``ph`` rows of zeros on top (here W = 4, H = 2, padding 1; ``.`` is zero):

        . . . . .     <- ph rows of zeros
        . a a a a     <- image 0, row 0; the "." is its left border AND the right border
        . a a a a        of the row above (a row's right border is the next row's left one)
        . . . . .     <- the border shared by image 0 and image 1
        . b b b b
        . b b b b
        . . . . .     + a tail of zeros, so that the last slices stay inside

Flattened, buffer row R, column u is element R*Wr + u. Give output pixel (k, oh, ow)
of image k the position q = (k*Hr + oh)*Wr + ow of the same grid. For kernel offset
(i, j) it reads buffer element q + i*Wr + j: row k*Hr + oh + i, column ow + j, which is
input pixel (oh + i - ph, ow + j - pw) of image k, or a zero when that pixel lies in the
padding (a column past the row's end lands in the next row's left border). So

    col[(c, i, j), q] = buffer[c, i*Wr + j + q]     for q = 0 .. n*Hr*Wr - 1:

for each offset, all of col's rows are slices of the buffer. ``W_mat @ col`` then gives
the output on the whole grid; the grid positions with ow >= OW or oh >= OH are not
outputs (6, 13 and 27 % of the columns for 32, 16 and 8 pixel images with a 3x3 kernel
and padding 1); ``valid`` cuts them away.

It needs stride 1 and ``padding <= kernel - 1`` (then OW <= Wr and OH <= Hr, and the
input gradient, a convolution with padding ``kernel - 1 - padding``, fits the same
grid: see Conv2dFunction.backward_numpy).

Products in blocks. ``gather`` orders col's rows (i, j, c): kernel offset first, then
channel, so that the rows of each kernel offset, and so of each kernel row, are one block.
A product with col is then a sum of GEMMs, one per block (``multiply_in_blocks``):

    W_mat @ col = sum over i of W_i @ col_i       W_i = weight[:, :, i, :], (OC, kw*C): forward
                = sum over (i, j) of W_ij @ col_ij    W_ij = weight[:, :, i, j], (OC, C): input gradient

In float32 each output is then a sum of a few partial sums instead of one running sum of
C*kh*kw terms, which rounds less. Measured on ResNet-20's 3x3 convolutions, the input
gradient's rms error against float64 is what col2im gave before the long rows (1e-7 for 16
channels; tests/test_long_rows.py checks it) instead of twice that with one GEMM. One GEMM
per kernel offset costs about 4% of a training step, so forward, whose error no gradient
check sees, takes one per kernel row: as fast as one GEMM, and still more accurate.
"""
import numpy


def fits_long_rows(kernel, stride, padding):
    """Whether the long-row layout applies: stride 1 and padding at most kernel - 1 on both axes."""
    return tuple(stride) == (1, 1) and all(p <= k - 1 for k, p in zip(kernel, padding))


class LongRowGrid:
    """The sizes of one layout: images of in_hw pixels, a kernel, its padding."""

    def __init__(self, in_hw, kernel, padding):
        (H, W), (self.kh, self.kw), (self.ph, self.pw) = in_hw, kernel, padding
        self.in_hw = (H, W)
        self.out_hw = (H + 2 * self.ph - self.kh + 1, W + 2 * self.pw - self.kw + 1)
        self.Hr, self.Wr = H + self.ph, W + self.pw  # rows per image, elements per row

    def positions(self, n):
        """Q: the number of grid positions (columns of col) for n images."""
        return n * self.Hr * self.Wr

    def buffer_length(self, n):
        """Top border, n images, and a tail long enough for the last offset's slice."""
        return self.ph * self.Wr + self.positions(n) + (self.kh - 1 - self.ph) * self.Wr + self.kw - 1

    def fill(self, buffer, images, n):
        """Write images (C, n, H, W) into the zeroed ``buffer`` (C, length); keep every border zero."""
        H, W = self.in_hw
        C = buffer.shape[0]
        start = self.ph * self.Wr
        body = buffer[:, start:start + self.positions(n)].reshape(C, n, self.Hr, self.Wr)
        body[:, :, :H, self.pw:self.pw + W] = images
        buffer[:, start + self.positions(n):] = 0  # a shorter last slab: clear what the longer ones left

    def gather(self, buffer, n, storage):
        """col from the buffer, written into the front of the flat array ``storage``: one
        contiguous slice per channel and kernel offset. Shape (kh, kw, C, Q), the rows (i, j, c):
        ``col.reshape(kh, kw*C, Q)`` gives the block of each kernel row, ``col.reshape(kh*kw, C, Q)``
        the block of each kernel offset, ``col.reshape(-1, Q)`` all of col."""
        C, Q = buffer.shape[0], self.positions(n)
        col = matrix(storage, self.kh * self.kw * C, Q).reshape(self.kh, self.kw, C, Q)
        for i in range(self.kh):
            for j in range(self.kw):
                offset = i * self.Wr + j
                col[i, j] = buffer[:, offset:offset + Q]
        return col

    def valid(self, grid_values, n):
        """(rows, Q) values on the grid -> (rows, n, OH, OW): the grid positions that are outputs."""
        OH, OW = self.out_hw
        return grid_values.reshape(-1, n, self.Hr, self.Wr)[:, :, :OH, :OW]


def kernel_rows(weight):
    """weight (OC, C, kh, kw) -> (kh, OC, kw*C): the matrix W_i of each kernel row i, its columns
    (j, c) matching the rows of ``gather``'s col."""
    OC, C, kh, kw = weight.shape
    return numpy.ascontiguousarray(weight.transpose(2, 0, 3, 1)).reshape(kh, OC, kw * C)


def kernel_offsets(weight):
    """weight (OC, C, kh, kw) -> (kh*kw, OC, C): the matrix W_ij of each kernel offset (i, j)."""
    OC, C, kh, kw = weight.shape
    return numpy.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(kh * kw, OC, C)


def multiply_in_blocks(w_blocks, col_blocks, out, partial):
    """out = sum over blocks b of w_blocks[b] @ col_blocks[b], with ``partial`` (out's shape) as scratch."""
    numpy.matmul(w_blocks[0], col_blocks[0], out=out)
    for b in range(1, len(w_blocks)):
        numpy.matmul(w_blocks[b], col_blocks[b], out=partial)
        out += partial


def matrix(storage, rows, columns):
    """A (rows, columns) matrix in the front of the flat scratch array ``storage`` (no copy)."""
    return storage[:rows * columns].reshape(rows, columns)
