# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 12. Training on several processes
#
# One process trains on one batch at a time. With $k$ processes we can train on $k$ batches at a
# time, and the usual way to do it is **data parallelism**: every process holds the *whole* model,
# each takes its own shard of the batch, and after backward the processes average their gradients,
# so that every one of them takes the *same* step and the $k$ copies of the weights stay identical.
# Goyal et al. (2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour") trained ResNet-50
# this way on 256 GPUs with a batch of 8192 and the accuracy of batch 256; Akiba et al. (2017,
# ChainerMN) went to 1024 GPUs. Horovod, ChainerMN and PyTorch's `DistributedDataParallel` all do
# the same three things: start every process from the same weights, give each its shard of the
# data, and average the gradients with an **all-reduce** after backward.
#
# The processes are started by an **MPI** launcher: `mpiexec -n 4 python train.py` runs four
# copies of the same program. Each copy asks MPI which one it is, its **rank** $0 \ldots k-1$ among
# the $k$ = **world size** processes; rank 0 is the one that prints and writes files.
#
# ```
#                rank 0               rank 1              ...   rank k-1
#  weights       w                    w                         w            same: broadcast once at the start
#  data          its shard            its shard                 its shard    DistributedSampler
#  backward      g_0                  g_1                       g_(k-1)      each its own gradient
#  all-reduce    g = (g_0 + g_1 + ... + g_(k-1)) / k, on every rank         average_gradients
#  step          w - lr g             w - lr g                  w - lr g     the same step: w stays equal
# ```
#
# In this tutorial we
#
# 1. meet `minires.distributed` in a world of one process;
# 2. simulate $k$ ranks inside this one process (no MPI needed): their shards of the data, their
#    gradients, and why the average is exactly one process's gradient on $k$ times the batch, unless
#    there is batch norm, and what synchronized batch norm does about it;
# 3. scale the learning rate with the batch (Goyal et al.'s linear scaling rule and warm-up);
# 4. model the cost of the all-reduce, and see when it eats the speed-up;
# 5. if MPI is installed, train on two real processes and compare with one.

# %%
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np

import minires
import minires.functional as F
from minires import distributed, nn, optim
from minires.data import DataLoader, MNISTSample, Normalize, mean_std, take_fraction
from minires.distributed import collectives
from minires.models import mnist_resnet, resnet20, resnet50
from minires.ops.sync_batch_norm import combined_statistics
from minires.serialization import load_checkpoint
from minires.training import train_steps
from minires.training.data_parallel import scaled_recipe
from minires.training.training_run import make_scheduler

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
K = 4                          # simulated ranks in section 2
B = 16                         # images per rank and step: one process would take K * B = 64
WIDTH = 4 if SMOKE else 8      # channels of the first stage of the small ResNet of section 2
STEPS_COMPARED = (1,) if SMOKE else (1, 4, 12)   # section 5: training steps of the real two-process runs
np.set_printoptions(precision=4, suppress=True)
print(f"{K} simulated ranks x batch {B} | width {WIDTH} | real runs of {STEPS_COMPARED} steps",
      "| smoke test" if SMOKE else "")

train_set = MNISTSample(train=True)
normalize = Normalize(*mean_std(train_set))
print(len(train_set), "training images")

# %% [markdown]
# ## 1. A world of one process
#
# `minires.distributed` is four short files (read them: `minires/distributed/`). `world.py` knows
# the rank and the world size; `init()` joins MPI's world through mpi4py. Without `init()` (or
# without MPI) a process is rank 0 of a world of 1, and every collective of `collectives.py` returns
# its input: `all_reduce_` (the sum, or the mean, over the ranks, in place), `broadcast_` (rank 0's
# arrays to everyone) and `all_gather` (every rank's array, stacked). So the same training script
# runs on one process or on a hundred.

# %%
g = np.array([1.0, 2.0, 3.0])
reduced = distributed.all_reduce_([g], op="mean")
print(f"this process is rank {distributed.rank()} of {distributed.world_size()}; the main one: "
      f"{distributed.is_main()}")
print("all_reduce_ in a world of one hands back its input:", reduced[0] is g, g,
      "| all_gather stacks one row:", distributed.all_gather(g).shape)

# %% [markdown]
# ## 2. k ranks, simulated in one process
#
# ### Each rank its shard
#
# `DistributedSampler(dataset, num_replicas, rank)` gives rank `rank` its indices. Every rank draws
# the same seeded permutation of the $N$ indices (the one `DataLoader(shuffle=True)` would use for
# the epoch), pads it to a multiple of $k$ by repeating its start, and takes every $k$-th entry from
# position `rank` on. Inside a real run the sampler finds `num_replicas` and `rank` itself; here we
# pass them, to build every rank's shard in one process. First ten images, four ranks:

# %%
N_SMALL, K_SMALL = 10, 4
small = range(N_SMALL)            # a sampler needs only the length of the data set
for r in range(K_SMALL):
    padded = distributed.DistributedSampler(small, K_SMALL, r, seed=0).indices()
    dropped = distributed.DistributedSampler(small, K_SMALL, r, seed=0, drop_last=True).indices()
    exact = distributed.DistributedSampler(small, K_SMALL, r, seed=0, pad=False).indices()
    print(f"rank {r}: padded {padded}, drop_last {dropped}, pad=False {exact}")
print("the permutation:", np.random.default_rng([0, 0]).permutation(N_SMALL))

