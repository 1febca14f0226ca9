"""He et al. 2016, Table 1 / Fig. 2 and Table 2 / Fig. 4: which residual unit trains best, and why.

Every unit of ``minires/models/residual_variants.py`` is trained with one recipe, on the same batches
in the same order: the shortcut variants (constant scaling, gating, a 1x1 convolution, dropout) with
the original BN/ReLU placement, and the activation placements with the identity shortcut. The paper's
qualitative findings, which this experiment checks:

* the identity shortcut trains best; constant scaling, shortcut-only gating and the dropout shortcut
  train clearly worse. All three multiply the signal on the shortcut by something below 1 (0.5,
  1 - g(x), random zeros), and over L units the gradient reaching the first layers by the shortcuts
  by its L-th power (the model file's docstring derives it);
* full pre-activation trains at least as well as the original unit; BN after the addition, which puts
  a BN on the shortcut path, trains worse.

A training whose loss becomes infinite or NaN (the paper's "fail") stops there; its final training loss
counts as infinite, worse than any finite one (in the JSON, where no infinity is allowed: null).

What is compared: the *training loss* at the end (the mean cross-entropy of the last ``report_every``
training batches), because it is about optimisation, not overfitting, and it still separates networks
that all classify the training images almost perfectly. Each network is trained with each of ``seeds``
seeds; a claim "holds" when every seed of one network ends below every seed of the other
(minires/experiments/claims.py). The gradient at every block's input, ||dL/dx_l||, is recorded at
initialisation and after training (``BlockWatch``), to see where each unit lets the gradient through.

Gates: exclusive gating starts with b_g = -6 (the gate nearly closed on F: the paper's best setting
for it), shortcut-only gating with b_g = 0 (1 - g = 0.5 on the shortcut at the start, like constant
scaling: the paper's row that trains worse; with b_g = -6 it starts as the identity).

Presets:
    tiny    depth 8, width 2, 256 MNIST-sample images, 6 iterations: a smoke test, no claim
    laptop  depth 32 (15 units), width 4, the bundled MNIST sample, batch 32, 600 iterations,
            lr 0.1 divided by 10 at 50% and 75%, 2 seeds (22 trainings, ~12 minutes on 2 cores)
    gpu     the paper's sizes: ResNet-110, width 16, CIFAR-10 with pad-crop and flips, batch 128,
            64,000 iterations, lr 0.1 divided by 10 at 32k and 48k, weight decay 1e-4, 3 seeds
"""
import math
import time
import warnings

import minires
from minires.experiments.claims import lower, seeds_from, spread
from minires.experiments.common import (
    choose_settings, in_parallel, integer_ticks, l2_norm, new_figure, save_figure, start, write_csv, write_json,
)
from minires.experiments.recipe import BlockWatch, endless_batches, training_data_and_test_batches, sgd_with_steps
from minires.models.residual_variants import cifar_resnet
from minires.training import evaluate, train_steps

# name -> (shortcut kind, activation, initial gate bias b_g)
VARIANTS = {
    "identity": ("identity", "original", None),
    "constant_scaling": ("constant_scaling", "original", None),
    "constant_scaling_both": ("constant_scaling_both", "original", None),
    "exclusive_gating": ("exclusive_gating", "original", -6.0),
    "shortcut_only_gating": ("shortcut_only_gating", "original", 0.0),
    "conv1x1": ("conv1x1", "original", None),
    "dropout": ("dropout", "original", None),
    "bn_after_add": ("identity", "bn_after_add", None),
    "relu_before_add": ("identity", "relu_before_add", None),
    "relu_only_preact": ("identity", "relu_only_preact", None),
    "full_preact": ("identity", "full_preact", None),
}
SHORTCUT_GROUP = ("identity", "constant_scaling", "constant_scaling_both", "exclusive_gating",
                  "shortcut_only_gating", "conv1x1", "dropout")  # Table 1; the rest are Table 2

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=256, test_size=128, depth=8, width=2, batch_size=16,
                 iterations=6, report_every=3, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=False,
                 seeds=2, variants=tuple(VARIANTS)),
    "laptop": dict(dataset="mnist_sample", train_size=None, test_size=None, depth=32, width=4, batch_size=32,
                   iterations=600, report_every=50, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75),
                   augment=False, seeds=2, variants=tuple(VARIANTS)),
    "gpu": dict(dataset="cifar10", train_size=None, test_size=None, depth=110, width=16, batch_size=128,
                iterations=64000, report_every=1000, lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75),
                augment=True, seeds=3, variants=tuple(VARIANTS)),
}


