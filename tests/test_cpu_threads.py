"""The CPU convolution's slabs on every core (minires/backends/cpu_threads.py): the same answer with any
number of threads, the shares cover every slab once, BLAS gets its thread count back, and a forked
child process makes its own pool."""
import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import minires
import minires.functional as F
from minires.backends import cpu_threads
from minires.ops import conv


def blas_threads():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def threads(monkeypatch):
    """Set how many threads share the slabs (a pool of that size, made for this test)."""
    pools = []

    def use(count):
        cpu_threads._pool()  # the BLAS libraries, found once
        pool = ThreadPoolExecutor(count) if count > 1 else None
        pools.append(pool)
        monkeypatch.setitem(cpu_threads._state, "pool", pool)
        monkeypatch.setitem(cpu_threads._state, "threads", count)

    yield use
    for pool in pools:
        if pool is not None:
            pool.shutdown()


@pytest.mark.parametrize("count", [2, 3, 7])
def test_every_slab_is_worked_on_once_in_order_of_the_shares(threads, count):
    threads(count)
    slabs = [(i, i + 1) for i in range(5)]
    shares = cpu_threads.run_on_every_core(lambda share: share, slabs)
    assert [slab for share in shares for slab in share] == slabs
    assert len(shares) == min(count, len(slabs))


def run_conv(padding, stride, monkeypatch):
    monkeypatch.setattr(conv, "SLAB_BYTES", 1)  # one image per slab: seven slabs to share
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((7, 3, 6, 5)), requires_grad=True)
    w = minires.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, stride=stride, padding=padding)
    y.backward(rng.standard_normal(y.shape))
    return y.numpy(), x.grad.numpy(), w.grad.numpy()


@pytest.mark.parametrize("padding, stride", [(1, 1), (0, 1), (1, 2)])
def test_the_convolution_is_the_same_with_one_two_or_three_threads(threads, monkeypatch, padding, stride):
    results = []
    for count in (1, 2, 3):
        threads(count)
        results.append(run_conv(padding, stride, monkeypatch))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_blas_gets_its_thread_count_back_after_a_convolution(threads, monkeypatch):
    threads(2)
    before = blas_threads()
    run_conv(1, 1, monkeypatch)
    assert blas_threads() == before


def test_the_number_of_threads_is_the_blas_librarys():
    assert cpu_threads.slab_threads() == max(blas_threads() or [1])


def convolve_in_child(queue):
    x = minires.tensor(np.ones((4, 2, 5, 5)))
    queue.put(float(F.conv2d(x, minires.tensor(np.ones((1, 2, 3, 3))), padding=1).sum()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_makes_its_own_pool_and_convolves():
    cpu_threads._pool()  # this process has a pool (with threads) before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=convolve_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    # per image and channel: each output counts the window's pixels inside the 5x5 image, which
    # factors into rows (2 + 3 + 3 + 3 + 2 over the five output rows) times columns (the same)
    assert queue.get(timeout=5) == 4 * 2 * 13 ** 2


def test_the_callers_errstate_holds_in_the_threads(threads):
    threads(2)
    slabs = [(0, 1), (1, 2)]
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            cpu_threads.run_on_every_core(lambda share: np.float32(3e38) * np.float32(10), slabs)
    with np.errstate(over="ignore"):
        assert cpu_threads.run_on_every_core(lambda share: np.float32(3e38) * np.float32(10), slabs) == [np.inf] * 2


def test_blas_is_on_one_thread_inside_nested_blocks_and_back_after_the_outermost(threads):
    threads(2)
    before = blas_threads()
    with cpu_threads.single_threaded_blas():
        assert blas_threads() == [1] * len(before)
        with cpu_threads.single_threaded_blas():
            assert blas_threads() == [1] * len(before)
        assert blas_threads() == [1] * len(before)  # the inner block did not give the threads back
    assert blas_threads() == before


@pytest.mark.parametrize("layout", ["alike", "unlike"])
def test_elementwise_pieces_cover_every_element_once(threads, monkeypatch, layout):
    threads(2)
    monkeypatch.setattr(cpu_threads, "PIECE_BYTES", 8 * 7)  # pieces of 7 float64s: a ragged last one
    rng = np.random.default_rng(1)
    a = np.ascontiguousarray(rng.standard_normal((3, 2, 5, 4)).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    b = rng.standard_normal(a.shape) if layout == "unlike" else a * 2
    out = np.empty_like(a)
    calls = cpu_threads.elementwise_on_every_core(lambda o, x, y: np.add(x, y, out=o).size, out, a, b)
    np.testing.assert_array_equal(out, a + b)
    assert sum(calls) == a.size
    assert len(calls) == (1 if layout == "unlike" else -(-a.size // 7))  # unlike layouts: one whole call


@pytest.mark.parametrize("case", ["channel-major", "unlike layouts", "broadcast", "small", "mixed dtypes"])
def test_add_is_numpys_plus_and_keeps_the_layout(threads, monkeypatch, case):
    """cpu_threads.add (residual additions, gradient sums) splits alike arrays into pieces and
    gives everything else to NumPy's +: the same values, dtype and layout either way."""
    threads(2)
    monkeypatch.setattr(cpu_threads, "PIECE_BYTES", 8 * 7)  # many pieces, a ragged last one
    rng = np.random.default_rng(2)
    a = np.ascontiguousarray(rng.standard_normal((3, 4, 5, 6)).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    b = {"channel-major": a * 3 - 1,
         "unlike layouts": rng.standard_normal(a.shape),
         "broadcast": rng.standard_normal((1, 4, 1, 1)),
         "small": None,
         "mixed dtypes": (a * 3).astype(np.float32)}[case]
    if case == "small":
        monkeypatch.setattr(cpu_threads, "PIECE_BYTES", 2**20)
        b = a * 3 - 1
    pieces = []
    original = cpu_threads.elementwise_on_every_core
    monkeypatch.setattr(cpu_threads, "elementwise_on_every_core",
                        lambda *args: pieces.append(1) or original(*args))
    result = cpu_threads.add(a, b)
    expected = a + b
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == expected.dtype and result.strides == expected.strides
    assert bool(pieces) == (case == "channel-major")  # only alike, large arrays go to the cores
