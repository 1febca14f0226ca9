"""A lesion study (Veit et al. 2016): delete one block of a trained network at test time.

Train a ResNet and a plain network of the same depth, then, for each block i in
turn, evaluate the test error with that block removed and everything else
untouched. "Removing block i" means putting, in the model's own list of blocks
(``model.blocks[i] = ...``), what is left of it without its layers:

  ResNet  its shortcut: the residual branch is skipped and only the identity
          (or, where the shape changes, the option-A subsample-and-zero-pad) remains.
          The block's final ReLU would change nothing, since x >= 0 already.
  plain   ``nn.Identity()`` where the block keeps the shape. A plain block that halves
          the resolution and doubles the channels has no shortcut of its own
          (``shortcut`` is None); we use the same parameter-free zero-pad shortcut as
          the ResNet's, so that every block of both networks can be deleted. Those
          downsampling blocks are marked in the CSV and drawn with hollow markers.

Veit et al. read a ResNet as an ensemble of many paths of different lengths:
deleting one block removes only half of the paths, and most of the others
still work, so the error rises a little. In a plain network there is only one
path, and deleting any block breaks it: accuracy collapses towards chance.

Each network is trained once per seed (the ``seeds`` setting). Per seed, its *accuracy drop*
is the intact accuracy minus the mean accuracy over the deletions of the blocks that keep the
shape; the claim compares the ResNet's and the plain net's drops over the seeds
(minires/experiments/claims.py). The figure shows each deleted block's mean accuracy over
the seeds, with a bar from the lowest to the highest.
"""
import time

import numpy

import minires
from minires.experiments.claims import lower, seeds_from, spread
from minires.experiments.common import (
    choose_settings, in_parallel, integer_ticks, new_figure, save_figure, start, write_csv, write_json,
)
from minires.experiments.recipe import (
    NETWORK_KINDS, build_network, endless_batches, training_data_and_test_batches, network_name, sgd_with_steps,
)
from minires.models import ZeroPadShortcut
from minires.nn import Identity
from minires.training import evaluate, train_steps

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=2048, test_size=256, depth=26, width=4, batch_size=32,
                 iterations=200, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=False, seeds=1),
    "laptop": dict(dataset="mnist_sample", train_size=None, test_size=None, depth=56, width=4, batch_size=32,
                   iterations=1000, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=False,
                   seeds=3),
    "gpu": dict(dataset="cifar10", train_size=None, test_size=None, depth=110, width=16, batch_size=128,
                iterations=64000, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=True, seeds=3),
}


def what_is_left(block):
    """The module that takes a deleted block's place: its shortcut (ResNet), else the identity
    or, where the block changes the shape, a zero-pad shortcut (plain)."""
    if block.shortcut is not None:
        return block.shortcut
    if block.changes_shape:
        return ZeroPadShortcut(block.out_channels, block.stride)
    return Identity()


def accuracy_without_block(model, index, test_loader, num_classes, device):
    """Test accuracy of ``model`` with ``model.blocks[index]`` replaced by what is left of it."""
    block = model.blocks[index]
    model.blocks[index] = what_is_left(block)
    try:
        return evaluate(model, test_loader, num_classes, device)[1]
    finally:
        model.blocks[index] = block


def lesion_one_network(kind, settings, train_set, test_loader, seed, device, progress):
    """Train a network, then measure its test accuracy intact and with each block deleted."""
    minires.manual_seed(seed)
    model = build_network(kind, settings["depth"], settings["width"], train_set, device)
    optimizer, scheduler = sgd_with_steps(model, settings)
    batches = endless_batches(train_set, settings["batch_size"], seed, settings["augment"])
    name, num_classes = network_name(kind, settings["depth"]), len(train_set.classes)
    train_steps(model, batches, optimizer, settings["iterations"], device, scheduler=scheduler,
                progress=progress, description=name)
    intact = evaluate(model, test_loader, num_classes, device)[1]
    rows = [{"network": name, "kind": kind, "deleted_block": index, "changes_shape": block.changes_shape,
             "accuracy": accuracy_without_block(model, index, test_loader, num_classes, device)}
            for index, block in enumerate(list(model.blocks))]  # a list: the loop replaces blocks
    return intact, rows


