"""Channel-major memory: how the NumPy path stores (N, C, H, W) activations.

The NumPy convolution computes ``W_mat @ col``, which comes out as (C, N, H, W)
memory: all of one channel's pixels, for every image, side by side. It hands that
on as an (N, C, H, W) *view* (a transpose, no copy), and so does every op after it:

    memory  (C, N, H, W):   c0: [n0 pixels][n1 pixels]...   c1: [n0 pixels][n1 pixels]...
    tensor  (N, C, H, W):   the same memory read with strides (H*W, N*H*W, W, 1)

The ops that make a new activation-sized array (the option-A shortcut, global
pooling's backward, channel concatenation) make it channel-major too, because an
elementwise op on two arrays of different layouts makes NumPy walk one of them with
large strides, several times slower; and batch norm's per-channel sums are then sums
over contiguous rows. In channel-major memory a range of channels is one contiguous
block, so concatenation along the channels is one block copy per input.
"""
import numpy


def is_channel_major(a):
    """Whether the 4-D array a is an (N, C, H, W) view of dense (C, N, H, W) memory."""
    return a.ndim == 4 and a.transpose(1, 0, 2, 3).flags.c_contiguous


def channel_major_empty(shape, dtype):
    """An uninitialised array of shape (N, C, H, W), stored channel-major."""
    N, C, H, W = shape
    return numpy.empty((C, N, H, W), dtype=dtype).transpose(1, 0, 2, 3)


def channel_major_zeros(shape, dtype):
    """Zeros of shape (N, C, H, W), stored channel-major."""
    N, C, H, W = shape
    return numpy.zeros((C, N, H, W), dtype=dtype).transpose(1, 0, 2, 3)


def as_channel_major(a):
    """a itself when it is not 4-D or already channel-major, else a channel-major copy."""
    if a.ndim != 4 or is_channel_major(a):
        return a
    return numpy.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