# %% [markdown]
# Ten indices do not split into four equal shards. By default the sampler pads the permutation
# with its first two entries (two images are seen twice this epoch); `drop_last=True` cuts it to
# eight (two are not seen this epoch). Either way every rank gets as many indices, hence as many
# batches: a rank with one batch more would wait forever in an all-reduce that the others never
# join. `pad=False` (for evaluation, which runs no collective per batch) gives each index exactly
# once, in shards of unequal length.
#
# On the whole training set with $k = 4$ ranks the shards are disjoint and together hold every
# image once. And step $s$ of the $k$ ranks, each with batch $B$, uses exactly the images of step
# $s$ of one process with batch $kB$: positions $kBs \ldots kB(s+1)-1$ of the permutation, dealt
# out to the ranks like cards.

# %%
N = len(train_set)
shards = np.stack([distributed.DistributedSampler(train_set, K, r, seed=0).indices() for r in range(K)])
everything = np.sort(shards.ravel())
print(f"{K} shards of {shards.shape[1]} indices; together every one of the {N} images once:",
      np.array_equal(everything, np.arange(N)))

n_steps = shards.shape[1] // B
rank_steps = shards[:, :n_steps * B].reshape(K, n_steps, B).transpose(1, 0, 2).reshape(n_steps, K * B)
one_process_steps = np.random.default_rng([0, 0]).permutation(N)[:n_steps * K * B].reshape(n_steps, K * B)
print(f"each of the {n_steps} steps: the {K} rank batches of {B} together are the batch of {K * B} of one process:",
      np.array_equal(np.sort(rank_steps, axis=1), np.sort(one_process_steps, axis=1)))

# %%
N_DRAWN, K_DRAWN, B_DRAWN = 22, 4, 3           # a small case to draw: padded to 24
order = np.resize(np.random.default_rng([0, 0]).permutation(N_DRAWN), 24)
position = np.arange(24)
fig, axes = plt.subplots(2, 1, figsize=(11, 2.6), layout="constrained")
colourings = {"rank (k = 4, batch 3 each)": position % K_DRAWN,
              "step (1 process, batch 12)": position // (K_DRAWN * B_DRAWN)}
for ax, (label, colour) in zip(axes, colourings.items()):
    ax.imshow(colour[None, :], cmap="tab10", vmin=0, vmax=9, aspect="auto")
    for i in position:
        ax.text(i, 0, str(order[i]) + ("*" if i >= N_DRAWN else ""), ha="center", va="center", fontsize=8)
    for boundary in range(K_DRAWN * B_DRAWN, 24, K_DRAWN * B_DRAWN):
        ax.axvline(boundary - 0.5, color="k", lw=2)
    ax.set(yticks=[], ylabel=label.split(" ")[0])
    ax.set_title(f"colour: {label}", fontsize=9)
axes[1].set_xlabel("position in the padded permutation (the number: the image; *: padding, repeats the start)")
fig.suptitle(f"{N_DRAWN} images, {K_DRAWN} ranks x batch {B_DRAWN}: each step (between the black lines) is the "
             f"batch of 12 of one process", fontsize=10)
plt.show()

# %% [markdown]
# ### The gradient of k ranks is the gradient of k times the batch
#
# Each rank's loss is the mean cross-entropy over its $B$ images, $L_r = \frac1B \sum_{i \in r} \ell_i$.
# The loss of one process on all $kB$ images is their mean, and splits by rank:
#
# $$ L = \frac{1}{kB} \sum_{i=1}^{kB} \ell_i = \frac1k \sum_{r=0}^{k-1} \frac1B \sum_{i \in r} \ell_i
#      = \frac1k \sum_r L_r , \qquad\text{so}\qquad \nabla L = \frac1k \sum_r \nabla L_r : $$
#
# the mean of the ranks' gradients (what `all_reduce_(grads, op="mean")` computes) is the gradient
# one process computes on the whole batch, exactly, *if* $\ell_i$ depends only on image $i$ and the
# weights. We check it in float64 on the first step's batches, which we take from the loaders a
# real run would build: rank $r$'s `DataLoader(train_set, B, sampler=DistributedSampler(train_set,
# K, r))`, and one process's `DataLoader(train_set, K * B, shuffle=True)`. First a small
# convolutional network without batch norm.

# %%
def first_batch(loader):
    images, labels = next(iter(loader))
    return images.astype(np.float64), labels


rank_data = [first_batch(DataLoader(train_set, B, sampler=distributed.DistributedSampler(train_set, K, r, seed=0),
                                    transform=normalize, prefetch=0)) for r in range(K)]
whole_batch = first_batch(DataLoader(train_set, K * B, shuffle=True, seed=0, transform=normalize, prefetch=0))
rank_images = np.concatenate([images for images, _ in rank_data]).reshape(K * B, -1)
print(f"the {K} rank batches hold the images of the one batch of {K * B}, in another order:",
      np.array_equal(np.unique(rank_images, axis=0), np.unique(whole_batch[0].reshape(K * B, -1), axis=0)))


def gradients(model, images, labels):
    """Every parameter's gradient of the mean cross-entropy over this batch (training mode)."""
    model.train()
    model.zero_grad()
    F.cross_entropy(model(minires.tensor(images)), labels).backward()
    return [p.grad.numpy().copy() for p in model.parameters()]


def ranks_against_one_process(model):
    """max |mean of the K ranks' gradients - one process's gradient| / max |one process's gradient|."""
    per_rank = [gradients(model, images, labels) for images, labels in rank_data]   # K "processes"
    averaged = [np.mean(np.stack(grads), axis=0) for grads in zip(*per_rank)]       # the all-reduce
    whole = gradients(model, *whole_batch)
    return max(np.abs(a - w).max() for a, w in zip(averaged, whole)) / max(np.abs(w).max() for w in whole)


def net_without_batch_norm():
    minires.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(16, 10)).double()


