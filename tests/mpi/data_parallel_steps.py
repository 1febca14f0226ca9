"""A few data-parallel SGD steps of the MNIST ResNet in float64; rank 0 saves the model to OUT.

    mpiexec -n 2 python data_parallel_steps.py --batch 32 --sync-bn OUT   # 2 ranks x 32
    python data_parallel_steps.py --batch 64 OUT                          # 1 process x 64
    python data_parallel_steps.py --batch 32 --accumulate 2 OUT           # 1 process, 2 x 32 accumulated

The ranks' shards come from DistributedSampler, so step s of 2 ranks x 32 uses the same 64
images as step s of 1 x 64. ``--accumulate K`` (one process) is what K ranks *without* SyncBN
compute: each of the K rank-batches normalised by its own statistics, the K gradients averaged.
"""
import argparse

import numpy

import minires
from minires import data, distributed, nn, optim
from minires.models import build_model
from minires.training.loop import train_steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--accumulate", type=int, default=1)
    args = parser.parse_args()
    distributed.init()
    minires.manual_seed(0)
    full = data.MNISTSample(train=True)
    train_set = data.ArrayDataset(full.images[:1024], full.labels[:1024], full.classes)
    model = build_model("mnist_resnet", 1, 10).double()
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    distributed.broadcast_parameters(model)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    as_float64 = lambda images: model(minires.tensor(images.data.astype(numpy.float64)))  # noqa: E731
    if args.accumulate == 1:
        loader = data.DataLoader(train_set, args.batch, sampler=distributed.DistributedSampler(train_set, seed=3),
                                 prefetch=0)
        train_steps(model, loader, optimizer, args.steps, forward=as_float64,
                    before_step=lambda: distributed.average_gradients(model))
    else:
        accumulate_like_ranks(model, optimizer, train_set, args)
    if distributed.is_main():
        minires.save(model.state_dict(), args.out)


def accumulate_like_ranks(model, optimizer, train_set, args):
    """One process doing what ``args.accumulate`` ranks without SyncBN do, step by step."""
    import minires.functional as F

    k = args.accumulate
    loaders = [iter(data.DataLoader(train_set, args.batch, prefetch=0,
                                    sampler=distributed.DistributedSampler(train_set, k, r, seed=3)))
               for r in range(k)]
    model.train()
    for _ in range(args.steps):
        optimizer.zero_grad()
        for loader in loaders:
            images, labels = next(loader)
            loss = F.cross_entropy(model(minires.tensor(images.astype(numpy.float64))), labels)
            (loss * (1.0 / k)).backward()
        optimizer.step()


if __name__ == "__main__":
    main()
