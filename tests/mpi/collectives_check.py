"""Run with mpiexec -n 2: the collectives and the data shards on real ranks. Prints one JSON line.

Buckets are made tiny (100 bytes) so that one call spans several buckets and dtypes.
``--device cuda``: the arrays are CuPy arrays on GPU (local rank), reduced through NCCL with a
GPU per rank, else through MPI via host memory.
"""
import json
import sys

import numpy

from minires import data, distributed
from minires.distributed import collectives


def main(device):
    rank, ranks = distributed.init()
    collectives.BUCKET_BYTES = 100
    xp = numpy
    if device == "cuda":
        import cupy as xp

        xp.cuda.Device(distributed.local_rank() % xp.cuda.runtime.getDeviceCount()).use()
    arrays = [numpy.full((3, 4), rank + 1.0, numpy.float32), numpy.arange(30, dtype=numpy.float64) * (rank + 1),
              numpy.array(rank + 5, numpy.int64), numpy.full(7, rank, numpy.float32)[::2]]
    arrays = [xp.asarray(a) if a.ndim else xp.array(a) for a in arrays]
    summed = [a.copy() for a in distributed.all_reduce_([a.copy() for a in arrays])]
    means = distributed.all_reduce_([a.copy() for a in arrays if a.dtype.kind == "f"], op="mean")
    broadcast = distributed.broadcast_([xp.full(5, float(rank)), xp.array(rank, numpy.int64)], root=1)
    gathered = distributed.all_gather(xp.asarray([rank, 10 * rank], numpy.float32))
    host = lambda a: a.tolist() if xp is numpy else a.get().tolist()  # noqa: E731
    dataset = data.ArrayDataset(numpy.zeros((101, 1, 1, 1), numpy.float32), numpy.arange(101), ["x"])
    loader = data.DataLoader(dataset, 8, sampler=distributed.DistributedSampler(dataset, seed=2), prefetch=0)
    seen = numpy.concatenate([labels for _, labels in loader])
    shards = distributed.communicator().gather(seen.tolist(), root=0)
    name = distributed.broadcast_object(f"chosen by rank {rank}")
    distributed.barrier()
    if distributed.is_main():
        print(json.dumps({
            "ranks": ranks, "buckets": len(collectives.make_buckets(arrays, collectives.BUCKET_BYTES)),
            "summed": [host(a) for a in summed], "means": [host(a) for a in means],
            "broadcast": [host(b) for b in broadcast], "gathered": host(gathered), "shards": shards,
            "name": name, "engine": distributed.backend_for(device)}))


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu")
