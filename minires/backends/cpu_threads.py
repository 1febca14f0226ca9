"""How the NumPy path uses the cores: BLAS on one thread, and our own threads over slabs.

Slabs on every core: one thread per core, each building its own col and multiplying it alone.

A convolution's slab (minires/ops/conv.py) is two steps: copy the slab's images into col
(NumPy, one core), then ``W_mat @ col`` (BLAS, every core). The second core then reads a
col that sits in the first core's cache, and waits while the copies run. Splitting the
*slabs* between the cores instead (thread t takes every slab of its share of the batch,
copies and multiplies them, with BLAS limited to one thread meanwhile) keeps each col in
the cache of the core that made it, and both cores busy all the time:

    one thread, BLAS on 2 cores:   core 0: copy GEMM copy GEMM copy GEMM ...
                                   core 1: .... GEMM .... GEMM .... GEMM ...
    two threads, BLAS on 1 core:   core 0: copy GEMM copy GEMM ...   (slabs 0 .. k-1)
                                   core 1: copy GEMM copy GEMM ...   (slabs k .. end)

Measured on 2 cores: stride-1 convolutions 1.4-1.8x faster. NumPy releases Python's GIL inside
copies and matrix products, so plain threads run in parallel. threadpoolctl sets the BLAS
library's thread count (OpenBLAS, MKL or BLIS, whichever NumPy uses) and puts it back.
The number of threads is the BLAS library's own (``OMP_NUM_THREADS`` and friends set it),
so minires never uses more cores than NumPy would.

BLAS on one thread, everywhere in an op. A multi-threaded BLAS call (a batch norm sum, a
strided convolution) leaves the BLAS library's helper threads spinning for a while in case
more work comes, on the cores the slab threads then need: measured, that made a whole
ResNet-20 step *slower* than without slab threads. So every op on the NumPy path runs with
BLAS limited to one thread (``single_threaded_blas``, entered by ``Function.threads()`` around
each forward and each backward), and only our threads run in parallel. Outside minires's ops,
NumPy's BLAS keeps all its threads.

The same threads share other work in pieces: batch norm's blocks of channels, and
elementwise ops (``elementwise_on_every_core``, used by ReLU). Each thread keeps its scratch
arrays from call to call (``scratch``).
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy
from threadpoolctl import ThreadpoolController

_state = {"pid": None}  # the pool of this process (a forked child makes its own)
_scratch = threading.local()  # each thread's scratch arrays, by name


def _pool():
    """(thread pool or None, number of threads), made once per process, with the BLAS libraries."""
    if _state["pid"] != os.getpid():
        controller = ThreadpoolController()
        blas = controller.select(user_api="blas")
        threads = max([info["num_threads"] for info in blas.info()] or [1])
        pool = ThreadPoolExecutor(threads, thread_name_prefix="minires-slabs") if threads > 1 else None
        _state.update(pid=os.getpid(), blas=blas.lib_controllers, pool=pool, threads=threads)
    return _state["pool"], _state["threads"]


def slab_threads():
    """How many threads share the slabs: the BLAS library's thread count."""
    return _pool()[1]


def single_threaded_blas():
    """A context in which NumPy's BLAS uses one thread (nothing to do when it has only one)."""
    pool, _ = _pool()
    return _ONE_BLAS_THREAD if pool is not None else contextlib.nullcontext()


class OneBLASThread:
    """BLAS on one thread inside, back to its own count after the outermost ``with`` (an op's
    forward runs the slab threads inside its own ``with``). Two ctypes calls per op, a few
    microseconds: threadpoolctl's own ``limit`` re-reads every library each time. The count
    of open ``with`` blocks is shared by the whole process (so is BLAS's thread count), so a
    lock guards it when ops run in several threads at once."""

    def __init__(self):
        self.depth, self.lock = 0, threading.Lock()

    def __enter__(self):
        with self.lock:
            if self.depth == 0:
                self.saved = [(library, library.get_num_threads()) for library in _state["blas"]]
                for library, _ in self.saved:
                    library.set_num_threads(1)
            self.depth += 1

    def __exit__(self, *exception):
        with self.lock:
            self.depth -= 1
            if self.depth == 0:
                for library, threads in self.saved:
                    library.set_num_threads(threads)


