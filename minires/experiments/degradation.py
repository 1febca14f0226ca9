"""The degradation problem (He et al. 2015, Fig. 6): deeper plain networks train *worse*.

Four networks are trained with one recipe, on the same batches in the same order:
plain-20 and plain-56, ResNet-20 and ResNet-56. The paper's observation is about
the *training* error, so it is not overfitting: the deeper plain network fits
its own training data worse than the shallower one, although it could copy the
shallow network and set its extra layers to the identity. With shortcuts the
extra layers only have to learn a residual, which starts near zero, and the
deeper ResNet trains at least as well as the shallower one.

The curves are drawn like the paper's: thin lines for the training error
(misclassified fraction of the training batches since the last point, measured
while training) and thick lines for the test error (in eval mode).

Every network is trained with each of ``seeds`` seeds (other initial weights, another batch
order), and the claims compare the networks' final training errors over the seeds
(minires/experiments/claims.py): "holds" when every seed of one ends below every seed of the
other, "within noise" when their ranges overlap, "does not hold" when the order is reversed;
never a bare True or False.

Presets ("laptop" is the one that shows it on a 2-core CPU in about 15 minutes):
    tiny    depths 8 and 20, width 2, 256 MNIST-sample images, 2 seeds: a smoke test, no claim
    laptop  depths 20 and 56, width 4 (stages of 4, 8, 16 channels), the bundled MNIST sample
            (8,000 training / 2,000 held-out images), batch 32, 1,200 iterations,
            lr 0.1 divided by 10 at 50% and 75%, 3 seeds
    gpu     the paper's CIFAR-10 recipe: width 16, all 50,000 images with pad-crop and flips,
            batch 128, 64,000 iterations, lr 0.1 divided by 10 at 32k and 48k, weight decay 1e-4,
            3 seeds (12 trainings of 64,000 iterations: hours on a GPU)
"""
import time

import minires
from minires.experiments.claims import HOLDS, lower, seeds_from, spread
from minires.experiments.common import (
    choose_settings, in_parallel, integer_ticks, new_figure, save_figure, start, write_csv, write_json,
)
from minires.experiments.recipe import (
    NETWORK_KINDS, build_network, endless_batches, training_data_and_test_batches, network_name, sgd_with_steps,
)
from minires.training import evaluate, train_steps

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=256, test_size=128, depths=(8, 20), width=2,
                 batch_size=16, iterations=12, report_every=6, lr=0.1, weight_decay=1e-4,
                 milestones=(0.5, 0.75), augment=False, seeds=2),
    "laptop": dict(dataset="mnist_sample", train_size=None, test_size=None, depths=(20, 56), width=4,
                   batch_size=32, iterations=1200, report_every=100, lr=0.1, weight_decay=1e-4,
                   milestones=(0.5, 0.75), augment=False, seeds=3),
    "gpu": dict(dataset="cifar10", train_size=None, test_size=None, depths=(20, 56), width=16,
                batch_size=128, iterations=64000, report_every=1000, lr=0.1, weight_decay=1e-4,
                milestones=(0.5, 0.75), augment=True, seeds=3),
}


def train_and_record(kind, depth, settings, train_set, test_loader, seed, device, progress):
    """Train one network; returns its curve, a list of {iteration, lr, train_error, test_error},
    and the seconds it took.

    Every ``report_every`` iterations (and after the last) a point is added: the lr of that
    iteration, the fraction of training images misclassified *while training* since the
    last point (as in the training curves of He et al. 2015), and the test error in eval mode.
    """
    began = time.perf_counter()
    minires.manual_seed(seed)
    model = build_network(kind, depth, settings["width"], train_set, device)
    optimizer, scheduler = sgd_with_steps(model, settings)
    batches = endless_batches(train_set, settings["batch_size"], seed, settings["augment"])
    num_classes = len(train_set.classes)
    curve = []

    def report(iteration, metrics):
        if iteration % settings["report_every"] == 0 or iteration == settings["iterations"]:
            _, test_accuracy, _ = evaluate(model, test_loader, num_classes, device)
            curve.append({"iteration": iteration, "lr": optimizer.param_groups[0]["lr"],
                          "train_error": metrics.error, "test_error": 1 - test_accuracy})
            metrics.reset()

    train_steps(model, batches, optimizer, settings["iterations"], device, scheduler=scheduler, on_step=report,
                progress=progress, description=network_name(kind, depth))
    return curve, round(time.perf_counter() - began, 2)


def mean_curve(runs, name, key):
    """The per-seed values of ``key`` along network ``name``'s curve: (iterations, mean, min, max)."""
    curves = [run["curves"][name] for run in runs.values()]
    per_point = [[curve[i][key] for curve in curves] for i in range(len(curves[0]))]
    iterations = [row["iteration"] for row in curves[0]]
    return (iterations, [100 * sum(v) / len(v) for v in per_point],
            [100 * min(v) for v in per_point], [100 * max(v) for v in per_point])


