"""Collectives over every rank: all-reduce, all-gather and broadcast of arrays, in place.

The arrays of one call (a model's gradients, say) are copied into flat *buckets* of at most
``BUCKET_BYTES``, one per run of arrays of the same dtype, and each bucket is reduced by one
collective call: a ResNet-20's 65 gradients take one MPI call, not 65.

    bucket 0: [ grad conv1 | grad bn1.w | grad bn1.b | ... ]  --all-reduce-->  every rank's sum
    bucket 1: [ grad fc.w  | grad fc.b ]                      --all-reduce-->  ...

On the CPU the buckets go through MPI, non-blocking: bucket 1 is packed while bucket 0 is on
the wire. On a GPU they go through NCCL (``cupy.cuda.nccl``) straight from device memory,
queued on the current stream like a kernel; where CuPy has no NCCL, or two ranks share a GPU
(which NCCL refuses), through MPI with a copy to host memory and back, after a warning. In a
world of one every call returns at once.
"""
import warnings

import numpy

from minires.backends import cupy, get_array_module
from minires.distributed import world

BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's default bucket_cap_mb


def all_reduce_(arrays, op="sum"):
    """Replace each array by its sum (``op="mean"``: its mean) over the ranks, in place; returns
    ``arrays``. Every rank must pass arrays of the same shapes and dtypes, in the same order, all on
    one device (the CPU or this rank's GPU)."""
    if op not in ("sum", "mean"):
        raise ValueError(f"all_reduce_: op must be 'sum' or 'mean', got {op!r}")
    arrays = list(arrays)
    if op == "mean" and any(a.dtype.kind != "f" for a in arrays):
        raise TypeError("all_reduce_: op='mean' needs floating-point arrays; sum integers with op='sum'")
    if world.world_size() == 1 or not arrays:
        return arrays
    scale = 1.0 / world.world_size() if op == "mean" else None
    buckets = make_buckets(arrays, BUCKET_BYTES)
    if uses_nccl(arrays[0]):
        nccl_calls(buckets, "all_reduce")
    else:
        mpi_all_reduce(buckets)
    for bucket in buckets:
        bucket.unpack(scale)
    return arrays


def broadcast_(arrays, root=0):
    """Overwrite each array with rank ``root``'s, in place; returns ``arrays``."""
    arrays = list(arrays)
    if world.world_size() == 1 or not arrays:
        return arrays
    buckets = make_buckets(arrays, BUCKET_BYTES)
    if uses_nccl(arrays[0]):
        nccl_calls(buckets, "broadcast", root)
    else:
        comm = world.communicator()
        for bucket in buckets:
            bucket.pack()
            host = on_host(bucket.flat)
            comm.Bcast(host, root=root)
            if host is not bucket.flat:
                bucket.flat[...] = back_from_host(host, bucket.flat)
    for bucket in buckets:
        bucket.unpack()
    return arrays


def all_gather(array):
    """Every rank's ``array``, stacked: shape (world size, *array.shape), rank r's at [r]."""
    xp = get_array_module(array)
    array = xp.ascontiguousarray(array)
    gathered = xp.empty((world.world_size(),) + array.shape, array.dtype)
    if world.world_size() == 1:
        gathered[0] = array
    elif uses_nccl(array):
        stream = cupy.cuda.get_current_stream().ptr
        nccl_communicator().allGather(array.data.ptr, gathered.data.ptr, array.size, nccl_dtype(array.dtype),
                                      stream)
    else:
        host = numpy.empty(gathered.shape, array.dtype)
        world.communicator().Allgather(on_host(array), host)
        gathered[...] = back_from_host(host, gathered)
    return gathered


# ---- buckets -------------------------------------------------------------------------------------

class Bucket:
    """Arrays of one dtype and device, and one flat array that holds them end to end."""

    def __init__(self, arrays):
        self.arrays = arrays
        xp = get_array_module(arrays[0])
        self.flat = xp.empty(sum(a.size for a in arrays), arrays[0].dtype)

    def pack(self):
        xp = get_array_module(self.flat)
        xp.concatenate([a.ravel() for a in self.arrays], out=self.flat)

    def unpack(self, scale=None):
        if scale is not None:
            self.flat *= self.flat.dtype.type(scale)
        offset = 0
        for a in self.arrays:
            a[...] = self.flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size