def build_variant(name, settings, dataset_like, device):
    kind, activation, gate_bias = VARIANTS[name]
    in_channels, num_classes = dataset_like.images.shape[1], len(dataset_like.classes)
    model = cifar_resnet(settings["depth"], width=settings["width"], num_classes=num_classes, in_channels=in_channels,
                         shortcut_kind=kind, activation=activation,
                         gate_bias=-6.0 if gate_bias is None else gate_bias)
    return model.to(device)


def train_and_record(name, settings, train_set, test_loader, seed, device, progress):
    """Train one variant. Returns (curve, block-input gradient norms at initialisation and at the end, seconds);
    the curve's points hold the training loss and error since the previous point and the test error."""
    began = time.perf_counter()
    minires.manual_seed(seed)
    model = build_variant(name, settings, train_set, device)
    optimizer, scheduler = sgd_with_steps(model, settings)
    batches = endless_batches(train_set, settings["batch_size"], seed, settings["augment"])
    num_classes = len(train_set.classes)
    curve, norms = [], {}

    def report(iteration, metrics):
        if iteration in (1, settings["iterations"]):  # the first step's backward: the network at initialisation
            norms["at_init" if iteration == 1 else "at_end"] = [l2_norm(g) for g in watch.grads]
        if iteration % settings["report_every"] == 0 or iteration == settings["iterations"]:
            _, test_accuracy, _ = evaluate(model, test_loader, num_classes, device)
            loss = metrics.loss
            curve.append({"iteration": iteration, "train_loss": loss if math.isfinite(loss) else math.inf,
                          "train_error": metrics.error, "test_error": 1 - test_accuracy})
            metrics.reset()
            if not math.isfinite(loss):  # diverged (the paper's "fail"): worse than any finite loss; stop here
                norms["at_end"] = [l2_norm(g) for g in watch.grads]
                return True
        return False

    # A unit that diverges (the paper's "fail": dropout on the shortcut does) overflows float32 on its way
    # to infinity; the curve records it, so NumPy's overflow warnings (RuntimeWarning, from any of the
    # threads an op uses) would only repeat it, every step.
    with BlockWatch(model) as watch, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        train_steps(model, batches, optimizer, settings["iterations"], device, scheduler=scheduler, on_step=report,
                    progress=progress, description=name)
    return curve, norms, round(time.perf_counter() - began, 2)


def shortcut_claims(runs, variants):
    """The paper's qualitative findings, on the final training losses over the seeds."""
    def losses(name):
        return name, [run["final"][name]["train_loss"] for run in runs.values()]

    claims = {}
    for worse in ("constant_scaling", "shortcut_only_gating", "dropout"):
        if {"identity", worse} <= set(variants):
            claims[f"identity_beats_{worse}"] = lower(
                f"the identity shortcut trains better than {worse} (lower final training loss)",
                *losses("identity"), *losses(worse))
    if {"full_preact", "bn_after_add"} <= set(variants):
        claims["full_preact_beats_bn_after_add"] = lower(
            "full pre-activation trains better than BN after the addition (lower final training loss)",
            *losses("full_preact"), *losses("bn_after_add"))
    return claims


