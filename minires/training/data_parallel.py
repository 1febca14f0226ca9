"""What ``train --distributed`` adds to a training run, in the order the run meets it.

    mpiexec -n 4 python -m minires train --distributed [--sync-bn] --batch-size 32

* ``--batch-size`` is per rank: 4 ranks x 32 make a global batch of 128.
* The learning rate follows the linear scaling rule of Goyal et al. 2017 ("Accurate, large
  minibatch SGD"): k times the global batch, k times the lr, so the default 0.1 becomes
  0.1 k; and a gradual warm-up from about the one-process lr, 5 epochs in the paper, here at
  most a third of the run and none in runs shorter than 6 epochs (``scaled_recipe``). A --lr or
  --warmup-epochs typed is kept.
* Each rank trains on its own shard (``DistributedSampler``), the gradients are averaged after
  ``backward()`` (``distributed.average_gradients``), and only rank 0 prints and writes.
* The epoch's training loss and accuracy, and the evaluation on the shards of the test set
  (``evaluate_on_shards``), are combined over the ranks: the numbers logged are the whole
  data set's.
* A checkpoint records the world size; resuming needs the same (``check_world_size``).
"""
import json

import numpy

from minires import distributed
from minires.random import get_rng_state, manual_seed, set_rng_state
from minires.training.loop import evaluate

PAPER_WARMUP_EPOCHS = 5  # Goyal et al. 2017, section 2.2


def scaled_recipe(config, given, ranks):
    """``config`` with the lr scaled for ``ranks`` ranks (linear rule) and a warm-up, unless --lr
    (resp. --warmup-epochs) was given; ``config["lr_rule"]`` says what was done, for the log."""
    if ranks == 1:
        return config
    if "lr" in given:
        return {**config, "lr_rule": "lr as given"}
    config = {**config, "lr": config["lr"] * ranks}
    rule = f"linear scaling rule (Goyal et al. 2017): lr {config['lr'] / ranks:g} x {ranks} ranks = {config['lr']:g}"
    if "warmup_epochs" not in given:
        # A ramp of W epochs starts at lr / W: with W = k it starts at the one-process lr, as in the paper.
        # A ramp of one epoch would start at the full lr: a run too short for two has none.
        warmup = min(PAPER_WARMUP_EPOCHS, config["epochs"] // 3)
        config["warmup_epochs"] = warmup if warmup >= 2 else 0
        rule += f", warm-up {warmup} epochs" if warmup >= 2 else ", no warm-up (the run is too short for one)"
    return {**config, "lr_rule": rule}


def describe(config, backend):
    """The log line that says how the run is spread over the ranks."""
    ranks = config["world_size"]
    return json.dumps({"distributed": {
        "world_size": ranks, "batch_per_rank": config["batch_size"], "global_batch": config["batch_size"] * ranks,
        "lr": config["lr"], "warmup_epochs": config["warmup_epochs"], "lr_rule": config["lr_rule"],
        "sync_bn": bool(config.get("sync_bn")), "all_reduce": backend}})


def check_world_size(saved_config, config, path):
    """ValueError when a checkpoint of k ranks is resumed on another number: its data shards, its global
    batch and its lr all depend on k."""
    saved, now = saved_config.get("world_size", 1), config.get("world_size", 1)
    if saved != now:
        how = (f"mpiexec -n {saved} python -m minires train --distributed --resume {path}" if saved > 1
               else f"python -m minires train --resume {path}")
        raise ValueError(f"the run of {path} was trained on {saved} process{'es' if saved > 1 else ''} and this is "
                         f"{now}: its data shards, global batch and lr depend on that number, so resume it with {how}")


# ---- the random state of every rank --------------------------------------------------------------

def seed_this_rank(seed):
    """Rank r > 0 draws dropout masks from a stream of its own (rank 0 keeps the one-process stream);
    called once the model is built, so that every rank built the same one."""
    if distributed.rank() > 0:
        manual_seed(int(numpy.random.SeedSequence([seed, distributed.rank()]).generate_state(1)[0]))


def rank_rng_states():
    """Every rank's generator state, as JSON, gathered on rank 0 (for the checkpoint)."""
    return json.dumps(distributed.communicator().gather(get_rng_state(), root=0))


def restore_rank_rng(state):
    """Put back this rank's generator state from a checkpoint written by ``rank_rng_states``."""
    set_rng_state(json.loads(state["rank_rngs"])[distributed.rank()])


# ---- combining the ranks' numbers ---------------------------------------------------------------------

def combine_means(pairs):
    """Means over all ranks' samples from each rank's ``(mean, count)`` pairs: one all-reduce."""
    sums = numpy.array([[mean * count, count] for mean, count in pairs], dtype=numpy.float64)
    distributed.all_reduce_([sums])
    return [total / max(count, 1) for total, count in sums]


def evaluate_on_shards(model, loader, num_classes, device):
    """``evaluate`` on this rank's shard of the data, combined over the ranks: the loss, accuracy and
    confusion matrix of the whole data set. A rank with an empty shard adds nothing."""
    if len(loader) == 0:
        loss, confusion = 0.0, numpy.zeros((num_classes, num_classes), numpy.int64)
    else:
        loss, _, confusion = evaluate(model, loader, num_classes, device)
    seen = int(confusion.sum())
    (loss,) = combine_means([(loss, seen)])
    distributed.all_reduce_([confusion])  # counts: an integer sum, exact
    return loss, float(numpy.trace(confusion) / max(confusion.sum(), 1)), confusion


def device_of_rank(device):
    """``--device cuda`` on several ranks: the rank of local rank i takes GPU i (modulo the GPUs of
    its machine), made current, as NCCL needs. A device with an index, and the CPU, stay as given."""
    from minires.backends import cupy

    if distributed.world_size() == 1 or not device.startswith("cuda") or cupy is None:
        return device
    if device == "cuda":
        device = f"cuda:{distributed.local_rank() % cupy.cuda.runtime.getDeviceCount()}"
    cupy.cuda.Device(int(device.split(":")[1])).use()
    return device