def resnet_with_batch_norm():
    minires.manual_seed(0)
    return mnist_resnet(width=WIDTH).double()


difference_plain = ranks_against_one_process(net_without_batch_norm())
difference_bn = ranks_against_one_process(resnet_with_batch_norm())
print(f"without batch norm: the mean of {K} rank gradients vs the gradient on {K * B} images, "
      f"relative difference {difference_plain:.1e}")
print(f"mnist_resnet (batch norm): relative difference {difference_bn:.1e}")

# %% [markdown]
# Without batch norm the two agree to float64 rounding (the sums run in another order). With batch
# norm they do not: in training mode each batch norm normalises with the mean and variance of the
# batch it sees, so image $i$'s output, and $\ell_i$, depend on the other images of its batch. A rank
# sees $B$ images, one process $kB$. Here are the statistics the stem's batch norm would use, per
# channel, on each rank and on the whole batch:

# %%
bn_net = resnet_with_batch_norm()
with minires.no_grad():
    features = [bn_net.stem[0](minires.tensor(images)).numpy() for images, _ in rank_data]   # the stem's conv
m = features[0].size // features[0].shape[1]              # values per channel on one rank: B x 28 x 28
means = np.stack([f.mean(axis=(0, 2, 3)) for f in features])
variances = np.stack([f.var(axis=(0, 2, 3)) for f in features])
whole_features = np.concatenate(features)
whole_mean, whole_var = whole_features.mean(axis=(0, 2, 3)), whole_features.var(axis=(0, 2, 3))
for r in range(K):
    print(f"rank {r}: mean {means[r]}, var {variances[r]}")
print(f"all {K * B}: mean {whole_mean}, var {whole_var}")
print(f"the mean of the ranks' variances misses {np.abs(variances.mean(axis=0) - whole_var).max():.2e} "
      "(the spread of the ranks' means)")

# %% [markdown]
# ### Synchronized batch norm
#
# `nn.SyncBatchNorm` (Peng et al. 2018, "MegDet", for object detectors with a couple of images per GPU)
# normalises with the statistics of *all* $kB$ images. It does not send the images: each rank sends
# its count $m_r$, mean and variance per channel (an `all_gather` of $1 + 2C$ numbers), and every rank
# combines them with Chan et al.'s parallel formula (1979, "Updating formulae and a pairwise
# algorithm for computing sample variances"), `combined_statistics` in `minires/ops/sync_batch_norm.py`:
#
# $$ M = \sum_r m_r, \qquad \mu = \frac1M \sum_r m_r \mu_r, \qquad
#    \sigma^2 = \frac1M \sum_r m_r \left(\sigma_r^2 + (\mu_r - \mu)^2\right) . $$
#
# The second term is what the mean of the variances missed: the spread of the ranks' means. To run
# `combined_statistics` for our simulated ranks we hand it, in place of MPI, the rows that the
# all-gather would bring every rank: $(m_r, \mu_r, \sigma^2_r)$ for each $r$.

# %%
@contextlib.contextmanager
def simulated_all_gather(rows):
    """Inside the block, collectives.all_gather returns ``rows``, one per simulated rank: what MPI's
    Allgather hands every rank of a real run."""
    real = collectives.all_gather
    collectives.all_gather = lambda mine: rows
    try:
        yield
    finally:
        collectives.all_gather = real


rows = np.column_stack([np.full(K, m), means, variances])      # (K, 1 + 2C), what each rank sends
with simulated_all_gather(rows):
    M, synced_mean, synced_var = combined_statistics(m, means[0], variances[0])   # what rank 0 computes
print(f"M = {M} values per channel ({K} ranks x {m})")
print(f"combined mean vs the mean of all {K * B} images: max |difference| {np.abs(synced_mean - whole_mean).max():.1e}")
print(f"combined var  vs the var of all {K * B} images:  max |difference| {np.abs(synced_var - whole_var).max():.1e}")

synced_net = nn.SyncBatchNorm.convert_sync_batchnorm(resnet_with_batch_norm())
converted = [name for name, module in synced_net.named_modules() if isinstance(module, nn.SyncBatchNorm)]
print(f"convert_sync_batchnorm replaced {len(converted)} batch norms ({converted[0]}, ...); in a world of one "
      "they are plain batch norm:",
      np.array_equal(synced_net(minires.tensor(whole_batch[0])).numpy(),
                     resnet_with_batch_norm()(minires.tensor(whole_batch[0])).numpy()))

