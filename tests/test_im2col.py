"""im2col itself: the layout it promises, and that it copies the input only once."""
import tracemalloc

import numpy as np
import pytest

from minires.ops.im2col import col2im, conv_output_size, im2col


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_col_entries_follow_the_formula(stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    kh, kw = 3, 2
    col = im2col(x, (kh, kw), (stride, stride), (padding, padding))
    OH, OW = conv_output_size(7, kh, stride, padding), conv_output_size(6, kw, stride, padding)
    assert col.shape == (3 * kh * kw, 2 * OH * OW)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for c in range(3):
        for i in range(kh):
            for j in range(kw):
                for n in range(2):
                    for oh in range(OH):
                        for ow in range(OW):
                            expected = padded[n, c, oh * stride + i, ow * stride + j]
                            assert col[(c * kh + i) * kw + j, (n * OH + oh) * OW + ow] == expected


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)])
def test_col2im_is_the_adjoint_of_im2col(stride, padding):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the adjoint,
    # and exactly what makes col2im the right backward for im2col.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5))
    col = im2col(x, (3, 3), (stride, stride), (padding, padding))
    c = rng.standard_normal(col.shape)
    back = col2im(c, x.shape, (3, 3), (stride, stride), (padding, padding))
    assert back.shape == x.shape
    assert np.isclose((col * c).sum(), (x * back).sum(), rtol=1e-12)


@pytest.mark.parametrize("padding", [0, 1])
def test_im2col_allocates_only_the_col_matrix(padding):
    # "im2col must not copy more than once": no padded copy of the input and no
    # intermediate copy of col, so the peak allocation is col itself.
    x = np.random.default_rng(2).standard_normal((16, 8, 16, 16)).astype(np.float32)
    tracemalloc.start()
    tracemalloc.reset_peak()
    col = im2col(x, (3, 3), (1, 1), (padding, padding))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < col.nbytes * 1.02 + 64 * 1024, f"peak {peak} bytes for a col of {col.nbytes} bytes"


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (2, 0)])
def test_conv_gives_the_same_result_in_any_number_of_slabs(monkeypatch, stride, padding):
    # conv2d processes the batch in cache-sized slabs of images; the split must not matter.
    import minires
    import minires.functional as F
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