def plot_curves(runs, settings, out):
    """Left: the plain networks; right: the ResNets (as in the paper's Fig. 6): the mean over the
    seeds of each curve, with a band from the lowest to the highest seed for the training error,
    on one error scale that shows the final errors clearly (the first, high points run off the top)."""
    figure, axes = new_figure(2)
    colours = dict(zip(settings["depths"], ("tab:blue", "tab:red")))
    final_errors = [run["final"][name][key] for run in runs.values() for name in run["final"]
                    for key in ("train_error", "test_error")]
    top = min(100.0, max(5.0, 200 * max(final_errors)))
    seeds = len(runs)
    for axis, kind in zip(axes, NETWORK_KINDS):
        for depth in settings["depths"]:
            name = network_name(kind, depth)
            x, train, low, high = mean_curve(runs, name, "train_error")
            axis.plot(x, train, color=colours[depth], linewidth=0.8, linestyle="--", label=f"{name} train")
            if seeds > 1:
                axis.fill_between(x, low, high, color=colours[depth], alpha=0.15, linewidth=0)
            axis.plot(x, mean_curve(runs, name, "test_error")[1], color=colours[depth], linewidth=2,
                      label=f"{name} test")
        axis.set(xlabel="iteration", ylabel="error (%)", ylim=(0, top),
                 title={"plain": "plain networks", "resnet": "ResNets"}[kind])
        integer_ticks(axis.xaxis)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    band = f", mean of {seeds} seeds (band: lowest to highest training error)" if seeds > 1 else ""
    return save_figure(figure, out, "degradation.png",
                       f"degradation: {settings['dataset']}, width {settings['width']}, "
                       f"{settings['iterations']} iterations of batch {settings['batch_size']}{band}")


def degradation_claims(runs, settings):
    """The paper's three comparisons of final training errors, judged over the seeds."""
    shallow, deep = settings["depths"]

    def train_errors(kind, depth):
        name = network_name(kind, depth)
        return name, [run["final"][name]["train_error"] for run in runs.values()]

    deeper_resnet = lower(
        f"the deeper ResNet trains better (resnet-{deep} ends with the lower training error)",
        *train_errors("resnet", deep), *train_errors("resnet", shallow))
    if deeper_resnet["verdict"] != HOLDS:
        deeper_resnet["note"] = (
            f"in the paper (CIFAR-10, Fig. 6) resnet-{deep} ends a few points of training error below "
            f"resnet-{shallow}; where both fit the training data almost perfectly, as on the MNIST sample, "
            f"the seeds cannot separate them: the paper's sizes are --preset gpu")
    return {
        "plain_deeper_trains_worse": lower(
            f"the deeper plain net trains worse (plain-{shallow} ends with the lower training error)",
            *train_errors("plain", shallow), *train_errors("plain", deep)),
        "resnet_deeper_trains_better": deeper_resnet,
        "resnet_beats_plain_at_depth": lower(
            f"at depth {deep} the ResNet trains better than the plain net",
            *train_errors("resnet", deep), *train_errors("plain", deep)),
    }


def degradation(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
                progress=None, jobs=1, **overrides):
    """Train plain and residual networks of two depths with one recipe and compare training errors.

    Each network is trained once per seed (``seed``, ``seed + 1``, ...: the preset's ``seeds``),
    ``jobs`` trainings at a time (common.in_parallel; the command line runs one per core).
    Writes degradation.csv / .json / .png into ``out`` (unless None). Returns a dict with
    "runs" (per seed: "curves", per network rows of iteration, lr, train_error, test_error,
    and "final", the last train and test error and the seconds it took), "final" (per network:
    the spread over the seeds of the final train and test errors, and the total seconds), and
    "claims" (minires/experiments/claims.py: each with its verdict, margin and both sides' spread).
    """
    settings = choose_settings(PRESETS, preset, overrides)
    if len(settings["depths"]) != 2:
        raise ValueError(f"degradation compares two depths, e.g. depths=(20, 56); got {settings['depths']}")
    seeds = seeds_from(seed, settings["seeds"])
    device = start(seed, device)
    began = time.perf_counter()
    train_set, test_loader = training_data_and_test_batches(settings, data_root, download, seed)
    trainings = [(kind, depth, run_seed)
                 for run_seed in seeds for kind in NETWORK_KINDS for depth in settings["depths"]]
    trained = in_parallel(train_and_record, [(kind, depth, settings, train_set, test_loader, run_seed, device,
                                              progress if jobs <= 1 else False)
                                             for kind, depth, run_seed in trainings], jobs, progress)
    runs = {run_seed: {"curves": {}, "final": {}} for run_seed in seeds}
    for (kind, depth, run_seed), (curve, seconds) in zip(trainings, trained):
        name = network_name(kind, depth)
        runs[run_seed]["curves"][name] = curve
        runs[run_seed]["final"][name] = {"train_error": curve[-1]["train_error"],
                                         "test_error": curve[-1]["test_error"], "seconds": seconds}
    final = {name: {"train_error": spread([run["final"][name]["train_error"] for run in runs.values()]),
                    "test_error": spread([run["final"][name]["test_error"] for run in runs.values()]),
                    "seconds": round(sum(run["final"][name]["seconds"] for run in runs.values()), 2)}
             for name in runs[seeds[0]]["final"]}
    result = {"experiment": "degradation", "preset": preset, "seeds": seeds, "device": device, "jobs": jobs,
              "seconds": round(time.perf_counter() - began, 2), "settings": settings, "final": final,
              "claims": degradation_claims(runs, settings), "runs": runs}
    write_csv(out, "degradation.csv", [{"seed": run_seed, "network": name, **row}
                                       for run_seed, run in runs.items()
                                       for name, curve in run["curves"].items() for row in curve])
    write_json(out, "degradation.json", result)
    plot_curves(runs, settings, out)
    return result