def plot(runs, settings, out):
    """Training loss of every variant (mean over the seeds), and ||dL/dx_l|| at initialisation (first seed)."""
    import matplotlib

    figure, (loss_axis, norm_axis) = new_figure(2, width_per_column=6.0, height=4.5)
    first = runs[min(runs)]
    for index, name in enumerate(settings["variants"]):
        style = {"color": matplotlib.colormaps["tab20"](index % 20), "linewidth": 1.4,
                 "linestyle": "-" if name in SHORTCUT_GROUP else "--"}
        curves = [run["curves"][name] for run in runs.values()]
        points = min(len(curve) for curve in curves)  # a diverged training stopped early (and its loss is inf)
        x = [point["iteration"] for point in curves[0][:points]]
        mean = [sum(curve[i]["train_loss"] for curve in curves) / len(curves) for i in range(points)]
        loss_axis.plot(x, mean, label=name, **style)
        norm_axis.plot(first["norms"][name]["at_init"], label=name, **style)
    loss_axis.set(xlabel="iteration", ylabel="training loss (above 10: off the top)", yscale="log",
                  ylim=(None, 10), title="training loss (solid: shortcut kinds; dashed: activation placements)")
    norm_axis.set(xlabel="block index l (x_L: last block's output)", ylabel="||dL/dx_l||", yscale="log",
                  title="gradient at each block's input, at initialisation")
    for axis in (loss_axis, norm_axis):
        integer_ticks(axis.xaxis)
        axis.grid(alpha=0.3, which="both")
    loss_axis.legend(fontsize=7, ncol=2)
    seeds = f", mean of {len(runs)} seeds" if len(runs) > 1 else ""
    return save_figure(figure, out, "shortcuts.png",
                       f"residual units: depth {settings['depth']}, width {settings['width']}, {settings['dataset']}, "
                       f"{settings['iterations']} iterations{seeds}")


def shortcuts(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False, progress=None,
              jobs=1, **overrides):
    """Train every residual unit of ``settings["variants"]`` with one recipe and compare their final training losses.

    Writes shortcuts.csv (every curve point), shortcuts.json and shortcuts.png into ``out`` (unless None).
    Returns a dict with "runs" (per seed: "curves", "final" per variant, "norms" per variant at_init / at_end),
    "final" (per variant: the spread over the seeds of the final training loss, training error and test error,
    the unit's settings and the seconds) and "claims".
    """
    settings = choose_settings(PRESETS, preset, overrides)
    unknown = sorted(set(settings["variants"]) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from: {', '.join(VARIANTS)}")
    seeds = seeds_from(seed, settings["seeds"])
    device = start(seed, device)
    began = time.perf_counter()
    train_set, test_loader = training_data_and_test_batches(settings, data_root, download, seed)
    trainings = [(name, run_seed) for run_seed in seeds for name in settings["variants"]]
    trained = in_parallel(train_and_record, [(name, settings, train_set, test_loader, run_seed, device,
                                              progress if jobs <= 1 else False) for name, run_seed in trainings],
                          jobs, progress)
    runs = {run_seed: {"curves": {}, "final": {}, "norms": {}} for run_seed in seeds}
    for (name, run_seed), (curve, norms, seconds) in zip(trainings, trained):
        runs[run_seed]["curves"][name] = curve
        runs[run_seed]["norms"][name] = norms
        runs[run_seed]["final"][name] = {key: curve[-1][key] for key in ("train_loss", "train_error", "test_error")}
        runs[run_seed]["final"][name]["diverged_at"] = (curve[-1]["iteration"]
                                                        if math.isinf(curve[-1]["train_loss"]) else None)
        runs[run_seed]["final"][name]["seconds"] = seconds
    final = {}
    for name in settings["variants"]:
        kind, activation, gate_bias = VARIANTS[name]
        per_seed = [run["final"][name] for run in runs.values()]
        final[name] = {"shortcut": kind, "activation": activation, "gate_bias": gate_bias,
                       **{key: spread([row[key] for row in per_seed])
                          for key in ("train_loss", "train_error", "test_error")},
                       "diverged": sum(row["diverged_at"] is not None for row in per_seed),
                       "seconds": round(sum(row["seconds"] for row in per_seed), 2)}
    result = {"experiment": "shortcuts", "preset": preset, "seeds": seeds, "device": device, "jobs": jobs,
              "seconds": round(time.perf_counter() - began, 2), "settings": settings, "final": final,
              "claims": shortcut_claims(runs, settings["variants"]), "runs": runs}
    write_csv(out, "shortcuts.csv", [{"seed": run_seed, "variant": name, **point}
                                     for run_seed, run in runs.items()
                                     for name, curve in run["curves"].items() for point in curve])
    write_json(out, "shortcuts.json", result)
    plot(runs, settings, out)
    return result
