"""conv2d on every backend: output and gradients against the loop reference, gradcheck, and errors.

Each case runs in float32 and float64 on the NumPy path, the emulated kernel path
(a smaller list of cases: the emulator is slow) and the GPU. Then what belongs to
one path: the NumPy path's batch slabs, the kernel path's launches (emulated, where
they are recorded) and its matrix products (each one 2-D GEMM, col never copied), and
PyTorch as a second oracle.
"""
import functools
import weakref

import numpy as np
import pytest
import reference as ref
from backend_tools import assert_close, cases_on_backends, float32_exact, only_on

import minires
import minires.functional as F
from minires.backends.cuda import conv as conv_kernels

# (N, C, OC, H, W, kernel (kh, kw), stride, padding, bias)
KERNEL_CASES = [
    (1, 3, 4, 5, 7, (3, 3), 1, 1, True),                # batch 1, odd non-square image
    (2, 3, 4, 7, 6, (3, 3), 2, 1, False),               # stride 2
    (2, 4, 3, 5, 5, (1, 1), 2, 0, True),                # 1x1 projection shortcut, stride 2
    (1, 2, 3, 6, 5, (2, 3), (2, 1), (1, 0), False),     # non-square kernel, per-axis stride and padding
    (1, 2, 2, 7, 7, (2, 2), 3, 1, True),                # stride > kernel: some pixels are seen by no window
    (2, 3, 5, 9, 11, (3, 3), (1, 2), 2, True),          # 594 input pixels: col2im spans three blocks
    (2, 3, 5, 9, 11, (3, 3), (1, 2), 2, False),
    (2, 1, 2, 26, 23, (3, 3), 1, 1, True),              # 1196 columns: two blocks along x, the walk carries
    (20, 2, 3, 5, 7, (3, 3), 1, 1, False),              # one pass of the walk steps over 7 whole images
]
MORE_CASES = [
    (2, 3, 4, 5, 5, (3, 3), 1, 0, True),
    (2, 3, 4, 5, 5, (3, 3), 1, 1, True),
    (2, 3, 2, 5, 5, (3, 3), 2, 0, False),
    (2, 3, 2, 5, 5, (3, 3), 2, 1, True),
    (1, 3, 5, 7, 5, (3, 3), 1, 1, True),                # batch 1, odd non-square image
    (1, 5, 3, 7, 5, (3, 3), 2, 1, False),               # 5 channels, stride 2 on odd sizes
    (2, 3, 4, 5, 5, (1, 1), 1, 0, True),                # 1x1 kernel
    (2, 4, 6, 6, 6, (1, 1), 2, 0, False),               # 1x1 projection, stride 2
    (2, 3, 2, 7, 5, (2, 3), 1, 0, True),                # non-square kernel
    (2, 3, 2, 7, 5, (2, 3), 2, 1, True),
    (1, 3, 2, 6, 7, (2, 3), (2, 1), (1, 0), True),      # per-axis stride and padding
    (2, 3, 3, 3, 3, (3, 3), 1, 0, True),                # kernel as large as the image: 1x1 output
    (1, 3, 2, 7, 5, (1, 1), 2, 0, False),               # 1x1 stride 2 on odd sizes
    (1, 3, 2, 5, 5, (1, 1), 1, 1, True),                # padding wider than the kernel: border = bias only
    (2, 3, 2, 7, 5, (3, 3), 2, 2, True),                # padding 2
    (1, 3, 2, 7, 7, (2, 2), 3, 1, True),                # stride larger than the kernel: gaps between windows
]
OTHER_BIAS = [(*case[:-1], not case[-1]) for case in KERNEL_CASES[:5]]  # the kernel cases, bias flipped
CASES = KERNEL_CASES + MORE_CASES + OTHER_BIAS
GRADCHECK_EMULATED = [(1, 2, 2, 4, 4, (3, 3), 2, 1, True)]  # every gradcheck sample is a launch


