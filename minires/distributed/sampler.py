"""DistributedSampler: each rank its own part of the data set, a different part every epoch.

As PyTorch's ``torch.utils.data.distributed.DistributedSampler``. Every rank draws the same
permutation of the N indices (seeded by ``[seed, epoch]``, the order ``DataLoader`` itself uses
with ``shuffle=True``), makes it a multiple of the world size k, and takes every k-th entry
from its rank on:

    permutation  p0 p1 p2 p3 p4 p5 p6 p7 ...
    rank 0       p0    p2    p4    p6    ...
    rank 1          p1    p3    p5    p7 ...

So the shards are disjoint and together hold the permutation; and with batch B per rank, the
k batches of step s together are images p[kBs] .. p[kB(s+1) - 1], the batch of one process
with batch kB: k ranks x batch B train on the same data as 1 process x batch kB.

drop_last=False (the default) pads the permutation with its own first entries up to the next
multiple of k, so a few images are seen twice an epoch; drop_last=True cuts it down to the
multiple below, so a few are not seen this epoch. Either way every rank has the same number
of indices, hence the same number of batches, and no rank waits in an all-reduce for a batch
that never comes. ``pad=False`` (not in PyTorch) does neither: shards of unequal length that
hold each index exactly once, for evaluation, which runs no collective per batch.
"""
import math

import numpy

from minires.distributed import world


class DistributedSampler:
    """The indices of rank ``rank``'s shard of ``dataset`` (anything with a length) for an epoch.

    ``DataLoader(dataset, sampler=DistributedSampler(dataset))`` batches them; the loader sets
    the sampler's epoch as it starts each pass (PyTorch users call ``sampler.set_epoch``).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False, pad=True):
        self.num_replicas = world.world_size() if num_replicas is None else int(num_replicas)
        self.rank = world.rank() if rank is None else int(rank)
        if self.num_replicas < 1 or not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"DistributedSampler: rank {self.rank} is not in [0, num_replicas={self.num_replicas})")
        self.dataset_size = len(dataset)
        self.shuffle, self.seed, self.drop_last, self.pad = shuffle, int(seed), drop_last, pad
        if drop_last and self.dataset_size < self.num_replicas:
            raise ValueError(f"DistributedSampler: {self.dataset_size} samples cannot give each of "
                             f"{self.num_replicas} ranks one with drop_last=True")
        self.epoch = 0

    def total_size(self):
        """How many indices all ranks take together in an epoch."""
        n, k = self.dataset_size, self.num_replicas
        if not self.pad:
            return n
        return (n // k) * k if self.drop_last else math.ceil(n / k) * k

    def __len__(self):
        """This rank's number of indices per epoch."""
        return len(range(self.rank, self.total_size(), self.num_replicas))

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as a NumPy array."""
        n = self.dataset_size
        order = numpy.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else numpy.arange(n)
        total = self.total_size()
        if total > n:  # pad by repeating the start (more than once when k > n)
            order = numpy.resize(order, total)
        return order[self.rank:total:self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())
