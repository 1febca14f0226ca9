"""Per-layer gradient norms of plain and residual networks, at initialisation and early in training.

For every network, on the training batch of each recorded iteration, we measure

    ||dL/dx_l||  for x_0 ... x_L: the input of every block, and x_L, the last block's output
    ||dL/dW||    for the weight of every convolution, from the first to the last

The gradient at a block's input is not kept by autograd (it is not a parameter);
module hooks on every block catch it during ``loss.backward()`` (``BlockWatch``,
a full backward hook per block), so training runs the model as it is.

What to expect. In a residual network every block adds to an identity path, so
(up to the ReLU after each addition) dL/dx_l = dL/dx_{l+1} (1 + dF_l/dx_l): from the last block back to the first the
gradient grows slowly, by a factor of tens across 100+ blocks. A plain network
has no identity path: the gradient is multiplied by every block's Jacobian in
turn, and with batch norm those products grow geometrically (Yang et al. 2019),
so at initialisation the first layers of a plain-56 or plain-110 get gradients
thousands to millions of times larger than the last ones. Training changes the
picture: after a few SGD steps at lr 0.1 the plain-110's ratio falls far below 1
(about 1e-4 in the laptop run; the gradient now vanishes towards the input),
while the ResNets' stay within a small factor. The summary compares
``||dL/dx_0|| / ||dL/dx_L||`` across networks.

Every network is measured with each of ``seeds`` seeds. The claims compare, at the deepest
depth, how far (in powers of ten, |log10 ratio|) the plain and the residual network's
first-to-last ratio lies from 1, over the seeds (minires/experiments/claims.py); the
figures draw the first seed.
"""
import math
import time

import minires
from minires.experiments.claims import lower, seeds_from, spread
from minires.experiments.common import (
    choose_settings, in_parallel, integer_ticks, l2_norm, new_figure, save_figure, start, write_csv,
    write_json,
)
from minires.experiments.recipe import (
    BUILDERS, NETWORK_KINDS, BlockWatch, build_network, endless_batches, load_data, network_name, sgd_with_steps,
)
from minires.nn import Conv2d
from minires.training import train_steps

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=256, depths=(8, 56), width=2, batch_size=16,
                 iterations=2, record_every=1, lr=0.1, weight_decay=1e-4, milestones=(), augment=False, seeds=2,
                 kinds=NETWORK_KINDS),
    "laptop": dict(dataset="mnist_sample", train_size=None, depths=(8, 20, 56, 110), width=4, batch_size=32,
                   iterations=100, record_every=10, lr=0.1, weight_decay=1e-4, milestones=(), augment=False,
                   seeds=3, kinds=NETWORK_KINDS),
    "gpu": dict(dataset="cifar10", train_size=None, depths=(8, 20, 56, 110), width=16, batch_size=128,
                iterations=500, record_every=50, lr=0.1, weight_decay=1e-4, milestones=(), augment=True, seeds=3,
                kinds=NETWORK_KINDS),
}


