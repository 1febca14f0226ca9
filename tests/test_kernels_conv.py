"""conv2d through kernels/im2col.cu: the kernels alone, then the public op, against the NumPy path.

Emulated tests run the kernels on host threads (minires.backends.emulator) on NumPy arrays,
with every output the wrappers allocate poisoned with NaN; GPU tests run the same
comparisons on a real device. The reference is always the pure NumPy path of
minires itself (F.conv2d outside the emulation, minires.ops.im2col), which
tests/test_conv.py checks against loop references and PyTorch.
"""
import numpy
import pytest

import minires
import minires.functional as F
from minires.backends import to_device
from minires.backends.cuda import conv as conv_kernels
from minires.backends.emulator import emulate_kernels
from minires.ops import im2col as cpu_im2col

# (N, C, H, W, OC, kernel, stride, padding)
CASES = [
    (1, 3, 5, 7, 4, (3, 3), (1, 1), (1, 1)),   # batch 1, odd non-square image
    (2, 3, 7, 6, 4, (3, 3), (2, 2), (1, 1)),   # stride 2
    (2, 4, 5, 5, 3, (1, 1), (2, 2), (0, 0)),   # 1x1 projection shortcut, stride 2
    (1, 2, 6, 5, 3, (2, 3), (2, 1), (1, 0)),   # non-square kernel, per-axis stride and padding
    (1, 2, 7, 7, 2, (2, 2), (3, 3), (1, 1)),   # stride > kernel: some pixels are seen by no window
    (2, 3, 9, 11, 5, (3, 3), (1, 2), (2, 2)),  # 594 input pixels: col2im spans three blocks
]


def case_id(case):
    N, C, H, W, OC, (kh, kw), (sh, sw), (ph, pw) = case
    return f"{N}x{C}x{H}x{W}-oc{OC}-k{kh}x{kw}-s{sh}x{sw}-p{ph}x{pw}"