def make_buckets(arrays, bucket_bytes):
    """Consecutive arrays of one dtype, cut into buckets of at most ``bucket_bytes`` (an array larger
    than that gets a bucket of its own)."""
    buckets, current, size = [], [], 0
    for a in arrays:
        if current and (a.dtype != current[0].dtype or type(a) is not type(current[0])
                        or size + a.nbytes > bucket_bytes):
            buckets.append(Bucket(current))
            current, size = [], 0
        current.append(a)
        size += a.nbytes
    if current:
        buckets.append(Bucket(current))
    return buckets


# ---- MPI --------------------------------------------------------------------------------------------

def mpi_all_reduce(buckets):
    """Sum every bucket over the ranks: start bucket i's all-reduce, pack bucket i+1 meanwhile."""
    from mpi4py import MPI

    comm, pending = world.communicator(), []
    for bucket in buckets:
        bucket.pack()
        host = on_host(bucket.flat)
        pending.append((bucket, host, comm.Iallreduce(MPI.IN_PLACE, host, op=MPI.SUM)))
    for bucket, host, request in pending:
        request.Wait()
        if host is not bucket.flat:
            bucket.flat[...] = back_from_host(host, bucket.flat)


def on_host(array):
    """``array`` itself if it is a NumPy array, else its copy in host memory (the MPI fallback)."""
    return array if isinstance(array, numpy.ndarray) else cupy.asnumpy(array)


def back_from_host(host, like):
    return host if isinstance(like, numpy.ndarray) else cupy.asarray(host)


# ---- NCCL (GPUs) ---------------------------------------------------------------------------------------

_nccl = {"communicator": None}


def backend_for(device):
    """Which engine the all-reduce of arrays on ``device`` uses: "mpi", "nccl" or "mpi via host"."""
    return "mpi" if device == "cpu" else ("nccl" if nccl_usable() else "mpi via host")


def nccl_usable():
    """CuPy has NCCL, and each rank of this machine has a GPU of its own (NCCL refuses two ranks
    on one GPU). Otherwise GPU arrays go through MPI via host memory, after a warning (once)."""
    if "usable" not in _nccl:
        from cupy.cuda import nccl

        gpus = cupy.cuda.runtime.getDeviceCount()
        why = (None if nccl.available and world.local_size() <= gpus else
               "CuPy has no NCCL here" if not nccl.available else
               f"{world.local_size()} ranks share this machine's {gpus} GPU{'s' if gpus > 1 else ''}")
        if why:
            warnings.warn(f"{why}: the all-reduce of GPU arrays goes through MPI, with a copy to host memory "
                          "and back each time", RuntimeWarning)
        _nccl["usable"] = why is None
    return _nccl["usable"]


def uses_nccl(array):
    """Whether collectives on ``array`` go through NCCL: a CuPy array, and ``nccl_usable()``."""
    return cupy is not None and not isinstance(array, numpy.ndarray) and nccl_usable()


def nccl_communicator():
    """One NCCL communicator over every rank, made on first use: rank 0 makes NCCL's unique id
    and MPI broadcasts it. Each rank must have chosen its GPU (``cupy.cuda.Device(i).use()``) first."""
    if _nccl["communicator"] is None:
        from cupy.cuda import nccl

        unique_id = world.broadcast_object(nccl.get_unique_id() if world.is_main() else None)
        _nccl["communicator"] = nccl.NcclCommunicator(world.world_size(), unique_id, world.rank())
    return _nccl["communicator"]


def nccl_dtype(dtype):
    from cupy.cuda import nccl

    types = {numpy.dtype(numpy.float16): nccl.NCCL_FLOAT16, numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
             numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64, numpy.dtype(numpy.int64): nccl.NCCL_INT64,
             numpy.dtype(numpy.int32): nccl.NCCL_INT32}
    if numpy.dtype(dtype) not in types:
        raise TypeError(f"NCCL collectives take float16/32/64 or int32/64 arrays, got {dtype}")
    return types[numpy.dtype(dtype)]


def nccl_calls(buckets, what, root=0):
    """One NCCL call per bucket, grouped so that NCCL launches them together, on the current stream."""
    from cupy.cuda import nccl

    communicator, stream = nccl_communicator(), cupy.cuda.get_current_stream().ptr
    for bucket in buckets:
        bucket.pack()
    nccl.groupStart()
    for bucket in buckets:
        flat = bucket.flat
        if what == "all_reduce":
            communicator.allReduce(flat.data.ptr, flat.data.ptr, flat.size, nccl_dtype(flat.dtype), nccl.NCCL_SUM,
                                   stream)
        else:
            communicator.bcast(flat.data.ptr, flat.size, nccl_dtype(flat.dtype), root, stream)
    nccl.groupEnd()
