"""What every gradient-flow experiment shares: presets, seeding, output files, figures.

An experiment is a function with a table of *presets* (named dicts of settings:
"tiny" for the tests, "laptop" for a 2-core CPU, "gpu" for the paper's sizes).
A caller picks a preset and may override any of its keys:

    settings = choose_settings(PRESETS, "laptop", {"iterations": 20})

Results are written as plain CSV / JSON (raw numbers) and PNG (figures) into an
output folder; with ``out=None`` nothing is written and only the returned dict
remains.
"""
import csv
import json
import math
import multiprocessing
import os

import minires
from minires.backends.cpu_threads import slab_threads
from minires.training.device import check_device
from minires.training.progress import progress_bar


def choose_settings(presets, preset, overrides):
    """The preset's settings with ``overrides`` applied; unknown names raise ValueError."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    unknown = sorted(set(overrides) - set(presets[preset]))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(presets[preset])}")
    return {**presets[preset], **overrides}


def describe_presets(presets):
    """One line per preset, ``name: key=value, ...``, for ``--help`` (a size of None reads "all")."""
    return "\n".join(f"  {name}: " + ", ".join(f"{k}={'all' if v is None else v}" for k, v in settings.items())
                     for name, settings in presets.items())


def start(seed, device):
    """Seed every generator minires uses and check that ``device`` is usable; returns the device."""
    minires.manual_seed(seed)
    return check_device(device)


# ---- trainings side by side -----------------------------------------------------------------

def default_jobs(device):
    """How many trainings run at once: one per core minires uses on the CPU, one on a GPU."""
    return slab_threads() if device == "cpu" else 1


def in_parallel(function, calls, jobs, progress=None, description="trainings"):
    """[function(*args) for args in calls], in order, run by ``jobs`` worker processes.

    The experiments' networks are narrow and their batches small, so one training keeps
    one core busy (Python's work between NumPy calls is most of a step) and the rest idle.
    With ``jobs`` > 1 the trainings run side by side, one process per core, each with BLAS
    on one thread (so ``jobs`` processes use ``jobs`` cores). A training seeds itself, so it
    gives the same numbers in any process; against ``jobs=1`` (this process, the cores
    shared inside each op) they agree to rounding, which a thousand SGD steps amplify as much
    as another machine's BLAS would: the seeds' spread covers it. ``function`` must be a
    module-level function (the workers import it); its exceptions reach the caller.

    The workers are fresh interpreters ("spawn"), which import the main module again: from a
    script of your own, call an experiment with ``jobs`` > 1 only under
    ``if __name__ == "__main__":``, as with any Python multiprocessing. That is why the
    experiments' Python functions default to ``jobs=1`` and only ``python -m minires gradflow``
    (whose main module is guarded) runs one training per core by default.
    """
    if jobs <= 1 or len(calls) <= 1:
        return [function(*args) for args in calls]
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no threads or locks inherited
    with context.Pool(min(jobs, len(calls)), initializer=one_blas_thread) as pool:
        results = pool.imap(_call, [(function, args) for args in calls])
        return list(progress_bar(results, len(calls), f"{description} ({jobs} at a time)", progress))


def one_blas_thread():
    import numpy  # noqa: F401  (loads the BLAS library, so that the limit reaches it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # held for the worker's whole life


def _call(function_and_args):
    function, args = function_and_args
    return function(*args)


def l2_norm(values):
    """The Euclidean norm of a whole tensor or NumPy/CuPy array, as a Python float (summed in float64)."""
    array = values.data if isinstance(values, minires.Tensor) else values
    return float((array.astype("float64") ** 2).sum()) ** 0.5


# ---- output files ---------------------------------------------------------------------

def fresh_output_folder(out, name):
    """The folder a command writes into, never one that holds an earlier run: ``out`` if it holds none (else a
    ValueError), or the first free one of runs/NAME, runs/NAME-2, ...; checked for writing before any training."""
    from minires.training.train_command import folder_problem, holds_a_run

    if out is not None:
        if holds_a_run(out):
            raise ValueError(f"--out {out} already holds a run; choose another --out (or leave it out for "
                             f"runs/{name}, runs/{name}-2, ...)")
        folder = out
    else:
        base = os.path.join("runs", name)
        folder, number = base, 1
        while holds_a_run(folder):
            number += 1
            folder = f"{base}-{number}"
    existed = os.path.isdir(folder)
    problem = folder_problem(folder)  # creates the folder to try writing into it
    if problem:
        raise ValueError(problem)
    if not existed:
        os.rmdir(folder)  # made again when the first file is written: a run that fails first leaves nothing
    return folder


def output_path(out, filename):
    """``out/filename``, creating ``out``; None when ``out`` is None (write nothing)."""
    if out is None:
        return None
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, filename)


def write_json(out, filename, value):
    """Strict JSON, which has no infinity or NaN: a non-finite number (a diverged training's loss) is written null."""
    path = output_path(out, filename)
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(finite_or_null(value), f, indent=2, allow_nan=False)
    return path


def finite_or_null(value):
    """``value`` with every float that is infinite or NaN replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(item) for item in value]
    return value


def write_csv(out, filename, rows):
    """``rows`` is a list of dicts with the same keys: the keys become the header."""
    path = output_path(out, filename)
    if path is not None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


# ---- figures ----------------------------------------------------------------------------

def new_figure(columns=1, width_per_column=5.5, height=4.0):
    """A matplotlib Figure with ``columns`` side-by-side axes, for files only.

    It is made with the object API (``matplotlib.figure.Figure``), not pyplot: it never
    opens a window, never shows up inline in a notebook, and leaves matplotlib's backend
    alone (a notebook's inline backend keeps working after an experiment ran).

    The constrained layout keeps every title, tick label and legend inside the figure.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_per_column * columns, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)
    return figure, list(axes[0])


def integer_ticks(axis):
    """Ticks only at whole numbers on ``axis`` (an axes' xaxis or yaxis): iterations, blocks."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def save_figure(figure, out, filename, title=""):
    """Write ``figure`` as a small PNG into ``out`` (if not None); returns the path (None if not written).

    To look at it in a notebook, show the file, e.g. ``plt.imshow(plt.imread(path))``.
    """
    path = output_path(out, filename)
    if path is not None:
        if title:
            figure.suptitle(title)
        figure.savefig(path, dpi=90, bbox_inches="tight")  # nothing clipped at the edges
    return path
