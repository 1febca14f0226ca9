"""im2col and col2im, the rearrangement that turns conv2d into matrix products, on every backend.

Both paths now share one layout: col is a single (C*kh*kw, N*OH*OW) matrix, rows (c, i, j)
and columns (n, oh, ow). The NumPy path's im2col (minires.ops.im2col) and the kernel
path's (kernels/im2col.cu through minires.backends.cuda.conv) are checked against the
same loop reference (tests/reference.py, which lays col out per image; ``one_matrix``
lines it up): every col entry comes from the pixel the formula names, col2im adds every
entry back into that pixel, and col2im is the adjoint of im2col.

The kernels walk their columns (pixels) in a grid-stride loop, stepping the digits
(n, oh, ow) with carries instead of dividing; the emulated cases are chosen so that
the walk crosses row and image boundaries in every digit, and so that more than one
block runs along x. Then the launch geometry: grids, how X is chosen, its cache and
its refusals. Last, a NumPy-path-only promise: its im2col copies the input exactly once.
"""
import tracemalloc

import numpy as np
import pytest
import reference as ref
from backend_tools import assert_close, cases_on_backends, float32_exact, only_on

from minires.backends.cuda import conv as conv_kernels
from minires.backends.cuda.loader import BLOCK, MAX_GRID
from minires.ops import im2col as numpy_im2col

# (x shape, kernel (kh, kw), stride (sh, sw), padding (ph, pw))
WALK_CASES = [
    # 1196 columns (not a multiple of 256): two blocks along x, step 512 = (n 0, oh 22, ow 6),
    # so ow carries into oh and oh into n; col2im walks the same 2 x 26 x 23 pixels
    ((2, 1, 26, 23), (3, 3), (1, 1), (1, 1)),
    # 5x7 images, 700 columns, one block: step 256 = (n 7, oh 1, ow 4) is larger than an image
    ((20, 2, 5, 7), (3, 3), (1, 1), (1, 1)),
    # non-square everything: im2col's step 256 = (n 21, oh 1, ow 1) over 4x3 outputs; col2im walks
    # 2520 pixels with three blocks along x, step 768 = (n 12, h 1, w 3) over 7x9 images
    ((40, 2, 7, 9), (3, 2), (2, 3), (1, 0)),
]
KERNEL_CASES = [
    ((1, 3, 5, 7), (3, 3), (1, 1), (1, 1)),    # batch 1, odd non-square image
    ((2, 3, 7, 6), (3, 3), (2, 2), (1, 1)),    # stride 2
    ((2, 4, 5, 5), (1, 1), (2, 2), (0, 0)),    # 1x1 projection shortcut, stride 2
    ((1, 2, 6, 5), (2, 3), (2, 1), (1, 0)),    # non-square kernel, per-axis stride and padding
    ((1, 2, 7, 7), (2, 2), (3, 3), (1, 1)),    # stride > kernel: some pixels are seen by no window
    ((2, 3, 9, 11), (3, 3), (1, 2), (2, 2)),   # padding 2, per-axis stride
] + WALK_CASES
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


def one_matrix(per_image):
    """The reference's per-image col (N, K, OH*OW) as the one (K, N*OH*OW) matrix both paths build."""
    N, K, P = per_image.shape
    return per_image.transpose(1, 0, 2).reshape(K, N * P)


def per_image(col, N):
    """The inverse of one_matrix: (K, N*OH*OW) -> (N, K, OH*OW), the reference's layout."""
    K = col.shape[0]
    return col.reshape(K, N, -1).transpose(1, 0, 2)


def backend_im2col(backend, x, kernel, stride, padding):
    """The backend's im2col of x, as a NumPy (C*kh*kw, N*OH*OW) array."""
    if backend.uses_kernels:
        return backend.numpy(conv_kernels.im2col(backend.array(x), kernel, stride, padding))
    return numpy_im2col.im2col(x, kernel, stride, padding)


def backend_col2im(backend, col, x_shape, kernel, stride, padding):
    """The backend's col2im of a (C*kh*kw, N*OH*OW) col, as a NumPy array."""
    if backend.uses_kernels:
        return backend.numpy(conv_kernels.col2im(backend.array(col), x_shape, kernel, stride, padding))
    return numpy_im2col.col2im(col, x_shape, kernel, stride, padding)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_im2col_copies_every_entry_from_the_pixel_the_formula_names(backend, case, dtype):
    shape, kernel, stride, padding = case
    x = float32_exact(np.random.default_rng(0).standard_normal(shape))
    col = backend_im2col(backend, x.astype(dtype), kernel, stride, padding)
    assert col.dtype == dtype
    np.testing.assert_array_equal(col, one_matrix(ref.im2col(x, kernel, stride, padding)))  # pure copies: exact


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_col2im_adds_every_entry_back_into_its_pixel(backend, case, dtype):
    shape, kernel, stride, padding = case
    OH, OW = output_hw(case)
    col_shape = (shape[1] * kernel[0] * kernel[1], shape[0] * OH * OW)
    col = float32_exact(np.random.default_rng(1).standard_normal(col_shape))
    x = backend_col2im(backend, col.astype(dtype), shape, kernel, stride, padding)
    assert_close(x, ref.col2im(per_image(col, shape[0]), shape, kernel, stride, padding), dtype)


@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_col2im_is_the_adjoint_of_im2col(backend, case):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: what makes col2im the gradient of im2col.
    shape, kernel, stride, padding = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    col = backend_im2col(backend, x, kernel, stride, padding)
    c = rng.standard_normal(col.shape)
    left = float((col * c).sum())
    right = float((x * backend_col2im(backend, c, shape, kernel, stride, padding)).sum())
    assert abs(left - right) <= 1e-12 * max(abs(left), 1.0)


