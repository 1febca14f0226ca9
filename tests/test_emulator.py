"""The kernel emulator itself (minires.backends.emulator), and the seam it plugs into.

The harness is how kernel changes are tested without a GPU, so it must itself be
able to fail: wrong argument types, out-of-bounds writes, and a block that does
not meet at __syncthreads must all be caught or make a difference.
"""
import numpy
import pytest

import minires
import minires.functional as F
from minires.backends.emulator import EmulatedModule, emulate_kernels
from minires.backends.emulator.module import compiler

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the CUDA emulation harness")

BLOCK_SUM = r"""
// Sum of each block's 256 values by a tree in shared memory.
template <typename T>
__global__ void block_sum(const T* x, T* sums, int n) {
    __shared__ T partial[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : T(0);
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}

template <typename T>
__global__ void write_one_past_the_end(T* y, int n) {
    if (blockIdx.x == 0 && threadIdx.x == 0) y[n] = T(1);
}
"""


@pytest.fixture(scope="module")
def module():
    return EmulatedModule(code=BLOCK_SUM, name_expressions=["block_sum<double>", "write_one_past_the_end<float>"])


def test_shared_memory_and_syncthreads_give_a_correct_block_reduction(module):
    x = numpy.random.default_rng(0).standard_normal(1000)
    sums = numpy.full(4, numpy.nan)
    module.get_function("block_sum<double>")((4,), (256,), (x, sums, numpy.int32(x.size)))
    expected = numpy.pad(x, (0, 24)).reshape(4, 256).sum(axis=1)
    numpy.testing.assert_allclose(sums, expected, rtol=1e-12)


def test_untyped_scalars_and_wrong_dtypes_are_refused(module):
    kernel = module.get_function("block_sum<double>")
    x, sums = numpy.zeros(8), numpy.zeros(1)
    with pytest.raises(TypeError, match="untyped scalar"):
        kernel((1,), (256,), (x, sums, 8))
    with pytest.raises(TypeError, match="should be int, got long long"):
        kernel((1,), (256,), (x, sums, numpy.int64(8)))
    with pytest.raises(TypeError, match="should be double\\*, got float\\*"):
        kernel((1,), (256,), (x.astype(numpy.float32), sums, numpy.int32(8)))
    with pytest.raises(TypeError, match="not C-contiguous"):
        kernel((1,), (256,), (numpy.zeros((4, 4))[:, ::2], sums, numpy.int32(8)))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        kernel((1,), (256,), (x, sums))


def test_a_write_past_the_end_of_an_array_is_reported(module):
    y = numpy.zeros(10, dtype=numpy.float32)
    with pytest.raises(RuntimeError, match="wrote outside an array of shape \\(10,\\)"):
        module.get_function("write_one_past_the_end<float>")((1,), (32,), (y, numpy.int32(10)))


def test_unknown_kernel_names_are_refused(module):
    with pytest.raises(KeyError, match="name_expressions"):
        module.get_function("block_sum<float>")


# ---- the seam: an op remembers the path its forward took --------------------------------------
CROSS_PATH_OPS = {
    "relu": (lambda x: F.relu(x), (2, 3, 4, 4)),
    "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True), (2, 3, 4, 4)),
    "conv2d": (lambda x: F.conv2d(x, minires.tensor(numpy.ones((2, 3, 3, 3))), padding=1), (2, 3, 4, 4)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), (2, 3, 4, 4)),
    "cross_entropy": (lambda x: F.cross_entropy(x, numpy.array([0, 2])), (2, 3)),
}


@pytest.mark.parametrize("op", sorted(CROSS_PATH_OPS))
@pytest.mark.parametrize("forward_emulated", [True, False], ids=["kernel-then-numpy", "numpy-then-kernel"])
def test_backward_on_the_other_path_than_forward_is_a_clear_error(op, forward_emulated):
    fn, shape = CROSS_PATH_OPS[op]
    x = minires.tensor(numpy.random.default_rng(0).standard_normal(shape), requires_grad=True)
    with emulate_kernels(enabled=forward_emulated):
        loss = fn(x).sum()
    with emulate_kernels(enabled=not forward_emulated):
        with pytest.raises(RuntimeError, match="forward ran on the .* path but backward got a gradient for the"):
            loss.backward()


def test_emulate_kernels_without_a_compiler_says_so(monkeypatch):
    import minires.backends.emulator as emulator

    monkeypatch.setattr(emulator, "compiler", lambda: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        with emulate_kernels():
            pass


def test_emulate_kernels_records_launches_when_asked():
    launches = []
    x = numpy.random.default_rng(0).standard_normal((4, 1000)).astype(numpy.float32)
    with emulate_kernels(launches=launches):
        y = F.relu(minires.tensor(x)).numpy()
    numpy.testing.assert_array_equal(y, numpy.maximum(x, 0))
    assert launches == [("relu_forward<float>", (16, 1, 1), (256, 1, 1))]
