"""``python -m minires compare MODEL...``: train several models with one recipe and put their costs side by side.

    python -m minires compare mnist_resnet resnet20 plain20 --preset laptop

Every model (a name from ``minires.models.REGISTRY``) is trained with the same SGD recipe
(``recipe.sgd_with_steps``) on the same batches in the same order (``endless_batches`` with
one seed), its weights drawn from the same seed. The table then holds, per model:

    params          its parameters (``minires.summary``, each parameter once)
    MACs            multiply-adds of one image at the data's size (``minires.summary``)
    step ms         the median time of a training step (batch, forward, backward, update),
                    over every step after the first (which also warms caches and allocates
                    the momentum buffers); each step ends by reading its loss back, so on a
                    GPU the time includes waiting for the step's kernels
    peak extra MB   how far the process's resident memory rose during the first training
                    step (``cpu_memory.peak_extra_bytes``): activations kept for backward,
                    gradients, momentum buffers, scratch. It is host memory: on a GPU run it
                    is what the step adds on the host, not on the device
    train loss      the mean training loss over the last tenth of the iterations
    test acc        accuracy on the held-out set, in eval mode, after training

Each model trains in a fresh process (multiprocessing "spawn", one task per process): memory
that one model's steps freed, and a process keeps for reuse, would otherwise hide the next
model's memory. By default the processes run one after another, so every step time is the
model's own, on all the cores it uses. ``jobs`` > 1 runs that many side by side, one core
each (``common.in_parallel``'s setting): faster, but then the step times share the machine
and say less about each model, and the command warns so. As with any spawned processes, call
:func:`compare` from a script of your own only under ``if __name__ == "__main__":``.

Outputs in the output folder: ``compare.csv`` (the table), ``compare.json`` (the table, the
settings and every model's loss per iteration) and ``compare.png`` (the training losses, and
the test accuracies as bars). Like ``python -m minires train``, the command never writes over
an earlier run: the default folder is runs/compare-PRESET, or runs/compare-PRESET-2, ...

Presets:
    tiny    256 images of the bundled MNIST sample, batch 16, 8 iterations: seconds, for the tests
    laptop  the bundled MNIST sample (8,000 training / 2,000 held-out images), batch 32, 300
            iterations, lr 0.1 divided by 10 at 50% and 75%: a few minutes per model on 2 cores
    gpu     the paper's CIFAR-10 recipe: pad-crop and flips, batch 128, 64,000 iterations, lr 0.1
            divided by 10 at 50% and 75%, weight decay 1e-4 (hours per model on a GPU)
"""
import argparse
import math
import multiprocessing
import statistics
import sys
import time

import minires
from minires.backends.cpu_memory import keep_freed_memory, peak_extra_bytes
from minires.experiments.common import (
    fresh_output_folder,
    one_blas_thread, choose_settings, describe_presets, integer_ticks, new_figure, save_figure, start, write_csv,
    write_json,
)
from minires.experiments.recipe import endless_batches, held_out_batches, load_data, sgd_with_steps
from minires.models import REGISTRY, build_model
from minires.training import evaluate, train_steps
from minires.training.dataset_registry import DATASETS

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=256, test_size=128, batch_size=16, iterations=8,
                 lr=0.05, weight_decay=1e-4, milestones=(0.5, 0.75), augment=False),
    "laptop": dict(dataset="mnist_sample", train_size=None, test_size=None, batch_size=32, iterations=300,
                   lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=False),
    "gpu": dict(dataset="cifar10", train_size=None, test_size=None, batch_size=128, iterations=64000,
                lr=0.1, weight_decay=1e-4, milestones=(0.5, 0.75), augment=True),
}
DESCRIPTION = """\
Train several models (names from the model registry) with one SGD recipe, on the same batches,
each in a fresh process, and compare: parameters, multiply-adds of one image, median training-step
time, peak extra memory of a training step, final training loss and test accuracy.

The models train one after another (one process at a time), so each step time is the model's own;
--jobs N trains N side by side, one core each, and then the step times share the machine.
Writes compare.csv, compare.json and compare.png to --out (never over an earlier run).
Presets: tiny (seconds, for tests), laptop (minutes per model on a 2-core CPU, the bundled MNIST
sample), gpu (the paper's CIFAR-10 recipe)."""
COLUMNS = ("model", "params", "macs", "step_ms", "peak_extra_mb", "final_train_loss", "test_accuracy",
           "train_seconds")


# ---- one model, in a process of its own ------------------------------------------------------------

