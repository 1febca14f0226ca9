"""im2col and col2im: turn a convolution into one matrix product.

A convolution with a kh x kw kernel looks, for every output pixel, at a kh x kw
window of every input channel. im2col copies those windows into the columns of
a matrix ``col`` so that the convolution becomes ``W @ col``:

    col[(c, i, j), (n, oh, ow)] = x[n, c, oh*stride + i - padding, ow*stride + j - padding]

(zero where that position falls into the padding). We loop over the kh*kw
kernel offsets (i, j); each iteration copies, for all images and channels at
once, the input pixels that offset sees. Every element of ``col`` is written
exactly once, straight from ``x``: no padded copy of the input is made.

Memory order. Rows of ``col`` are (c, i, j) and columns (n, oh, ow), so ``col``
is stored as an array of shape (C, kh, kw, N, OH, OW). The product
``W @ col`` then comes out as (OC, N, OH, OW): channel-major. We hand it back as
an (N, OC, OH, OW) tensor by transposing the *view* (no copy); NumPy follows
the strides, and the next layer reads channel-major data in the order it wants.
"""
from minires.backends import get_array_module


def conv_output_size(in_size, kernel, stride, padding):
    return (in_size + 2 * padding - kernel) // stride + 1


def offset_slices(offset, out_size, in_size, stride, padding):
    """For kernel offset ``offset`` along one axis: which outputs see a real input pixel.

    Output position o reads input position ``o*stride + offset - padding``. Returns
    ``(out_slice, in_slice)`` covering the outputs whose input lies inside
    [0, in_size) and the matching strided input positions, or None when the offset
    only ever sees padding.
    """
    first = max(0, -((offset - padding) // stride))  # smallest o with o*stride + offset - padding >= 0
    last = min(out_size, (in_size - 1 + padding - offset) // stride + 1)
    if last <= first:
        return None
    start = first * stride + offset - padding
    return slice(first, last), slice(start, start + (last - first - 1) * stride + 1, stride)


def kernel_offsets(kernel, stride, padding, in_hw, out_hw):
    """Yield (i, j, out_index, in_index) for every kernel offset that sees real pixels.

    ``out_index`` / ``in_index`` index the last two (spatial) axes of the output
    and input arrays.
    """
    (kh, kw), (sh, sw), (ph, pw), (H, W), (OH, OW) = kernel, stride, padding, in_hw, out_hw
    for i in range(kh):
        rows = offset_slices(i, OH, H, sh, ph)
        if rows is None:
            continue
        for j in range(kw):
            cols = offset_slices(j, OW, W, sw, pw)
            if cols is None:
                continue
            yield i, j, (rows[0], cols[0]), (rows[1], cols[1])


def im2col(x, kernel, stride, padding):
    """x (N, C, H, W) -> col of shape (C*kh*kw, N*OH*OW) (see the module docstring)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    x_cnhw = x.transpose(1, 0, 2, 3)  # a view: channel-major, like col's rows
    # Positions in the padding stay zero; without padding every element is overwritten.
    allocate = xp.zeros if (ph or pw) else xp.empty
    col = allocate((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for i, j, out_index, in_index in kernel_offsets(kernel, stride, padding, (H, W), (OH, OW)):
        col[:, i, j, :, out_index[0], out_index[1]] = x_cnhw[:, :, in_index[0], in_index[1]]
    return col.reshape(C * kh * kw, N * OH * OW)


def col2im(col, x_shape, kernel, stride, padding, out=None):
    """The adjoint of im2col: add every column entry back onto the pixel it was copied from.

    col (C*kh*kw, N*OH*OW) -> array of shape x_shape (N, C, H, W), returned as a
    channel-major view. Overlapping windows (stride < kernel) add up. With ``out``
    (a zeroed channel-major (C, N, H, W) array) the sums go there instead.
    """
    xp = get_array_module(col)
    N, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    col = col.reshape(C, kh, kw, N, OH, OW)
    dx_cnhw = xp.zeros((C, N, H, W), dtype=col.dtype) if out is None else out
    for i, j, out_index, in_index in kernel_offsets(kernel, stride, padding, (H, W), (OH, OW)):
        dx_cnhw[:, :, in_index[0], in_index[1]] += col[:, i, j, :, out_index[0], out_index[1]]
    return dx_cnhw.transpose(1, 0, 2, 3)