def plot_lesions(runs, settings, out):
    """Accuracy with each block deleted: the mean over the seeds, a bar from the lowest to the
    highest seed, hollow markers for the downsampling blocks; dotted: the intact networks."""
    figure, (axis,) = new_figure(1, width_per_column=7.0)
    colours = {"resnet": "tab:blue", "plain": "tab:red"}
    for kind, colour in colours.items():
        name = network_name(kind, settings["depth"])
        per_seed = [[row for row in run["rows"] if row["network"] == name] for run in runs.values()]
        blocks = [row["deleted_block"] for row in per_seed[0]]
        accuracies = [[rows[i]["accuracy"] for rows in per_seed] for i in range(len(blocks))]
        means = [sum(a) / len(a) for a in accuracies]
        axis.plot(blocks, means, "-", color=colour, linewidth=1, label=f"{name}, one block deleted")
        axis.vlines(blocks, [min(a) for a in accuracies], [max(a) for a in accuracies], color=colour, linewidth=1)
        for block, mean, row in zip(blocks, means, per_seed[0]):
            axis.plot(block, mean, "o", color=colour, markerfacecolor="white" if row["changes_shape"] else colour)
        intact = [run["intact"][name] for run in runs.values()]
        axis.axhline(sum(intact) / len(intact), color=colour, linestyle=":", label=f"{name}, intact")
    axis.set(xlabel="deleted block (hollow: a downsampling block)", ylabel="test accuracy", ylim=(0, 1.02))
    integer_ticks(axis.xaxis)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    seeds = f", mean of {len(runs)} seeds (bars: lowest to highest)" if len(runs) > 1 else ""
    return save_figure(figure, out, "lesion.png",
                       f"lesion study: {settings['dataset']}, depth {settings['depth']}, "
                       f"width {settings['width']}{seeds}")


def one_seed(seed, networks, settings):
    """Both networks of one seed, each ``(intact accuracy, per-block rows)``: their intact
    accuracies, the rows, and per network the mean and median accuracy over the deletions of
    blocks that keep the shape, and the drop from intact to that mean."""
    intact, rows = {}, []
    for kind, (accuracy, network_rows) in zip(NETWORK_KINDS, networks):
        intact[network_name(kind, settings["depth"])] = accuracy
        rows += [{"seed": seed, **row} for row in network_rows]
    one_block_deleted = {}
    for name in intact:
        accuracies = [row["accuracy"] for row in rows if row["network"] == name and not row["changes_shape"]]
        one_block_deleted[name] = {"mean_accuracy": float(numpy.mean(accuracies)),
                                   "median_accuracy": float(numpy.median(accuracies)),
                                   "accuracy_drop": intact[name] - float(numpy.mean(accuracies))}
    return {"intact": intact, "one_block_deleted": one_block_deleted, "rows": rows}


def lesion(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
           progress=None, jobs=1, **overrides):
    """Train a ResNet and a plain net, then delete each block in turn and measure test accuracy.

    Repeated for each seed (``seed``, ``seed + 1``, ...: the ``seeds`` setting), ``jobs``
    trainings at a time (common.in_parallel; the command line runs one per core). Writes
    lesion.csv / .json / .png into ``out`` (unless None). Returns a dict with "runs" (per seed:
    "intact", the test accuracy per network; "rows", one per deleted block: network,
    deleted_block, changes_shape, accuracy; and "one_block_deleted", per network the mean and
    median accuracy over the deletions of blocks that keep the shape, downsampling blocks left
    out, and the accuracy drop: intact minus that mean), "intact" and "accuracy_drop" (per
    network, their spread over the seeds) and "claims".
    """
    settings = choose_settings(PRESETS, preset, overrides)
    seeds = seeds_from(seed, settings["seeds"])
    device = start(seed, device)
    began = time.perf_counter()
    train_set, test_loader = training_data_and_test_batches(settings, data_root, download, seed)
    trained = in_parallel(lesion_one_network, [(kind, settings, train_set, test_loader, run_seed, device,
                                                progress if jobs <= 1 else False)
                                               for run_seed in seeds for kind in NETWORK_KINDS], jobs, progress)
    per_seed = len(NETWORK_KINDS)
    runs = {run_seed: one_seed(run_seed, trained[i * per_seed:(i + 1) * per_seed], settings)
            for i, run_seed in enumerate(seeds)}
    names = list(runs[seeds[0]]["intact"])
    drops = {name: [run["one_block_deleted"][name]["accuracy_drop"] for run in runs.values()] for name in names}
    resnet, plain = (network_name(kind, settings["depth"]) for kind in ("resnet", "plain"))
    claims = {"resnet_degrades_gracefully": lower(
        "deleting one block costs the ResNet less accuracy than the plain net (mean drop over the blocks)",
        resnet, drops[resnet], plain, drops[plain])}
    result = {"experiment": "lesion", "preset": preset, "seeds": seeds, "device": device, "jobs": jobs,
              "settings": settings,
              "seconds": round(time.perf_counter() - began, 2),
              "intact": {name: spread([run["intact"][name] for run in runs.values()]) for name in names},
              "accuracy_drop": {name: spread(drops[name]) for name in names},
              "claims": claims, "runs": runs}
    write_csv(out, "lesion.csv", [row for run in runs.values() for row in run["rows"]])
    write_json(out, "lesion.json", result)
    plot_lesions(runs, settings, out)
    return result