def train_and_measure(name, settings, seed, device, data_root, progress):
    """Train model ``name`` with ``settings``; returns its row of the table and its loss per iteration.

    Runs in a fresh process (see the module docstring), so it loads its own copy of the data
    (already downloaded by the caller) and the first training step is the first this process takes.
    """
    train_set, test_set = load_data(settings["dataset"], data_root, False, settings["train_size"],
                                    settings["test_size"], seed)
    num_classes = len(train_set.classes)
    minires.manual_seed(seed)
    model = build_model(name, train_set.images.shape[1], num_classes).to(device)
    optimizer, scheduler = sgd_with_steps(model, settings)
    batches = endless_batches(train_set, settings["batch_size"], seed, settings["augment"])
    losses, step_seconds, clock = [], [], [time.perf_counter()]

    def record(step, metrics):
        losses.append(metrics.loss)  # reading the loss back waits for the device: the step is done
        metrics.reset()
        now = time.perf_counter()
        step_seconds.append(now - clock[0])
        clock[0] = now

    began = time.perf_counter()
    # The first step alone, measured: in this fresh process nothing freed earlier can be reused.
    peak = peak_extra_bytes(lambda: train_steps(model, batches, optimizer, 1, device, scheduler=scheduler,
                                                on_step=record))
    keep_freed_memory()  # from now on, as in `minires train`: later steps reuse what a step frees
    clock[0] = time.perf_counter()
    train_steps(model, batches, optimizer, settings["iterations"] - 1, device, scheduler=scheduler,
                on_step=record, progress=progress, description=name)
    seconds = time.perf_counter() - began
    _, accuracy, _ = evaluate(model, held_out_batches(test_set, train_set), num_classes, device)
    counted = minires.summary(model, (1,) + tuple(train_set.images.shape[1:]), device)
    last = losses[-max(1, len(losses) // 10):]
    row = {"model": name, "params": counted.total_params, "macs": counted.total_macs,
           "step_ms": round(1000 * statistics.median(step_seconds[1:] or step_seconds), 3),
           "peak_extra_mb": round(peak / 2**20, 2), "final_train_loss": finite_or_none(sum(last) / len(last)),
           "test_accuracy": accuracy, "train_seconds": round(seconds, 2)}
    return row, [finite_or_none(loss) for loss in losses]


def finite_or_none(value):
    """A number for strict JSON: rounded to 6 digits, None where a diverged training made it NaN or infinite."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def in_fresh_processes(function, calls, jobs):
    """[function(*args) for args in calls], each call in a newly spawned process, ``jobs`` at a time."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no memory, threads or locks inherited
    initializer = one_blas_thread if jobs > 1 else None  # side by side: one core each
    with context.Pool(min(jobs, len(calls)), initializer=initializer, maxtasksperchild=1) as pool:
        # chunksize 1: a chunk is one task, so every call gets a process of its own
        return pool.starmap(function, calls, chunksize=1)


# ---- the comparison ------------------------------------------------------------------------------

def check_model_names(models):
    if not models:
        raise ValueError("name at least one model to compare, e.g. mnist_resnet resnet20")
    for name in models:
        if name not in REGISTRY:
            raise ValueError(f"unknown model {name!r}; choose from: {', '.join(sorted(REGISTRY))}")
    repeated = sorted({name for name in models if models.count(name) > 1})
    if repeated:
        raise ValueError(f"model {repeated[0]} is named twice; name each model once")


def timing_note(jobs):
    if jobs <= 1:
        return ("models trained one after another, one process at a time: each step time is the model's own, "
                "on all the cores it uses")
    return (f"warning: {jobs} trainings ran side by side, one core each, so their step times share the "
            f"machine and are not each model's time alone; leave out --jobs to time them one after another")


def compare(models, preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
            progress=None, jobs=1, **overrides):
    """Train every model in ``models`` (registry names) with the preset's recipe, each in a fresh process,
    ``jobs`` at a time; write compare.csv / .json / .png into ``out`` (unless None).

    Returns a dict with "rows" (one per model, the keys of ``COLUMNS``), "curves" (per model, the
    training loss of every iteration), "settings", "jobs", "timing" (how the step times were taken)
    and "seconds".
    """
    models = list(models)
    check_model_names(models)
    settings = choose_settings(PRESETS, preset, overrides)
    device = start(seed, device)
    began = time.perf_counter()
    train_set, _ = load_data(settings["dataset"], data_root, download, settings["train_size"],
                             settings["test_size"], seed)  # fails here, once, if the data is missing
    if settings["batch_size"] > len(train_set):
        raise ValueError(f"batch size {settings['batch_size']} is larger than the {len(train_set)} training "
                         f"images; choose a smaller --batch-size")
    trained = in_fresh_processes(train_and_measure, [(name, settings, seed, device, data_root,
                                                      progress if jobs <= 1 else False) for name in models], jobs)
    rows = [row for row, _ in trained]
    result = {"command": "compare", "preset": preset, "seed": seed, "device": device, "jobs": jobs,
              "timing": timing_note(jobs), "memory": "peak extra resident (host) memory of the first training step",
              "seconds": round(time.perf_counter() - began, 2), "settings": settings, "rows": rows,
              "curves": {name: curve for name, (_, curve) in zip(models, trained)}}
    write_csv(out, "compare.csv", rows)
    write_json(out, "compare.json", result)
    plot_comparison(result, out)
    return result


def plot_comparison(result, out):
    """Left: every model's training loss per iteration; right: the test accuracies as bars."""
    figure, (loss_axis, accuracy_axis) = new_figure(2)
    names = [row["model"] for row in result["rows"]]
    for name in names:
        curve = result["curves"][name]
        loss_axis.plot(range(1, len(curve) + 1), [math.nan if v is None else v for v in curve],
                       linewidth=1, label=name)
    loss_axis.set(xlabel="iteration", ylabel="training loss (cross-entropy)", title="training loss")
    integer_ticks(loss_axis.xaxis)
    loss_axis.grid(alpha=0.3)
    loss_axis.legend(fontsize=8)
    accuracies = [row["test_accuracy"] for row in result["rows"]]
    bars = accuracy_axis.bar(range(len(names)), accuracies, color=[f"C{i}" for i in range(len(names))])
    accuracy_axis.bar_label(bars, labels=[f"{a:.3f}" for a in accuracies], fontsize=8)
    accuracy_axis.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    accuracy_axis.set(ylabel="test accuracy", ylim=(0, 1.05), title="test accuracy after training")
    s = result["settings"]
    title = f"{s['dataset']}, {s['iterations']} iterations of batch {s['batch_size']}, seed {result['seed']}"
    return save_figure(figure, out, "compare.png", title)


# ---- the command ------------------------------------------------------------------------------------

def add_compare_arguments(parser):
    from minires.experiments.command import positive_int

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = "settings of each preset:\n" + describe_presets(PRESETS)
    parser.add_argument("models", nargs="+", metavar="MODEL", help="models to compare (names from the registry)")
    parser.add_argument("--preset", default="laptop", choices=list(PRESETS), help="default %(default)s")
    parser.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="replace the preset's data set")
    parser.add_argument("--iterations", type=positive_int, default=None, help="training steps per model")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="images per training step")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and the batch order (default 0)")
    parser.add_argument("--out", default=None, help="output folder (default runs/compare-PRESET, or "
                        "runs/compare-PRESET-2, ... when that holds a run); a folder holding a run is refused")
    parser.add_argument("--jobs", type=positive_int, default=1,
                        help="trainings side by side (default 1: one after another, so the step times are "
                             "each model's own)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data-root", default=None, help="data folder (default $MINIRES_DATA or ~/.cache/minires)")
    parser.add_argument("--download", action="store_true", help="fetch the data set if it is missing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def format_table(rows):
    """The rows as a fixed-width text table."""
    header = ("model", "params", "MACs", "step ms", "peak extra MB", "train loss", "test acc")
    lines = [[row["model"], f"{row['params']:,}", format_macs(row["macs"]), f"{row['step_ms']:.1f}",
              f"{row['peak_extra_mb']:.1f}",
              "diverged" if row["final_train_loss"] is None else f"{row['final_train_loss']:.4f}",
              f"{row['test_accuracy']:.4f}"] for row in rows]
    widths = [max(len(cells[i]) for cells in [header] + lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))
            for cells in [header] + lines]


def format_macs(macs):
    return f"{macs / 1e9:.2f}G" if macs >= 1e9 else f"{macs / 1e6:.2f}M"


def run(args, out=print):
    check_model_names(args.models)  # before any folder is made
    overrides = {key: value for key, value in (("dataset", args.dataset), ("iterations", args.iterations),
                                                ("batch_size", args.batch_size)) if value is not None}
    choose_settings(PRESETS, args.preset, overrides)
    folder = fresh_output_folder(args.out, f"compare-{args.preset}")
    result = compare(args.models, args.preset, out=folder, seed=args.seed, device=args.device,
                     data_root=args.data_root, download=args.download, progress=False if args.quiet else None,
                     jobs=args.jobs, **overrides)
    if args.jobs > 1:
        print(result["timing"], file=sys.stderr)
    for line in format_table(result["rows"]):
        out(line)
    if args.jobs <= 1:
        out(f"({result['timing']})")
    out(f"{result['seconds']:.0f} s in all; outputs in {folder}")
    return 0