def make_arrays(case, dtype, bias, seed=0):
    """x, weight, bias (or None) and an upstream gradient for the output."""
    N, C, H, W, OC, (kh, kw), stride, padding = case
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    weight = rng.standard_normal((OC, C, kh, kw)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    OH, OW = conv_kernels.output_hw(x.shape, (kh, kw), stride, padding)
    upstream = rng.standard_normal((N, OC, OH, OW)).astype(dtype)
    return (x, weight, b), upstream


def conv_and_grads(arrays, upstream, stride, padding, device="cpu"):
    """F.conv2d forward and backward on ``device``: [y, dx, dweight(, dbias)] as NumPy arrays."""
    tensors = [None if a is None else minires.tensor(a, device=device, requires_grad=True) for a in arrays]
    y = F.conv2d(*tensors, stride=stride, padding=padding)
    y.backward(to_device(upstream, device))
    return [y.numpy()] + [to_device(t.grad, "cpu") for t in tensors if t is not None]


def assert_close(actual, expected, dtype, is_grad=False):
    """Error relative to the largest expected value: < 1e-5 (forward) / 1e-4 (grads) in float32."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == dtype
    tolerance = 1e-12 if dtype == numpy.float64 else (1e-4 if is_grad else 1e-5)
    scale = max(float(numpy.abs(expected).max()), 1.0)
    numpy.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def assert_matches_numpy_path(results, expected, dtype):
    for k, (actual, reference) in enumerate(zip(results, expected)):
        assert_close(actual, reference, dtype, is_grad=k > 0)


def cpu_col_per_image(x, kernel, stride, padding):
    """minires.ops.im2col's (C*kh*kw, N*OH*OW) col rearranged to the kernel's (N, C*kh*kw, OH*OW)."""
    col = cpu_im2col.im2col(x, kernel, stride, padding)
    return col.reshape(col.shape[0], x.shape[0], -1).transpose(1, 0, 2)


def numpy_path(arrays, upstream, stride, padding):
    """conv_and_grads with the emulation switched off: minires's own NumPy path."""
    with emulate_kernels(enabled=False):
        return conv_and_grads(arrays, upstream, stride, padding)


def launched(kernel_name, dtype):
    """The emulated launches of im2col.cu's module for ``dtype`` so far (a list that grows)."""
    return conv_kernels.IM2COL.function(kernel_name, dtype).module.launches


# ---- the kernels alone (emulated) ---------------------------------------------

@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_im2col_kernel_copies_what_the_numpy_im2col_copies(emulated_kernels, case, dtype):
    (x, _, _), _ = make_arrays(case, dtype, bias=False)
    kernel, stride, padding = case[5:]
    col = conv_kernels.im2col(x, kernel, stride, padding)
    assert col.dtype == dtype
    numpy.testing.assert_array_equal(col, cpu_col_per_image(x, kernel, stride, padding))


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_col2im_kernel_sums_like_the_numpy_col2im(emulated_kernels, case, dtype):
    (x, _, _), _ = make_arrays(case, dtype, bias=False)
    kernel, stride, padding = case[5:]
    col_shape = cpu_col_per_image(x, kernel, stride, padding).shape
    col = numpy.random.default_rng(1).standard_normal(col_shape).astype(dtype)
    dx = conv_kernels.col2im(col, x.shape, kernel, stride, padding)
    cpu_layout = numpy.ascontiguousarray(col.transpose(1, 0, 2)).reshape(col_shape[1], -1)
    expected = cpu_im2col.col2im(cpu_layout, x.shape, kernel, stride, padding)
    assert_close(dx, numpy.ascontiguousarray(expected), dtype)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_col2im_kernel_is_the_adjoint_of_the_im2col_kernel(emulated_kernels, case):
    # <im2col(x), c> == <x, col2im(c)> for every x and c: what makes col2im the gradient of im2col.
    (x, _, _), _ = make_arrays(case, numpy.float64, bias=False)
    kernel, stride, padding = case[5:]
    col = conv_kernels.im2col(x, kernel, stride, padding)
    c = numpy.random.default_rng(2).standard_normal(col.shape)
    left = float((col * c).sum())
    right = float((x * conv_kernels.col2im(c, x.shape, kernel, stride, padding)).sum())
    assert abs(left - right) <= 1e-12 * max(abs(left), 1.0)


# ---- the public op (emulated) ---------------------------------------------------

@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_forward_and_backward_match_the_numpy_path(emulated_kernels, case, dtype, bias):
    arrays, upstream = make_arrays(case, dtype, bias)
    stride, padding = case[6:]
    launches = launched("im2col", dtype)
    before = len(launches)
    results = conv_and_grads(arrays, upstream, stride, padding)
    c_type = "float" if dtype == numpy.float32 else "double"
    # forward: im2col; backward: im2col again (for dL/dweight) and col2im (for dL/dx)
    assert sorted(name for name, _, _ in launches[before:]) == [f"col2im<{c_type}>"] + 2 * [f"im2col<{c_type}>"]
    assert results[0].flags.c_contiguous  # NCHW straight out of the batched GEMM
    assert_matches_numpy_path(results, numpy_path(arrays, upstream, stride, padding), dtype)


@pytest.mark.parametrize("needs", [(False, True, True), (True, False, False), (False, False, True)],
                         ids=["weight-and-bias", "input-only", "bias-only"])
def test_conv2d_backward_computes_only_the_gradients_asked_for(emulated_kernels, needs):
    case = CASES[1]
    (x, w, b), upstream = make_arrays(case, numpy.float64, bias=True)
    stride, padding = case[6:]
    tensors = [minires.tensor(a, requires_grad=need) for a, need in zip((x, w, b), needs)]
    y = F.conv2d(*tensors, stride=stride, padding=padding)
    launches = launched("im2col", numpy.float64)
    before = len(launches)
    y.backward(upstream)
    names = [name for name, _, _ in launches[before:]]
    need_x, need_w, _ = needs
    assert names.count("col2im<double>") == int(need_x)   # dL/dx is the only user of col2im
    assert names.count("im2col<double>") == int(need_w)   # col is rebuilt only for dL/dweight
    expected = numpy_path((x, w, b), upstream, stride, padding)
    for tensor, need, reference in zip(tensors, needs, expected[1:]):
        if need:
            assert_close(tensor.grad, reference, numpy.float64, is_grad=True)
        else:
            assert tensor.grad is None


def test_conv2d_reads_strided_input_and_upstream_gradient(emulated_kernels):
    """A transposed view as input and a Fortran-ordered upstream gradient go through contiguous copies."""
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    tx = minires.tensor(x, requires_grad=True)
    tw = minires.tensor(w, requires_grad=True)
    x_view = tx.transpose(0, 1, 3, 2)  # (2, 3, 5, 6), not C-contiguous
    assert not x_view.data.flags.c_contiguous
    y = F.conv2d(x_view, tw, stride=(1, 2), padding=1)
    upstream = numpy.asfortranarray(rng.standard_normal(y.shape))
    y.backward(upstream)
    expected = numpy_path((numpy.ascontiguousarray(x.transpose(0, 1, 3, 2)), w, None),
                           numpy.ascontiguousarray(upstream), (1, 2), (1, 1))
    assert_close(y.numpy(), expected[0], numpy.float64)
    assert_close(tx.grad, expected[1].transpose(0, 1, 3, 2), numpy.float64, is_grad=True)
    assert_close(tw.grad, expected[2], numpy.float64, is_grad=True)


# ---- on a real GPU ----------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_conv2d_matches_cpu(gpu_poisoned, case, dtype, bias):
    arrays, upstream = make_arrays(case, dtype, bias)
    stride, padding = case[6:]
    results = conv_and_grads(arrays, upstream, stride, padding, device="cuda")
    expected = conv_and_grads(arrays, upstream, stride, padding, device="cpu")
    assert_matches_numpy_path(results, expected, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_im2col_and_col2im_kernels_match_numpy(gpu_poisoned, case):
    import cupy

    (x, _, _), _ = make_arrays(case, numpy.float64, bias=False)
    kernel, stride, padding = case[5:]
    col = conv_kernels.im2col(cupy.asarray(x), kernel, stride, padding)
    numpy.testing.assert_array_equal(cupy.asnumpy(col), cpu_col_per_image(x, kernel, stride, padding))
    c = numpy.random.default_rng(2).standard_normal(col.shape)
    dx = conv_kernels.col2im(cupy.asarray(c), x.shape, kernel, stride, padding)
    cpu_layout = numpy.ascontiguousarray(c.transpose(1, 0, 2)).reshape(c.shape[1], -1)
    assert_close(cupy.asnumpy(dx), numpy.ascontiguousarray(cpu_im2col.col2im(cpu_layout, x.shape, kernel, stride,
                                                                             padding)), numpy.float64)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gpu_conv2d_gradcheck(gpu_poisoned, case):
    (x, w, b), _ = make_arrays(case, numpy.float64, bias=True, seed=4)
    stride, padding = case[6:]
    inputs = [minires.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b)]
    result = minires.gradcheck(lambda *args: F.conv2d(*args, stride=stride, padding=padding), inputs)
    assert result.passed and result.comparisons > 0
