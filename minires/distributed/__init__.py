"""Data-parallel training on several processes: MPI (mpi4py) between them, NCCL between GPUs.

    from minires import distributed
    distributed.init()                                  # world.py: rank, world size
    sampler = distributed.DistributedSampler(train_set)  # sampler.py: each rank its shard
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # optional: statistics over all ranks
    distributed.broadcast_parameters(model)             # data_parallel.py: start from rank 0's weights
    ... loss.backward(); distributed.average_gradients(model); optimizer.step()

``python -m minires train --distributed`` does all of this (minires/training/); launch it with
``mpiexec -n 2 python -m minires train --distributed``. The collectives are in collectives.py.
"""
from minires.distributed.collectives import all_gather, all_reduce_, backend_for, broadcast_
from minires.distributed.data_parallel import average_gradients, broadcast_buffers, broadcast_parameters
from minires.distributed.sampler import DistributedSampler
from minires.distributed.world import (
    barrier, broadcast_object, communicator, fail_together, init, is_main, launcher_rank, launcher_world_size, local_rank, local_size, rank, share_cores,
    world_size,
)

__all__ = [
    "init", "communicator", "rank", "world_size", "local_rank", "is_main", "barrier", "broadcast_object", "fail_together",
    "local_size", "launcher_world_size", "launcher_rank", "share_cores", "backend_for", "all_reduce_", "all_gather", "broadcast_", "broadcast_parameters",
    "broadcast_buffers", "average_gradients", "DistributedSampler",
]