def convolutions(model):
    """(name, Conv2d) for every convolution, in the order the forward pass uses them."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, Conv2d)]


def measure_network(kind, depth, settings, train_set, seed, device, progress):
    """Train one network for ``iterations`` SGD steps, recording gradient norms every
    ``record_every`` steps (iteration 0 is the network at initialisation).

    The norms of step s (counted from 1) are those of its own batch, computed before its
    update, at the weights after s - 1 updates: "iteration s - 1". So ``iterations + 1``
    steps are taken, and the update of the last one is never measured.
    """
    minires.manual_seed(seed)
    model = build_network(kind, depth, settings["width"], train_set, device)
    convs = convolutions(model)
    optimizer, scheduler = sgd_with_steps(model, settings)
    batches = endless_batches(train_set, settings["batch_size"], seed, settings["augment"])
    record = {"kind": kind, "depth": depth, "iterations": [], "block_input_norms": [],
              "conv_weight_norms": [], "conv_names": [name for name, _ in convs]}

    def record_norms(step, _):
        iteration = step - 1
        if iteration % settings["record_every"] == 0 or iteration == settings["iterations"]:
            record["iterations"].append(iteration)
            record["block_input_norms"].append([l2_norm(g) for g in watch.grads])
            record["conv_weight_norms"].append([l2_norm(conv.weight.grad) for _, conv in convs])

    with BlockWatch(model) as watch:  # watch.grads: dL/dx_0 ... dL/dx_L of the latest backward pass
        train_steps(model, batches, optimizer, settings["iterations"] + 1, device, scheduler=scheduler,
                    on_step=record_norms, progress=progress, description=network_name(kind, depth))
    return record


def first_to_last(norms):
    return norms[0] / norms[-1]


def summarize(record):
    """How much the gradient norm changes from the first layer to the last."""
    blocks, convs = record["block_input_norms"], record["conv_weight_norms"]
    return {
        "block_input_first_to_last_at_init": first_to_last(blocks[0]),
        "conv_weight_first_to_last_at_init": first_to_last(convs[0]),
        "block_input_first_to_last_at_end": first_to_last(blocks[-1]),
        "conv_weight_first_to_last_at_end": first_to_last(convs[-1]),
    }


def csv_rows(networks):
    rows = []
    for name, record in networks.items():
        for position, iteration in enumerate(record["iterations"]):
            for quantity, names in (("block_input", None), ("conv_weight", record["conv_names"])):
                for layer, norm in enumerate(record[f"{quantity}_norms"][position]):
                    rows.append({"network": name, "kind": record["kind"], "depth": record["depth"],
                                 "iteration": iteration, "quantity": quantity, "layer": layer,
                                 "name": f"x_{layer}" if names is None else names[layer], "norm": norm})
    return rows


LINE_STYLES = {"resnet": "-", "plain": "--", "highway": ":", "densenet": "-."}


def line_style(record, depths):
    """Colour by depth (tab10: distinct, and dark enough on white); solid for residual, dashed for plain,
    dotted for highway and dash-dotted for dense networks."""
    import matplotlib

    colour = matplotlib.colormaps["tab10"](depths.index(record["depth"]) % 10)
    return {"color": colour, "linestyle": LINE_STYLES[record["kind"]], "linewidth": 1.4}


def plot_at_initialisation(networks, settings, out):
    figure, (blocks_axis, convs_axis) = new_figure(2)
    for name, record in networks.items():
        style = line_style(record, list(settings["depths"]))
        blocks_axis.plot(record["block_input_norms"][0], label=name, **style)
        convs_axis.plot(record["conv_weight_norms"][0], label=name, **style)
    blocks_axis.set(xlabel="block index l (x_L: last block's output)", ylabel="||dL/dx_l||",
                    title="gradient at each block's input")
    convs_axis.set(xlabel="convolution index (input side first)", ylabel="||dL/dW||",
                   title="gradient of each conv weight")
    for axis in (blocks_axis, convs_axis):
        integer_ticks(axis.xaxis)
        axis.set_yscale("log")
        axis.grid(alpha=0.3, which="both")
    blocks_axis.legend(fontsize=7, ncol=2)
    return save_figure(figure, out, "gradient_norms.png",
                       f"gradient norms at initialisation ({settings['dataset']}, width {settings['width']}, "
                       f"batch {settings['batch_size']})")


def plot_during_training(networks, settings, out):
    figure, (axis,) = new_figure(1, width_per_column=6.0)
    for name, record in networks.items():
        ratios = [first_to_last(norms) for norms in record["block_input_norms"]]
        axis.plot(record["iterations"], ratios, label=name, **line_style(record, list(settings["depths"])))
    axis.set(xlabel="SGD iteration", ylabel="||dL/dx_0|| / ||dL/dx_L||", yscale="log",
             title="first-block over last-block gradient norm")
    integer_ticks(axis.xaxis)
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, ncol=2)
    return save_figure(figure, out, "gradient_norms_training.png")


def distance_from_one(ratio):
    """How many powers of ten a ratio lies from 1: |log10 ratio|."""
    return abs(math.log10(ratio))


def norms_claims(summaries, settings):
    """At the deepest depth: the first-to-last ratio of every network with shortcuts (resnet, and highway or
    densenet when swept) lies closer to 1 than the plain net's, at initialisation and at the end, over the
    seeds (in powers of ten). No claim without a plain network to compare with."""
    deep, kinds = max(settings["depths"]), settings["kinds"]
    claims = {}
    if "plain" not in kinds:
        return claims
    for when, key in (("at initialisation", "block_input_first_to_last_at_init"),
                      ("after training", "block_input_first_to_last_at_end")):
        distances = {kind: [distance_from_one(summary[network_name(kind, deep)][key]) for summary in summaries]
                     for kind in kinds}
        for kind in kinds:
            if kind != "plain":
                claims[f"{kind}_closer_to_one_{'at_init' if when.startswith('at') else 'at_end'}"] = lower(
                    f"{when}, ||dL/dx_0|| / ||dL/dx_L|| of {kind}-{deep} lies closer to 1 than plain-{deep}'s "
                    f"(|log10 ratio|)",
                    f"{kind}-{deep}", distances[kind], f"plain-{deep}", distances["plain"])
    return claims


def geometric_mean(values):
    return 10 ** (sum(math.log10(v) for v in values) / len(values))


def gradient_norms(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
                   progress=None, jobs=1, **overrides):
    """Measure per-layer gradient norms of plain and residual networks of several depths.

    ``preset`` is "tiny", "laptop" or "gpu" (see ``PRESETS``); any of its settings can be
    overridden by keyword, e.g. ``gradient_norms("laptop", depths=(20, 56), iterations=10)``.
    Every network is measured once per seed (``seed``, ``seed + 1``, ...: the ``seeds`` setting),
    ``jobs`` trainings at a time (common.in_parallel; the command line runs one per core).
    Writes gradient_norms.csv / .json / .png and gradient_norms_training.png into ``out``
    (unless None) and returns a dict with "settings", "networks" (the raw norms per network,
    of the first seed), "runs" (per seed, the first-to-last ratios per network), "summary"
    (per network, the geometric mean of each ratio over the seeds), "spread" (per network, each
    ratio's per-seed values, mean, min and max) and "claims".
    """
    settings = choose_settings(PRESETS, preset, overrides)
    unknown = sorted(set(settings["kinds"]) - set(BUILDERS))
    if unknown or not settings["kinds"]:
        raise ValueError(f"unknown network kind(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from: {', '.join(BUILDERS)}")
    seeds = seeds_from(seed, settings["seeds"])
    device = start(seed, device)
    began = time.perf_counter()
    train_set, _ = load_data(settings["dataset"], data_root, download, settings["train_size"], None, seed)
    trainings = [(kind, depth, run_seed)
                 for run_seed in seeds for depth in settings["depths"] for kind in settings["kinds"]]
    records = in_parallel(measure_network, [(kind, depth, settings, train_set, run_seed, device,
                                             progress if jobs <= 1 else False)
                                            for kind, depth, run_seed in trainings], jobs, progress)
    networks = {network_name(kind, depth): record  # the first seed's raw norms, for the figures
                for (kind, depth, run_seed), record in zip(trainings, records) if run_seed == seeds[0]}
    runs = {run_seed: {} for run_seed in seeds}
    for (kind, depth, run_seed), record in zip(trainings, records):
        runs[run_seed][network_name(kind, depth)] = summarize(record)
    summaries = list(runs.values())
    keys = summaries[0][next(iter(networks))].keys()
    result = {
        "experiment": "gradient_norms", "preset": preset, "seeds": seeds, "device": device, "jobs": jobs,
        "settings": settings, "seconds": round(time.perf_counter() - began, 2),
        "summary": {name: {key: geometric_mean([summary[name][key] for summary in summaries]) for key in keys}
                    for name in networks},
        "spread": {name: {key: spread([summary[name][key] for summary in summaries]) for key in keys}
                   for name in networks},
        "claims": norms_claims(summaries, settings),
        "runs": runs,
        "networks": networks,
    }
    write_csv(out, "gradient_norms.csv", csv_rows(networks))
    write_json(out, "gradient_norms.json", result)
    plot_at_initialisation(networks, settings, out)
    plot_during_training(networks, settings, out)
    return result