_ONE_BLAS_THREAD = OneBLASThread()


def run_on_every_core(work, slabs):
    """Split ``slabs`` into one contiguous share per thread and return [work(share) for each share].

    ``work`` gets a list of (start, stop) slabs and must write only its own slabs' outputs
    (or return what it summed, for the caller to add up in order: the same threads always
    get the same shares, so results do not depend on timing).
    """
    pool, threads = _pool()
    shares = [slabs[len(slabs) * t // threads:len(slabs) * (t + 1) // threads] for t in range(threads)]
    shares = [share for share in shares if share]
    if pool is None or len(shares) == 1:
        return [work(share) for share in shares]
    errors = numpy.geterr()  # the caller's numpy.errstate holds in the threads too

    def work_as_the_caller(share):
        with numpy.errstate(**errors):
            return work(share)

    with single_threaded_blas():  # already so inside an op; here for direct calls
        return list(pool.map(work_as_the_caller, shares))


def scratch(name, shape, dtype, zero=False):
    """An array of ``shape`` for this thread's slabs, reused from call to call (``zero``: zeroed).

    Fresh arrays of a few MB for every convolution would come from new pages of memory each
    time (the allocator gives large blocks back to the system when they are freed), and
    every first touch of a page costs a page fault. So each thread keeps one array per
    name, as large as the largest asked for so far, and hands out views of its front.
    """
    arrays = _scratch.__dict__.setdefault("arrays", {})
    size = int(numpy.prod(shape))
    key = (name, numpy.dtype(dtype))
    if key not in arrays or arrays[key].size < size:
        arrays[key] = numpy.empty(size, dtype=dtype)
    array = arrays[key][:size].reshape(shape)
    if zero:
        array.fill(0)
    return array


PIECE_BYTES = 256 * 2**10  # elementwise work: pieces that stay in cache between the passes over them


def elementwise_on_every_core(work, out, *inputs):
    """Run ``work(out_piece, *input_pieces)`` over pieces of the flat memory of arrays laid out
    alike (same shape and strides, dense), the pieces shared between the cores; returns the
    list of what the calls returned. Arrays laid out differently are passed whole."""
    arrays = (out,) + inputs
    if not all(a.shape == out.shape and a.strides == out.strides for a in arrays):
        return [work(out, *inputs)]
    flats = [a.ravel(order="K") for a in arrays]  # views when out is dense (and so, alike, the rest)
    if not all(numpy.shares_memory(f, a) for f, a in zip(flats, arrays)):
        return [work(out, *inputs)]
    step = max(1, PIECE_BYTES // out.itemsize)
    pieces = [(start, min(start + step, out.size)) for start in range(0, out.size, step)]

    def run(share):
        return [work(*(flat[start:stop] for flat in flats)) for start, stop in share]

    return [result for share in run_on_every_core(run, pieces) for result in share]


def add(a, b):
    """a + b, as a new array. Two large NumPy arrays of one shape, dtype and layout (a residual
    addition, or the two gradients of a tensor used twice) are added in pieces on every core;
    anything else (broadcasting, another backend's arrays, small arrays) by NumPy's ``+``."""
    alike = (type(a) is numpy.ndarray and type(b) is numpy.ndarray and a.dtype == b.dtype
             and a.shape == b.shape and a.strides == b.strides)
    if not alike or a.nbytes < 2 * PIECE_BYTES:
        return a + b
    out = numpy.empty_like(a)  # a's layout
    elementwise_on_every_core(lambda out_piece, a_piece, b_piece: numpy.add(a_piece, b_piece, out=out_piece), out, a, b)
    return out