# %% [markdown]
# The combined statistics are the whole batch's, to float64 rounding. In backward, batch norm's input
# gradient needs two sums over the batch, $\sum g$ and $\sum g \hat x$; `SyncBatchNormFunction` adds
# them over the ranks with one small all-reduce, and then every rank's input gradient is its slice of
# the whole batch's. That needs the ranks to run *at the same time* (each waits for the others' sums
# in the middle of its forward and its backward), which one process cannot simulate one rank after
# the other; section 5 runs it on real processes. `tests/mpi/data_parallel_steps.py` does both
# comparisons in float64: two ranks with SyncBatchNorm match one process with twice the batch, and
# two ranks without it match one process that *accumulates* the two rank-batches' gradients, each
# normalised on its own, exactly as we did above.
#
# Is the difference a problem? Goyal et al. kept batch norm per GPU (32 images) on purpose: the
# statistics of 32 images are good enough, and they treat the batch-norm batch as a hyper-parameter
# of its own. Synchronising matters when each process has only a few images.
#
# ## 3. The learning rate: linear scaling and warm-up
#
# With $k$ ranks the batch is $k$ times larger and there are $k$ times fewer steps per epoch. Goyal
# et al.'s **linear scaling rule**: multiply the learning rate by $k$ too. Compare $k$ steps of SGD
# with rate $\eta$ on batches $\mathcal B_j$ of $n$ images with one step of rate $\hat\eta$ on their union:
#
# $$ w_{t+k} = w_t - \eta \frac1n \sum_{j<k} \sum_{x \in \mathcal B_j} \nabla \ell(x, w_{t+j}), \qquad
#    \hat w_{t+1} = w_t - \hat\eta \frac1{kn} \sum_{j<k} \sum_{x \in \mathcal B_j} \nabla \ell(x, w_t) . $$
#
# If $\nabla \ell(x, w_{t+j}) \approx \nabla \ell(x, w_t)$ for $j < k$, the two agree for
# $\hat\eta = k\eta$. That assumption fails at the start of training, when the weights change fast;
# there a large rate diverges, so Goyal et al. begin at $\eta$ and raise the rate linearly to $k\eta$
# over the first 5 epochs (the **gradual warm-up**). `python -m minires train --distributed` applies
# both (`scaled_recipe` in `minires/training/data_parallel.py`), unless `--lr` or `--warmup-epochs`
# is given; runs too short for a ramp of two epochs get none:

# %%
print(f"{'ranks':>5s} {'epochs':>6s} {'lr':>5s} {'warm-up':>7s}  rule")
for ranks in (1, 2, 8, 32):
    for epochs in (3, 12, 90):
        config = {"lr": 0.1, "epochs": epochs, "milestones": [0.5, 0.75], "gamma": 0.1, "warmup_epochs": 0}
        scaled = scaled_recipe(config, given=set(), ranks=ranks)
        print(f"{ranks:5d} {epochs:6d} {scaled['lr']:5.1f} {scaled['warmup_epochs']:7d}  "
              f"{scaled.get('lr_rule', 'one process: the lr as it is')}")


# %%
def lr_per_epoch(ranks, epochs=30):
    """The lr of each epoch of the train command's schedule (warm-up, then /10 at 50% and 75%)."""
    config = scaled_recipe({"lr": 0.1, "epochs": epochs, "milestones": [0.5, 0.75], "gamma": 0.1,
                            "warmup_epochs": 0}, given=set(), ranks=ranks)
    optimizer = optim.SGD(nn.Linear(1, 1).parameters(), lr=config["lr"])
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return rates


fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
for ranks in (1, 4, 8):
    ax.step(range(1, 31), lr_per_epoch(ranks), where="post", label=f"{ranks} rank{'s' if ranks > 1 else ''} "
            f"(global batch {128 * ranks})")
ax.set(xlabel="epoch", ylabel="learning rate", yscale="log",
       title="lr of a 30-epoch run: k times 0.1, reached after a 5-epoch warm-up")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The ramp of $W$ epochs goes $k\eta/W, 2k\eta/W, \ldots, k\eta$; with $k \ge W$ it starts at or
# above the one-process rate $\eta$. The rule has its limits: Goyal et al. found it to hold up to a
# batch of about 8k images on ImageNet, and it broke down beyond.
#
# ## 4. The cost of communication
#
# The all-reduce is the price of data parallelism: every step, every rank must send and receive a
# model's worth of gradients. The **ring all-reduce** (used by Horovod, from Baidu's work, and by
# NCCL) does it in two rounds around a ring of the $p$ workers, each cutting the $S$ bytes into $p$
# chunks: $p - 1$ steps of reduce-scatter (each worker passes a chunk on and adds the one it
# receives, until each worker holds one chunk summed over everyone), then $p - 1$ steps of
# all-gather (the summed chunks go round). Each worker sends $2(p-1)/p \cdot S$ bytes, almost
# independent of $p$, in $2(p-1)$ messages, so on links of $\beta$ bytes/s with a latency $\alpha$ per
# message
#
# $$ T(p) = 2\,\frac{p - 1}{p}\, \frac{S}{\beta} + 2 (p - 1)\, \alpha . $$
#
# minires all-reduces after backward, so a step of $t$ seconds becomes $t + T(p)$, and the scaling
# efficiency (the speed-up divided by $p$, with the batch per worker fixed) is $t / (t + T(p))$.
# `minires/distributed/cost_model.py` holds this model, `ring_all_reduce_s`, and
# `benchmarks/bench_distributed.py` measures $t$. $S$ is 4 bytes per parameter (float32 gradients).

# %%
from minires.distributed.cost_model import ring_all_reduce_s

