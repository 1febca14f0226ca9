"""im2col and col2im, the rearrangement that turns conv2d into matrix products, on every backend.

The NumPy path's im2col (minires.ops.im2col, col of shape (C*kh*kw, N*OH*OW)) and the
kernel path's (kernels/im2col.cu, col of shape (N, C*kh*kw, OH*OW), one matrix per
image) are checked against the same loop reference in the kernels' layout: every
col entry comes from the pixel the formula names, col2im adds every entry back
into that pixel, and col2im is the adjoint of im2col. Last, a NumPy-path-only
promise: its im2col copies the input exactly once.
"""
import tracemalloc

import numpy as np
import pytest

from minires.backends.cuda import conv as conv_kernels
from minires.ops import im2col as numpy_im2col

from backend_tools import assert_close, cases_on_backends, float32_exact
import reference as ref

# (x shape, kernel (kh, kw), stride (sh, sw), padding (ph, pw))
KERNEL_CASES = [
    ((1, 3, 5, 7), (3, 3), (1, 1), (1, 1)),    # batch 1, odd non-square image
    ((2, 3, 7, 6), (3, 3), (2, 2), (1, 1)),    # stride 2
    ((2, 4, 5, 5), (1, 1), (2, 2), (0, 0)),    # 1x1 projection shortcut, stride 2
    ((1, 2, 6, 5), (2, 3), (2, 1), (1, 0)),    # non-square kernel, per-axis stride and padding
    ((1, 2, 7, 7), (2, 2), (3, 3), (1, 1)),    # stride > kernel: some pixels are seen by no window
    ((2, 3, 9, 11), (3, 3), (1, 2), (2, 2)),   # 594 input pixels: col2im spans three blocks of threads
]
CASES = KERNEL_CASES + [
    ((2, 3, 7, 6), (3, 2), (1, 1), (0, 0)),
    ((2, 3, 7, 6), (3, 2), (1, 1), (1, 1)),
    ((2, 3, 7, 6), (3, 2), (2, 2), (1, 1)),
    ((2, 3, 7, 6), (3, 2), (2, 2), (0, 0)),
    ((2, 3, 6, 5), (3, 3), (1, 1), (1, 1)),
    ((2, 3, 6, 5), (3, 3), (2, 2), (1, 1)),
    ((2, 3, 6, 5), (3, 3), (2, 2), (0, 0)),
]


def case_id(case):
    shape, (kh, kw), (sh, sw), (ph, pw) = case
    return f"{'x'.join(map(str, shape))}-k{kh}x{kw}-s{sh}x{sw}-p{ph}x{pw}"


def output_hw(case):
    return conv_kernels.output_hw(*case)


def im2col_per_image(backend, x, kernel, stride, padding):
    """The backend's im2col of x as a NumPy (N, C*kh*kw, OH*OW) array (the NumPy path's col rearranged)."""
    if backend.uses_kernels:
        return backend.numpy(conv_kernels.batched_im2col(backend.array(x), kernel, stride, padding))
    col = numpy_im2col.im2col(x, kernel, stride, padding)
    N, C = x.shape[:2]
    OH, OW = output_hw((x.shape, kernel, stride, padding))
    assert col.shape == (C * kernel[0] * kernel[1], N * OH * OW)  # the NumPy path's own layout
    return col.reshape(col.shape[0], N, OH * OW).transpose(1, 0, 2)


def col2im_per_image(backend, col, x_shape, kernel, stride, padding):
    """The backend's col2im of an (N, C*kh*kw, OH*OW) col, as a NumPy array."""
    if backend.uses_kernels:
        return backend.numpy(conv_kernels.batched_col2im(backend.array(col), x_shape, kernel, stride, padding))
    numpy_layout = np.ascontiguousarray(col.transpose(1, 0, 2)).reshape(col.shape[1], -1)
    return numpy_im2col.col2im(numpy_layout, x_shape, kernel, stride, padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_im2col_copies_every_entry_from_the_pixel_the_formula_names(backend, case, dtype):
    shape, kernel, stride, padding = case
    x = float32_exact(np.random.default_rng(0).standard_normal(shape))
    col = im2col_per_image(backend, x.astype(dtype), kernel, stride, padding)
    assert col.dtype == dtype
    np.testing.assert_array_equal(col, ref.im2col(x, kernel, stride, padding))  # pure copies: exact


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_col2im_adds_every_entry_back_into_its_pixel(backend, case, dtype):
    shape, kernel, stride, padding = case
    OH, OW = output_hw(case)
    col_shape = (shape[0], shape[1] * kernel[0] * kernel[1], OH * OW)
    col = float32_exact(np.random.default_rng(1).standard_normal(col_shape))
    x = col2im_per_image(backend, col.astype(dtype), shape, kernel, stride, padding)
    assert_close(x, ref.col2im(col, shape, kernel, stride, padding), dtype)


@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_col2im_is_the_adjoint_of_im2col(backend, case):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: what makes col2im the gradient of im2col.
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    col = im2col_per_image(backend, x, kernel, stride, padding)
    c = rng.standard_normal(col.shape)
    left = float((col * c).sum())
    right = float((x * col2im_per_image(backend, c, shape, kernel, stride, padding)).sum())
    assert abs(left - right) <= 1e-12 * max(abs(left), 1.0)


# ---- NumPy path only ---------------------------------------------------------------------

@pytest.mark.parametrize("padding", [0, 1])
def test_numpy_im2col_allocates_only_the_col_matrix(padding):
    # "im2col must not copy more than once": no padded copy of the input and no
    # intermediate copy of col, so the peak allocation is col itself.
    x = np.random.default_rng(3).standard_normal((16, 8, 16, 16)).astype(np.float32)
    tracemalloc.start()
    tracemalloc.reset_peak()
    col = numpy_im2col.im2col(x, (3, 3), (1, 1), (padding, padding))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < col.nbytes * 1.02 + 64 * 1024, f"peak {peak} bytes for a col of {col.nbytes} bytes"