# ---- kernel path: the digit walk and the launch geometry ----------------------------------

def digits(index, height, width):
    """A flat index of an (N, height, width) grid as (n, h, w)."""
    return index // (height * width), (index // width) % height, index % width


def carried_digits(total, step, height, width):
    """Which digits carry ("w into h", "h into n") on some thread's step from one element to the next,
    for a grid-stride walk over ``total`` elements of (N, height, width) with ``step`` threads."""
    _, step_h, step_w = digits(step, height, width)
    carries = set()
    for first in range(min(step, total - step)):  # the threads that take a second element
        _, h, w = digits(first, height, width)
        if w + step_w >= width:
            carries.add("w into h")
            h += 1
        if h + step_h >= height:
            carries.add("h into n")
    return carries


@pytest.mark.parametrize("case", WALK_CASES, ids=case_id)
def test_walk_cases_carry_in_every_digit(case):
    # Guards the cases above: if COLUMNS_PER_THREAD or BLOCK changes they must still make the
    # kernels' grid-stride walks carry from ow into oh and from oh into n (and likewise for col2im).
    N, _, H, W = case[0]
    geometry = conv_kernels.geometry_of(*case)
    OH, OW = geometry.out_hw
    im2col_step, col2im_step = geometry.im2col_grid[0] * BLOCK, geometry.col2im_grid[0] * BLOCK
    assert carried_digits(N * OH * OW, im2col_step, OH, OW) == {"w into h", "h into n"}
    assert carried_digits(N * H * W, col2im_step, H, W) == {"w into h", "h into n"}


@only_on("emulated")
@pytest.mark.parametrize("case", KERNEL_CASES, ids=case_id)
def test_im2col_and_col2im_launch_one_grid_row_per_row_and_per_channel(backend, case):
    (N, C, H, W), (kh, kw), stride, padding = case
    OH, OW = output_hw(case)
    launches = conv_kernels.IM2COL.function("im2col", np.float64).module.launches
    before = len(launches)
    col = conv_kernels.im2col(np.zeros((N, C, H, W)), (kh, kw), stride, padding)
    conv_kernels.col2im(col, (N, C, H, W), (kh, kw), stride, padding)
    (im2col_name, im2col_grid, block), (col2im_name, col2im_grid, _) = launches[before:]
    assert (im2col_name, col2im_name, block) == ("im2col<double>", "col2im<double>", (BLOCK, 1, 1))
    assert im2col_grid == (conv_kernels.blocks_along_x(N * OH * OW), C * kh * kw, 1)
    assert col2im_grid == (conv_kernels.blocks_along_x(N * H * W), C, 1)


def test_more_than_one_block_runs_along_x_in_the_first_walk_case():
    geometry = conv_kernels.geometry_of(*WALK_CASES[0])
    assert geometry.im2col_grid == (2, 9) and geometry.col2im_grid == (2, 1)
    assert geometry.col_shape[1] % BLOCK != 0


@pytest.mark.parametrize("n", [1, 255, 256, 1023, 1024, 1025, 1196, 131072, 2**30])
def test_blocks_along_x_give_each_thread_about_four_elements(n):
    X, per_pass = conv_kernels.blocks_along_x(n), BLOCK * conv_kernels.COLUMNS_PER_THREAD
    assert 1 <= X <= MAX_GRID
    if X < MAX_GRID:  # enough threads for COLUMNS_PER_THREAD elements each, and not one block more
        assert (X - 1) * per_pass < n <= X * per_pass


def test_launch_geometry_of_a_cifar_layer_is_worked_out_once():
    # The first stage of a CIFAR ResNet at batch 128: 131072 columns, 144 rows.
    shape = ((128, 16, 32, 32), (3, 3), (1, 1), (1, 1))
    geometry = conv_kernels.geometry_of(*shape)
    assert geometry.col_shape == (144, 128 * 32 * 32)
    assert geometry.im2col_grid == (128, 144)    # 18432 blocks, 4 columns per thread
    assert geometry.col2im_grid == (128, 16)     # 2048 blocks, 4 pixels per thread
    assert [int(v) for v in geometry.args] == [128, 16, 32, 32, 3, 3, 1, 1, 1, 1, 32, 32]
    assert all(type(v) is np.int32 for v in geometry.args)
    assert conv_kernels.geometry_of(*shape) is geometry  # cached: a launch rebuilds nothing


def test_launch_geometry_refuses_more_rows_than_grid_y_allows():
    # 8192 channels x 3x3 = 73728 rows of col > 65535 rows of blocks
    with pytest.raises(ValueError, match="73728 rows.*65535"):
        conv_kernels.geometry_of((1, 8192, 3, 3), (3, 3), (1, 1), (1, 1))
    conv_kernels.geometry_of((1, 7281, 3, 3), (3, 3), (1, 1), (1, 1))  # 65529 rows: fine


@pytest.mark.parametrize("x_shape", [
    (2**16, 16, 64, 64),   # N*C*H*W = 2^32: x itself cannot be indexed with int
    (16384, 16, 32, 32),   # x fits (2^28) but col (144 x 2^24) does not
], ids=["x-too-large", "col-too-large"])
def test_launch_geometry_refuses_sizes_that_overflow_the_kernels_int(x_shape):
    with pytest.raises(ValueError, match="32-bit int"):
        conv_kernels.geometry_of(x_shape, (3, 3), (1, 1), (1, 1))


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