PARAMETERS = {"ResNet-20": resnet20().num_parameters(), "ResNet-50": resnet50().num_parameters()}
# Assumed step times t (forward + backward + SGD, batch 32 per worker). CPU: one core does a ResNet-20
# step on 32 CIFAR images in about 0.3 s (bench_distributed.py measures it), and ResNet-50 on 224x224
# images costs about 100 times the multiply-adds. GPU: about 10 ms and 100 ms.
STEP_S = {"CPU-like": {"ResNet-20": 0.3, "ResNet-50": 30.0}, "GPU-like": {"ResNet-20": 0.01, "ResNet-50": 0.1}}
BANDWIDTHS_GBIT = (10, 100)       # Ethernet, InfiniBand
LATENCY_S = 5e-6
WORKERS = 2 ** np.arange(1, 9)     # 2 ... 256
for name, n in PARAMETERS.items():
    print(f"{name}: {n:,} parameters, S = {4 * n / 2**20:.1f} MiB; all-reduce at 10 Gbit/s: "
          + ", ".join(f"{p} workers {ring_all_reduce_s(n, p, 10, LATENCY_S) * 1e3:.1f} ms" for p in (2, 8, 64)))


def efficiency(step_s, parameters, workers, gbit):
    return step_s / (step_s + ring_all_reduce_s(parameters, workers, gbit, LATENCY_S))


def efficiency_overlapped(step_s, parameters, workers, gbit):
    """At best, with the all-reduce hidden behind backward (about 2/3 of the step): t / (t/3 + max(2t/3, T))."""
    return step_s / (step_s / 3 + np.maximum(2 * step_s / 3, ring_all_reduce_s(parameters, workers, gbit, LATENCY_S)))


# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained", sharey=True)
for ax, (regime, steps_s) in zip(axes, STEP_S.items()):
    for i, (name, n) in enumerate(PARAMETERS.items()):
        for gbit, style in zip(BANDWIDTHS_GBIT, ("o-", "s:")):
            ax.plot(WORKERS, efficiency(steps_s[name], n, WORKERS, gbit), style, color=f"C{i}",
                    label=f"{name}, t = {steps_s[name] * 1e3:g} ms, {gbit} Gbit/s")
    if regime == "GPU-like":
        ax.plot(WORKERS, efficiency_overlapped(steps_s["ResNet-50"], PARAMETERS["ResNet-50"], WORKERS, 10), "^--",
                color="C3", label="ResNet-50, 10 Gbit/s, all-reduce overlapped with backward")
    ax.set_xscale("log", base=2)
    ax.set_xticks(WORKERS, [str(p) for p in WORKERS])
    ax.set(xlabel="workers p", ylim=(0, 1.05), title=f"{regime} step times, ring all-reduce after backward")
    ax.legend(fontsize=7, loc="lower left")
axes[0].set_ylabel("scaling efficiency t / (t + T(p))")
plt.show()

print(f"{'':9s} {'model':10s} {'Gbit/s':>6s} " + " ".join(f"{f'p={p}':>6s}" for p in (8, 64, 256)))
for regime, steps_s in STEP_S.items():
    for name, n in PARAMETERS.items():
        for gbit in BANDWIDTHS_GBIT:
            print(f"{regime:9s} {name:10s} {gbit:6d} "
                  + " ".join(f"{efficiency(steps_s[name], n, p, gbit):6.0%}" for p in (8, 64, 256)))

# %% [markdown]
# On CPUs a step is so long that the all-reduce hardly shows, even for ResNet-50's 100 MB. On GPUs
# the step is 30 to 300 times shorter and the same all-reduce is not: ResNet-50 on 10 Gbit/s Ethernet
# spends more time sending gradients than computing them (about 40% efficiency). The bandwidth term
# hardly grows with $p$, so faster links help more than fewer workers; the latency term grows with $p$
# and, for small models on many workers, is what remains.
#
# That is why the frameworks **overlap** the all-reduce with backward: backward produces the
# gradients from the last layer to the first, and a bucket of finished gradients (25 MB in PyTorch's
# `DistributedDataParallel`; "tensor fusion" in Horovod) can go on the wire while backward computes
# the layers below. Then the step takes about $t_\text{forward} + \max(t_\text{backward}, T)$ instead
# of $t + T$ (the dashed line, the best case). minires packs the gradients into the same kind of buckets and sends
# one while it packs the next, but starts only after backward: simpler to read, and on CPUs the
# difference is small.
#
# ## 5. Two real processes
#
# `python -m minires train --distributed` does all of the above: DistributedSampler shards, one
# broadcast of rank 0's weights, `average_gradients(model)` in `train_steps(..., before_step=...)`
# (after `backward()`, before `optimizer.step()`), `--sync-bn` converting the batch norms, the
# metrics combined over the ranks, and only rank 0 printing and writing. We run it on two processes
# with batch 32 each, with and without `--sync-bn`, and on one process with batch 64, from the same
# seed on the same images (64 images per step: one step is `--train-fraction 0.008` of the 8,000),
# each with one BLAS thread, and compare the checkpoints. This needs `mpiexec` and mpi4py
# (`pip install "minires[mpi]"`); without them the tutorial says so and goes on. It runs in smoke
# mode too: a run of one step takes a few seconds.

# %%
def find_mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")   # a virtualenv's own MPI
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
HAS_MPI = MPIEXEC is not None and importlib.util.find_spec("mpi4py") is not None
FRACTION = {1: 0.008, 4: 0.032, 12: 0.096}         # 64, 256 and 768 of the 8,000 images: whole steps of 64
# The child processes import the same minires as this one, and use one BLAS thread each.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(minires.__file__)))
CHILD_PATH = [PACKAGE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(CHILD_PATH)}
if not HAS_MPI:
    print("no mpiexec or no mpi4py here (pip install \"minires[mpi]\"): the two-process runs are skipped")