def pair_id(value):
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def case_id(case):
    N, C, OC, H, W, k, s, p, bias = case
    return f"N{N}-C{C}-OC{OC}-{H}x{W}-k{pair_id(k)}-s{pair_id(s)}-p{pair_id(p)}-{'bias' if bias else 'nobias'}"


@functools.cache
def case_data(case):
    """x, weight, bias (or None) and an upstream gradient, all exact in float32, and the loop
    reference's output and gradients (x, weight, bias) for them."""
    N, C, OC, H, W, (kh, kw), stride, padding, use_bias = case
    rng = np.random.default_rng(0)
    x = float32_exact(rng.standard_normal((N, C, H, W)))
    w = float32_exact(rng.standard_normal((OC, C, kh, kw)))
    b = float32_exact(rng.standard_normal(OC)) if use_bias else None
    y = ref.conv2d(x, w, b, stride=stride, padding=padding)
    upstream = float32_exact(rng.standard_normal(y.shape))
    grads = ref.conv2d_backward(x, w, upstream, stride=stride, padding=padding)
    return (x, w, b), upstream, y, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=KERNEL_CASES, ids=case_id)
def test_conv2d_output_and_gradients_match_the_loop_reference(backend, case, dtype):
    (x, w, b), upstream, expected_y, (expected_gx, expected_gw, expected_gb) = case_data(case)
    stride, padding = case[6:8]
    tx, tw = backend.tensor(x.astype(dtype), requires_grad=True), backend.tensor(w.astype(dtype), requires_grad=True)
    tb = None if b is None else backend.tensor(b.astype(dtype), requires_grad=True)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    assert_close(y, expected_y, dtype)
    y.backward(backend.array(upstream.astype(dtype)))
    assert_close(tx.grad, expected_gx, dtype, grad=True)
    assert_close(tw.grad, expected_gw, dtype, grad=True)
    if tb is not None:
        assert_close(tb.grad, expected_gb, dtype, grad=True)


@cases_on_backends("case", CASES, emulated=GRADCHECK_EMULATED, numpy=MORE_CASES, ids=case_id)
def test_conv2d_gradcheck(backend, case):
    N, C, OC, H, W, (kh, kw), stride, padding, use_bias = case
    rng = np.random.default_rng(1)
    inputs = [backend.tensor(rng.standard_normal(shape), requires_grad=True)
              for shape in [(N, C, H, W), (OC, C, kh, kw)] + ([(OC,)] if use_bias else [])]
    backend.gradcheck(lambda *args: F.conv2d(*args, stride=stride, padding=padding), inputs)


def test_conv2d_reads_a_strided_input_and_upstream_gradient(backend):
    """A transposed view as input and a Fortran-ordered upstream gradient (the kernel path
    reads them through contiguous copies)."""
    rng = np.random.default_rng(3)
    x_transposed, w = rng.standard_normal((2, 3, 5, 6)), rng.standard_normal((4, 3, 3, 3))
    tx = backend.tensor(np.ascontiguousarray(x_transposed.transpose(0, 1, 3, 2)), requires_grad=True)
    tw = backend.tensor(w, requires_grad=True)
    x_view = tx.transpose(2, 3)  # (2, 3, 5, 6), not C-contiguous
    assert not x_view.data.flags.c_contiguous
    y = F.conv2d(x_view, tw, stride=(1, 2), padding=1)
    upstream = rng.standard_normal(y.shape)
    fortran_ordered = backend.array(np.ascontiguousarray(upstream.T)).T  # a view on the backend
    assert not fortran_ordered.flags.c_contiguous
    y.backward(fortran_ordered)
    expected_gx, expected_gw, _ = ref.conv2d_backward(x_transposed, w, upstream, stride=(1, 2), padding=1)
    assert_close(y, ref.conv2d(x_transposed, w, stride=(1, 2), padding=1), np.float64)
    assert_close(tx.grad, expected_gx.transpose(0, 1, 3, 2), np.float64, grad=True)
    assert_close(tw.grad, expected_gw, np.float64, grad=True)


# ---- clear errors ------------------------------------------------------------------------

