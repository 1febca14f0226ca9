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

Presets ("laptop" is the one that shows it on a 2-core CPU in about 15 minutes):
    tiny    depths 8 and 20, width 2, 256 MNIST-sample images: a smoke test, no claim
    laptop  depths 20 and 56, width 4 (stages of 4, 8, 16 channels), the bundled MNIST sample
            (8,000 training / 2,000 held-out images), batch 32, 1,200 iterations,
            lr 0.1 divided by 10 at 50% and 75%
    gpu     the paper's CIFAR-10 recipe: width 16, all 50,000 images with pad-crop and flips,
            batch 128, 64,000 iterations, lr 0.1 divided by 10 at 32k and 48k, weight decay 1e-4
"""
import time

import minires
from minires.experiments.common import (
    choose_settings, new_figure, save_figure, start, write_csv, write_json,
)
from minires.experiments.recipe import (
    NETWORK_KINDS, build_network, endless_batches, held_out_batches, load_data, network_name, sgd_with_steps,
)
from minires.training import evaluate, train_steps

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=256, test_size=128, depths=(8, 20), width=2,
                 batch_size=16, iterations=12, report_every=6, lr=0.1, weight_decay=1e-4,
                 milestones=(0.5, 0.75), augment=False),
    "laptop": dict(dataset="mnist_sample", train_size=None, test_size=None, depths=(20, 56), width=4,
                   batch_size=32, iterations=1200, report_every=100, lr=0.1, weight_decay=1e-4,
                   milestones=(0.5, 0.75), augment=False),
    "gpu": dict(dataset="cifar10", train_size=None, test_size=None, depths=(20, 56), width=16,
                batch_size=128, iterations=64000, report_every=1000, lr=0.1, weight_decay=1e-4,
                milestones=(0.5, 0.75), augment=True),
}


def train_and_record(kind, depth, settings, train_set, test_loader, seed, device, progress):
    """Train one network; returns its curve: a list of {iteration, lr, train_error, test_error}.

    Every ``report_every`` iterations (and after the last) a point is added: the lr of that
    iteration, the fraction of training images misclassified *while training* since the
    last point (as in the training curves of He et al. 2015), and the test error in eval mode.
    """
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
    return curve


def plot_curves(curves, settings, out):
    """Left: the plain networks; right: the ResNets (as in the paper's Fig. 6), on one error scale
    that shows the final errors clearly (the first, high points run off the top)."""
    figure, axes = new_figure(2)
    colours = dict(zip(settings["depths"], ("tab:orange", "tab:red")))
    final_errors = [row[key] for curve in curves.values() for row in curve[-1:] for key in ("train_error", "test_error")]
    top = min(100.0, max(5.0, 200 * max(final_errors)))
    for axis, kind in zip(axes, NETWORK_KINDS):
        for depth in settings["depths"]:
            curve = curves[network_name(kind, depth)]
            x = [row["iteration"] for row in curve]
            axis.plot(x, [100 * row["train_error"] for row in curve], color=colours[depth], linewidth=0.8,
                      linestyle="--", label=f"{kind}-{depth} train")
            axis.plot(x, [100 * row["test_error"] for row in curve], color=colours[depth], linewidth=2,
                      label=f"{kind}-{depth} test")
        axis.set(xlabel="iteration", ylabel="error (%)", ylim=(0, top),
                 title={"plain": "plain networks", "resnet": "ResNets"}[kind])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return save_figure(figure, out, "degradation.png",
                       f"degradation: {settings['dataset']}, width {settings['width']}, "
                       f"{settings['iterations']} iterations of batch {settings['batch_size']}")


def degradation(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
                progress=None, **overrides):
    """Train plain and residual networks of two depths with one recipe and compare training errors.

    Writes degradation.csv / .json / .png into ``out`` (unless None). Returns a dict with
    "curves" (per network: rows of iteration, lr, train_error, test_error), "final"
    (per network: the last train and test error and the seconds it took), and
    "claims": whether the deeper plain net ends with the higher training error, and
    whether the deeper ResNet ends with a training error at or below the shallower one's.
    """
    settings = choose_settings(PRESETS, preset, overrides)
    if len(settings["depths"]) != 2:
        raise ValueError(f"degradation compares two depths, e.g. depths=(20, 56); got {settings['depths']}")
    device = start(seed, device)
    train_set, test_set = load_data(settings["dataset"], data_root, download,
                                    settings["train_size"], settings["test_size"], seed)
    test_loader = held_out_batches(test_set, train_set)
    curves, final = {}, {}
    for kind in NETWORK_KINDS:
        for depth in settings["depths"]:
            name = network_name(kind, depth)
            began = time.perf_counter()
            curves[name] = train_and_record(kind, depth, settings, train_set, test_loader, seed, device, progress)
            final[name] = {"train_error": curves[name][-1]["train_error"],
                           "test_error": curves[name][-1]["test_error"],
                           "seconds": round(time.perf_counter() - began, 2)}
    shallow, deep = settings["depths"]
    claims = {
        "plain_deeper_trains_worse":
            final[network_name("plain", deep)]["train_error"] > final[network_name("plain", shallow)]["train_error"],
        "resnet_deeper_trains_at_least_as_well":
            final[network_name("resnet", deep)]["train_error"] <= final[network_name("resnet", shallow)]["train_error"],
    }
    result = {"experiment": "degradation", "preset": preset, "seed": seed, "device": device,
              "settings": settings, "final": final, "claims": claims, "curves": curves}
    write_csv(out, "degradation.csv", [{"network": name, **row} for name, curve in curves.items() for row in curve])
    write_json(out, "degradation.json", result)
    plot_curves(curves, settings, out)
    return result