def train_command(ranks, steps, out, sync_bn=False):
    """The command line of a run of ``steps`` steps of 64 images: ``ranks`` processes x 64 / ranks."""
    flags = ["--train-fraction", str(FRACTION[steps]), "--epochs", "1", "--lr", "0.1", "--quiet", "--out", out]
    if ranks == 1:
        return [sys.executable, "-m", "minires", "train", "--batch-size", "64"] + flags
    return ([MPIEXEC, "-n", str(ranks), sys.executable, "-m", "minires", "train", "--distributed",
             "--batch-size", str(64 // ranks)] + (["--sync-bn"] if sync_bn else []) + flags)


def run(command):
    """Run a training command; its printed JSON lines and its checkpoint, or None if it failed."""
    out = command[command.index("--out") + 1]
    started = time.perf_counter()
    done = subprocess.run(command, check=False, env=ENV, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        print(f"note: {' '.join(command[:3])} ... failed, skipped ({done.stderr.strip()[-300:]})")
        return None
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {"lines": lines, "seconds": time.perf_counter() - started,
            "checkpoint": load_checkpoint(os.path.join(out, "checkpoint.npz"))}


def max_weight_difference(a, b):
    """max |a - b| over the parameters of two checkpoints (not the running statistics)."""
    weights = [key for key in a["model"] if "running" not in key and "num_batches" not in key]
    return max(float(np.abs(a["model"][key] - b["model"][key]).max()) for key in weights)


# %%
WAYS = {"2 x 32, SyncBN": (2, True), "2 x 32": (2, False), "1 x 64": (1, False)}
results = {}
if HAS_MPI:
    folder = tempfile.mkdtemp(prefix="minires-tutorial-12-")
    print("the two-process SyncBN run: mpiexec -n 2 python", " ".join(train_command(2, 1, "OUT", sync_bn=True)[4:]))
    for steps in STEPS_COMPARED:
        images = len(take_fraction(train_set, FRACTION[steps], seed=0))
        for way, (ranks, sync_bn) in WAYS.items():
            out = os.path.join(folder, f"{steps}-steps-{way.replace(' ', '').replace(',', '-')}")
            results[steps, way] = run(train_command(ranks, steps, out, sync_bn))
        if any(results[steps, way] is None for way in WAYS):
            continue
        one = results[steps, "1 x 64"]
        print(f"\n{steps} step{'s' if steps > 1 else ''} ({images} images):")
        for way in WAYS:
            result, epoch = results[steps, way], results[steps, way]["lines"][-1]
            print(f"  {way:15s} {result['seconds']:4.1f} s  train loss {epoch['train_loss']:.5f}  "
                  f"test loss {epoch['test_loss']:.5f}  test acc {epoch['test_acc']:.4f}  "
                  f"max |w - w(1 x 64)| {max_weight_difference(result['checkpoint'], one['checkpoint']):.1e}")
    print("\nwhat rank 0 of the SyncBN run logged first:", results[STEPS_COMPARED[0], "2 x 32, SyncBN"]["lines"][0]
          if results.get((STEPS_COMPARED[0], "2 x 32, SyncBN")) else "(it failed)")
    shutil.rmtree(folder, ignore_errors=True)

# %% [markdown]
# After one step, two processes with SyncBatchNorm and one process with twice the batch differ by
# a few $10^{-8}$ in the weights (in our run 3e-8, weights of size up to 1): float32 rounding. The
# arithmetic is the same, the order of the additions is not: the gradient of 64 images is two sums
# of 32 added by MPI instead of one sum, and the batch-norm statistics are combined from two halves.
# Each float32 addition rounds to 24 bits (a relative $6 \cdot 10^{-8}$), and a step of rate 0.1
# moves the weights by about $0.1 \times$ the gradient, so the weights differ by some $10^{-8}$.
# Without SyncBatchNorm the difference is a real one, 50,000 times larger (in our run 1.4e-3): each
# process normalised its 32 images on their own, as in section 2.
#
# Over more steps the SyncBN run drifts away from the one process too (in our run 2.6e-4 after 4
# steps, 7e-3 after 12), and the test accuracies differ in the second decimal. That is not the
# algorithm: in float64 the same two runs agree to $10^{-12}$ after four steps
# (`tests/test_distributed.py`). It is training itself, which at the start, at learning rate 0.1,
# amplifies any small difference in the weights. We measure how much, on one process: the same
# training twice, once from weights each changed by a relative $10^{-7}$ (about one float32 rounding).

# %%
def weights_after_each_step(perturbation, steps):
    """Train mnist_resnet as the train command does (batch 64, lr 0.1, momentum 0.9, weight decay 1e-4)
    on the images of section 5's run of ``steps`` steps, from weights w (1 + perturbation z); the weights after
    each step."""
    minires.manual_seed(0)
    model = mnist_resnet()
    noise = np.random.default_rng(1)
    for p in model.parameters():
        p.data *= 1 + perturbation * noise.standard_normal(p.data.shape)
    images = take_fraction(train_set, FRACTION[steps], seed=0)      # steps x 64 images: one pass
    loader = DataLoader(images, 64, shuffle=True, seed=0, transform=Normalize(*mean_std(images)), prefetch=0)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    after = []
    train_steps(model, loader, optimizer, steps,
                on_step=lambda step, metrics: after.append([p.data.copy() for p in model.parameters()]))
    return after


SENSITIVITY_STEPS = 4 if SMOKE else 12
started = time.perf_counter()
unperturbed, perturbed = weights_after_each_step(0.0, SENSITIVITY_STEPS), weights_after_each_step(1e-7, SENSITIVITY_STEPS)
apart = [max(np.abs(a - b).max() for a, b in zip(wa, wb)) for wa, wb in zip(unperturbed, perturbed)]
print(f"two runs of {SENSITIVITY_STEPS} steps in {time.perf_counter() - started:.1f} s, from weights 1e-7 apart "
      "(relative); max |difference| after each step:", ", ".join(f"{d:.1e}" for d in apart))

# %%
fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
ax.semilogy(range(1, SENSITIVITY_STEPS + 1), apart, "o-", color="gray", label="1 process, weights perturbed by 1e-7")
for way, style in (("2 x 32, SyncBN", "s"), ("2 x 32", "^")):
    measured = [(n, max_weight_difference(results[n, way]["checkpoint"], results[n, "1 x 64"]["checkpoint"]))
                for n in STEPS_COMPARED if results.get((n, way)) and results.get((n, "1 x 64"))]
    if measured:
        ax.semilogy(*zip(*measured), style, ms=9, label=f"processes {way} against 1 x 64 (section 5)")
ax.set(xlabel="training steps", ylabel="max |difference| of the weights",
       title="Small differences grow during training")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# One rounding in every weight grew a thousand-fold in twelve steps (in our run from 7e-6 after the
# first step to 8e-3 after the twelfth). The SyncBN run's difference starts smaller (a few sums
# rounded differently, not every weight) and grows into the same range (2.6e-4 after four steps,
# 6.7e-3 after twelve): the two processes compute what one process computes, and what is left is
# rounding, amplified. Without SyncBatchNorm the runs differ by a real amount from the first step
# on (1.4e-3, then 1.4e-2 after four steps), and stay further apart.
#
# ### On a laptop, a multi-GPU machine, a cluster
#
# ```bash
# # a laptop: 2 processes, each with half the cores (minires shares them out), batch 64 each
# mpiexec -n 2 python -m minires train --distributed --sync-bn --batch-size 64
#
# # one machine with 4 GPUs: local rank i takes cuda:i, gradients go through NCCL
# mpiexec -n 4 python -m minires train --distributed --device cuda --dataset cifar10 --model resnet20 \
#     --batch-size 32
#
# # several machines, with a hostfile (one machine name per line): 2 machines x 4 processes
# mpiexec -f hosts -ppn 4 -n 8 python -m minires train --distributed --device cuda --dataset cifar10  # MPICH
# mpirun --hostfile hosts -npernode 4 -np 8 python -m minires train --distributed --device cuda     # Open MPI
#
# # a SLURM cluster: srun starts the processes (inside an sbatch script, or interactively)
# srun --mpi=pmi2 --nodes 2 --ntasks-per-node 4 --gpus-per-node 4 \
#     python -m minires train --distributed --device cuda --dataset cifar10 --batch-size 32
# ```
#
# The data set and the output folder must be reachable from every machine (a shared file system);
# only rank 0 writes. A run is resumed on as many processes as it started with
# (`mpiexec -n 8 ... --resume runs/.../checkpoint.npz`): its shards, global batch and learning rate
# depend on that number. An exception on one rank ends every rank, with one line naming it
# (`distributed.fail_together()`), instead of leaving the others waiting in an all-reduce.
#
# ## Summary
#
# * Data parallelism: $k$ processes, each the whole model and its own shard of every batch
#   (`DistributedSampler`: one seeded permutation, padded to a multiple of $k$, every $k$-th entry).
#   Step $s$ of $k$ ranks $\times B$ uses the images of step $s$ of one process $\times kB$.
# * Each rank's loss is a mean over its $B$ images, so the mean of the ranks' gradients (one
#   all-reduce) is the gradient of the mean loss over all $kB$, exactly, for a network without batch
#   norm. With batch norm each rank normalises with its own statistics; SyncBatchNorm combines the
#   ranks' $(m, \mu, \sigma^2)$ with Chan's formula into the statistics of all $kB$ images.
# * $k$ times the batch: $k$ times the learning rate, after a gradual warm-up (Goyal et al.).
# * A ring all-reduce costs $2\frac{p-1}{p}S/\beta + 2(p-1)\alpha$ per step: nothing next to a CPU
#   step, a lot next to a GPU step, hence buckets overlapped with backward.
# * On real processes, SyncBN and twice the batch on one process agree to float32 rounding.
#
# ## Exercises
#
# Each exercise has a check cell that prints ✓ or ✗ (and a hint, and stops). The file ships with one
# possible answer filled in, after a `# One possible answer` comment, so that it runs top to bottom;
# try your own first. While an answer is still `pass` or `...`, the check prints "not answered yet"
# and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells

# %% [markdown]
# ### Exercise 1: a rank's shard, by hand
#
# Write `shard(n, num_replicas, rank, seed, epoch)`: the indices `DistributedSampler(range(n),
# num_replicas, rank, seed=seed)` gives rank `rank` in epoch `epoch` (shuffled and padded, the
# defaults): the permutation `np.random.default_rng([seed, epoch]).permutation(n)`, padded by
# repeating its start up to the next multiple of `num_replicas` (more than once if there are more
# ranks than indices), and every `num_replicas`-th entry from position `rank` on.

# %%
# One possible answer: np.resize repeats the permutation from its start up to the padded length;
# a slice with a step deals it out.
def shard(n, num_replicas, rank, seed, epoch):
    total = -(-n // num_replicas) * num_replicas          # the next multiple of num_replicas
    order = np.resize(np.random.default_rng([seed, epoch]).permutation(n), total)
    return order[rank::num_replicas]


# %%
def shards_agree():
    for n, k in [(10, 4), (8000, 3), (3, 5), (12, 4)]:
        for epoch in (0, 1):
            for r in range(k):
                sampler = distributed.DistributedSampler(range(n), k, r, seed=3)
                sampler.set_epoch(epoch)
                mine = np.asarray(answered(shard(n, k, r, 3, epoch)))
                if not np.array_equal(mine, sampler.indices()):
                    print(f"n={n}, {k} ranks, rank {r}, epoch {epoch}: yours {mine[:8]}..., "
                          f"the sampler's {sampler.indices()[:8]}...")
                    return False
    print("every rank of (n, k) = (10, 4), (8000, 3), (3, 5), (12, 4), epochs 0 and 1: the sampler's indices")
    return True


check("Exercise 1: your shards are DistributedSampler's", shards_agree,
      "pad the permutation to ceil(n / k) * k by repeating it from the start (np.resize), then take order[rank::k]")

# %% [markdown]
# ### Exercise 2: the statistics of all ranks
#
# Write `combine_statistics(counts, means, variances)`: from each rank's count $m_r$ (an array of
# shape `(k,)`), per-channel means and biased variances (shape `(k, C)`), the total count $M$ and the
# mean and biased variance of all $M$ values per channel, with Chan's formula of section 2. The check
# builds ranks of unequal sizes (as `pad=False` shards are) whose values lie far from zero, and
# compares with NumPy on the concatenated values.

# %%
# One possible answer: the mean weighted by the counts; each rank's variance plus its squared distance
# from the overall mean, weighted by the counts.
def combine_statistics(counts, means, variances):
    M = counts.sum()
    mean = (counts[:, None] * means).sum(axis=0) / M
    var = (counts[:, None] * (variances + (means - mean) ** 2)).sum(axis=0) / M
    return M, mean, var


# %%
def statistics_agree():
    generator = np.random.default_rng(7)
    counts = np.array([5, 17, 1, 40])
    values = [1000 + r + generator.standard_normal((c, 3)) * (r + 1) for r, c in enumerate(counts)]  # (m_r, C)
    means = np.stack([v.mean(axis=0) for v in values])
    variances = np.stack([v.var(axis=0) for v in values])
    M, mean, var = answered(combine_statistics(counts, means, variances))
    everything = np.concatenate(values)
    print(f"M {M} (expected {everything.shape[0]}), mean {np.asarray(mean)} (NumPy {everything.mean(axis=0)}), "
          f"var {np.asarray(var)} (NumPy {everything.var(axis=0)})")
    return (M == everything.shape[0] and np.allclose(mean, everything.mean(axis=0), rtol=1e-12)
            and np.allclose(var, everything.var(axis=0), rtol=1e-9))


check("Exercise 2: Chan's formula gives the statistics of all ranks' values", statistics_agree,
      "M = sum m_r; mean = sum m_r mean_r / M; var = sum m_r (var_r + (mean_r - mean)^2) / M")

# %% [markdown]
# ### Exercise 3: the time of a ring all-reduce
#
# Write `ring_all_reduce_time(size_bytes, workers, bytes_per_s, latency_s)`: $T(p)$ of section 4 for
# $S$ = `size_bytes` on `workers` workers, links of `bytes_per_s` and a latency of `latency_s` per
# message. (One worker sends nothing.) The check compares with `ring_all_reduce_s` of
# `minires/distributed/cost_model.py`, which counts parameters (4 bytes each) and Gbit/s.

# %%
# One possible answer: two rounds of p - 1 messages, each carrying one of the p chunks of S bytes.
def ring_all_reduce_time(size_bytes, workers, bytes_per_s, latency_s):
    messages = 2 * (workers - 1)
    return messages * (size_bytes / workers) / bytes_per_s + messages * latency_s


# %%
def ring_times_agree():
    for parameters, workers, gbit, latency in [(269_722, 2, 10, 5e-6), (25_557_032, 64, 100, 2e-6),
                                               (1_000_000, 1, 25, 1e-5), (25_557_032, 7, 10, 0.0)]:
        mine = answered(ring_all_reduce_time(4 * parameters, workers, gbit * 1e9 / 8, latency))
        expected = ring_all_reduce_s(parameters, workers, gbit, latency)
        print(f"{parameters:,} parameters, {workers} workers, {gbit} Gbit/s, {latency * 1e6:g} us: "
              f"yours {mine * 1e3:.4f} ms, the model's {expected * 1e3:.4f} ms")
        if not np.isclose(mine, expected, rtol=1e-12, atol=0):
            return False
    return True


check("Exercise 3: your ring all-reduce time is the model's", ring_times_agree,
      "each worker sends 2(p - 1) messages of S / p bytes: 2 (p - 1) / p * S / bandwidth + 2 (p - 1) * latency")