def ones(backend, shape, dtype=np.float64):
    return backend.tensor(np.ones(shape, dtype=dtype))


def test_conv2d_channel_mismatch_names_both_counts(backend):
    with pytest.raises(ValueError) as info:
        F.conv2d(ones(backend, (2, 3, 5, 5)), ones(backend, (4, 5, 3, 3)))
    message = str(info.value)
    assert "3" in message and "5" in message and "channel" in message


@pytest.mark.parametrize("shape", [(3, 5, 5), (2, 3, 5, 5, 1), (5, 5)])
def test_conv2d_rejects_non_4d_input(backend, shape):
    with pytest.raises(ValueError, match="4-D"):
        F.conv2d(ones(backend, shape), ones(backend, (4, 3, 3, 3)))


def test_conv2d_rejects_non_4d_weight(backend):
    with pytest.raises(ValueError, match="weight"):
        F.conv2d(ones(backend, (2, 3, 5, 5)), ones(backend, (4, 27)))


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((1, 1, 2, 2), (1, 1, 3, 3), 0),
    ((1, 1, 5, 2), (1, 1, 3, 3), 0),   # only the width is too small
    ((1, 1, 1, 1), (1, 1, 5, 5), 1),   # padded input 3x3 < 5x5
])
def test_conv2d_kernel_larger_than_padded_input(backend, x_shape, w_shape, padding):
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(ones(backend, x_shape), ones(backend, w_shape), padding=padding)


def test_conv2d_kernel_exactly_fits_padded_input(backend):
    y = F.conv2d(ones(backend, (1, 1, 1, 1)), ones(backend, (1, 1, 3, 3)), padding=1)
    assert y.shape == (1, 1, 1, 1)
    assert y.numpy()[0, 0, 0, 0] == 1.0  # only the centre tap sees a real pixel


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_conv2d_integer_input_raises_type_error_naming_dtype(backend, dtype):
    with pytest.raises(TypeError) as info:
        F.conv2d(ones(backend, (1, 1, 3, 3), dtype), ones(backend, (1, 1, 3, 3)))
    assert np.dtype(dtype).name in str(info.value)


def test_conv2d_mixed_dtypes_raise_type_error(backend):
    with pytest.raises(TypeError, match="dtype"):
        F.conv2d(ones(backend, (1, 1, 3, 3), np.float32), ones(backend, (1, 1, 3, 3), np.float64))


@pytest.mark.parametrize("bias_shape", [(3,), (4, 1), (1,), ()])
def test_conv2d_bias_of_wrong_shape(backend, bias_shape):
    with pytest.raises(ValueError, match="bias"):
        F.conv2d(ones(backend, (1, 2, 5, 5)), ones(backend, (4, 2, 3, 3)), ones(backend, bias_shape))


@pytest.mark.parametrize("stride, padding", [(0, 0), (1, -1)])
def test_conv2d_rejects_bad_stride_or_padding(backend, stride, padding):
    with pytest.raises(ValueError):
        F.conv2d(ones(backend, (1, 1, 5, 5)), ones(backend, (1, 1, 3, 3)), stride=stride, padding=padding)


# ---- NumPy path only: the batch goes through im2col in cache-sized slabs -------------------

