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
import os

import minires
from minires.training.device import check_device


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


def l2_norm(values):
    """The Euclidean norm of a whole tensor or NumPy/CuPy array, as a Python float (summed in float64)."""
    array = values.data if isinstance(values, minires.Tensor) else values
    return float((array.astype("float64") ** 2).sum()) ** 0.5


# ---- output files ---------------------------------------------------------------------

def output_path(out, filename):
    """``out/filename``, creating ``out``; None when ``out`` is None (write nothing)."""
    if out is None:
        return None
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, filename)


def write_json(out, filename, value):
    path = output_path(out, filename)
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=2)
    return path


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
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_per_column * columns, height))
    axes = figure.subplots(1, columns, squeeze=False)
    return figure, list(axes[0])


def save_figure(figure, out, filename, title=""):
    """Write ``figure`` as a small PNG into ``out`` (if not None); returns the path (None if not written).

    To look at it in a notebook, show the file, e.g. ``plt.imshow(plt.imread(path))``.
    """
    path = output_path(out, filename)
    if path is not None:
        if title:
            figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(path, dpi=90)
    return path