@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)])
def test_numpy_conv_gives_the_same_result_in_any_number_of_slabs(monkeypatch, stride, padding):
    from minires.ops import conv

    rng = np.random.default_rng(3)
    x_data, w_data = rng.standard_normal((5, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((5, 4) + (((7 + 2 * padding - 3) // stride + 1), ((6 + 2 * padding - 3) // stride + 1)))

    def run():
        x, w = minires.tensor(x_data, requires_grad=True), minires.tensor(w_data, requires_grad=True)
        y = F.conv2d(x, w, stride=stride, padding=padding)
        y.backward(g)
        return y.numpy(), x.grad, w.grad

    whole = run()
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # one image per slab: five slabs
    sliced = run()
    for a, b in zip(whole, sliced):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    x = minires.tensor(x_data, requires_grad=True)
    w = minires.tensor(w_data, requires_grad=True)
    assert minires.gradcheck(lambda x, w: F.conv2d(x, w, stride=stride, padding=padding), [x, w]).passed


# ---- kernel path only (emulated, where launches are recorded) ------------------------------

def launch_names(dtype):
    """The emulated launches of im2col.cu's module for ``dtype`` so far (a list that grows)."""
    return conv_kernels.IM2COL.function("im2col", dtype).module.launches


@only_on("emulated")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_kernel_path_launches_im2col_and_col2im_and_returns_nchw(backend, dtype):
    (x, w, _), upstream, _, _ = case_data(KERNEL_CASES[1])
    tx, tw = backend.tensor(x.astype(dtype), requires_grad=True), backend.tensor(w.astype(dtype), requires_grad=True)
    launches = launch_names(dtype)
    before = len(launches)
    y = F.conv2d(tx, tw, stride=2, padding=1)
    y.backward(upstream.astype(dtype))
    c_type = "float" if dtype == np.float32 else "double"
    # forward: im2col; backward: im2col again (for dL/dweight) and col2im (for dL/dx)
    assert sorted(name for name, _, _ in launches[before:]) == [f"col2im<{c_type}>"] + 2 * [f"im2col<{c_type}>"]
    assert y.data.flags.c_contiguous  # NCHW, copied once out of the channel-major GEMM


@only_on("emulated")
@pytest.mark.parametrize("needs", [(False, True, True), (True, False, False), (False, False, True)],
                         ids=["weight-and-bias", "input-only", "bias-only"])
def test_conv2d_kernel_backward_computes_only_the_gradients_asked_for(backend, needs):
    case = (2, 3, 4, 7, 6, (3, 3), 2, 1, True)
    (x, w, b), upstream, _, expected_grads = case_data(case)
    tensors = [backend.tensor(a, requires_grad=need) for a, need in zip((x, w, b), needs)]
    y = F.conv2d(*tensors, stride=2, padding=1)
    launches = launch_names(np.float64)
    before = len(launches)
    y.backward(upstream)
    names = [name for name, _, _ in launches[before:]]
    need_x, need_w, _ = needs
    assert names.count("col2im<double>") == int(need_x)   # dL/dx is the only user of col2im
    assert names.count("im2col<double>") == int(need_w)   # col is rebuilt only for dL/dweight
    for tensor, need, expected in zip(tensors, needs, expected_grads):
        if need:
            assert_close(tensor.grad, expected, np.float64, grad=True)
        else:
            assert tensor.grad is None


class RecordingArrayModule:
    """NumPy as minires.backends.cuda.conv sees it (through ``get_array_module``), recording what
    each matrix product is handed and every copy ``ascontiguousarray`` makes. It holds only weak
    references to arrays, so it can also tell when a col is freed."""

    def __init__(self, weight):
        self.w_mat = weight.reshape(weight.shape[0], -1)  # a view: the weight as (OC, C*kh*kw)
        self.cols = []          # weak references to every col im2col returned, in order
        self.copies = []        # weak references to what ascontiguousarray copied into
        self.copied_bytes = 0
        self.products = []      # (function, what a is, what b is, how many cols are alive)

    def __getattr__(self, name):
        return getattr(np, name)

    def what(self, operand):
        """"col0", "col1.T", "w_mat", "w_mat.T", "copy0" (an operand that IS that array seen as a
        matrix, or its transposed view), else "other <shape>". A copy of col shares no memory with
        col, so it is "other"."""
        known = [(f"col{k}", ref()) for k, ref in enumerate(self.cols)]
        known += [("w_mat", self.w_mat)] + [(f"copy{k}", ref()) for k, ref in enumerate(self.copies)]
        for name, array in known:
            if array is None or not np.shares_memory(operand, array):
                continue
            array = array.reshape(array.shape[0], -1)  # as a matrix, e.g. the gradient's copy as G2
            if operand.shape == array.shape and operand.strides == array.strides:
                return name
            if operand.shape == array.shape[::-1] and operand.strides == array.strides[::-1]:
                return name + ".T"
        return f"other {operand.shape}"

    def record(self, function, a, b):
        alive = sum(ref() is not None for ref in self.cols)
        self.products.append((function, a.ndim, b.ndim, self.what(a), self.what(b), alive))

    def matmul(self, a, b, **kwargs):
        self.record("matmul", a, b)
        return np.matmul(a, b, **kwargs)

    def tensordot(self, a, b, **kwargs):
        self.record("tensordot", a, b)
        return np.tensordot(a, b, **kwargs)

    def ascontiguousarray(self, a):
        result = np.ascontiguousarray(a)
        if not np.shares_memory(result, a):
            self.copies.append(weakref.ref(result))
            self.copied_bytes += result.nbytes
        return result


@only_on("emulated")
def test_conv2d_kernel_path_does_each_product_as_one_2d_gemm_and_never_copies_col(backend, monkeypatch):
    case = (2, 3, 4, 7, 6, (3, 3), 2, 1, True)
    (x, w, b), upstream, expected_y, expected_grads = case_data(case)
    tensors = [backend.tensor(a, requires_grad=True) for a in (x, w, b)]
    recorder = RecordingArrayModule(tensors[1].data)
    monkeypatch.setattr(conv_kernels, "get_array_module", lambda array: recorder)
    im2col = conv_kernels.im2col

    def recording_im2col(*args):
        col = im2col(*args)
        recorder.cols.append(weakref.ref(col))
        return col

    monkeypatch.setattr(conv_kernels, "im2col", recording_im2col)
    y = F.conv2d(*tensors, stride=2, padding=1)
    assert recorder.products == [("matmul", 2, 2, "w_mat", "col0", 1)]  # W_mat (OC, K) @ col, as itself
    assert recorder.copied_bytes == 0
    y.backward(upstream)
    assert recorder.products[1:] == [
        ("matmul", 2, 2, "copy0", "col1.T", 1),    # dW_mat = G2 @ col.T: the transposed view of col itself
        ("matmul", 2, 2, "w_mat.T", "copy0", 0),  # dcol = W_mat.T @ G2, once col is freed
    ]
    assert recorder.copied_bytes == upstream.nbytes  # the only copy: the gradient, into G2 (OC, N*OH*OW)
    assert_close(y, expected_y, np.float64)
    for tensor, expected in zip(tensors, expected_grads):
        assert_close(tensor.grad, expected, np.float64, grad=True)


@only_on("emulated")
def test_conv2d_kernel_path_reuses_its_cached_launch_geometry(backend):
    (x, w, _), upstream, _, _ = case_data(KERNEL_CASES[0])
    tx, tw = backend.tensor(x, requires_grad=True), backend.tensor(w, requires_grad=True)

    def step():
        F.conv2d(tx, tw, stride=1, padding=1).backward(upstream)

    step()
    before = conv_kernels.launch_geometry.cache_info()
    step()
    after = conv_kernels.launch_geometry.cache_info()
    assert after.misses == before.misses  # nothing worked out again
    assert after.hits == before.hits + 3  # forward im2col, backward im2col and col2im


# ---- optional oracle: PyTorch (NumPy path) -------------------------------------------------

@pytest.mark.parametrize("case", MORE_CASES, ids=case_id)
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    (x, w, b), upstream, _, _ = case_data(case)
    stride, padding = case[6:8]
    tx, tw = minires.tensor(x, requires_grad=True), minires.tensor(w, requires_grad=True)
    tb = None if b is None else minires.tensor(b, requires_grad=True)
    y = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    y.backward(upstream)

    px, pw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    pb = torch.tensor(b, requires_grad=True) if b is not None else None
    py = torch.nn.functional.conv2d(px, pw, pb, stride=stride, padding=padding)
    py.backward(torch.tensor(upstream))
    np.testing.assert_allclose(y.numpy(), py.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tx.grad, px.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tw.grad, pw.grad.numpy(), rtol=1e-10, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-10, atol=1e-12)
