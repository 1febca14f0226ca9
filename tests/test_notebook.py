"""Tutorial 6 run as a notebook shows every figure inline.

Library code must never switch matplotlib's backend: an experiment that called
``matplotlib.use("Agg")`` inside a live notebook turned the inline backend off, and
every figure after it silently disappeared. This test converts the jupytext tutorial
to a notebook in memory, executes it in a fresh ``python3`` kernel (ipykernel, smoke
sizes, inline backend: ``MPLBACKEND`` is removed from the kernel's environment) and
checks that every cell that calls ``plt.show()`` produced an ``image/png`` output.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL = os.path.join(ROOT, "tutorials", "06_plain_vs_residual_gradient_flow.py")
CELL_TIMEOUT_S = 300  # the whole notebook takes seconds in smoke mode; generous for a loaded CI machine


def figure_cells(notebook):
    """(index, cell) of the code cells that show a figure: by the tutorials' convention, with plt.show()."""
    return [(i, cell) for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and "plt.show()" in cell.source]


def has_image(cell):
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.mark.slow
def test_tutorial_06_as_a_notebook_shows_every_figure_inline(tmp_path):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed (pip install -e .[dev])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e .[dev])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e .[dev])")

    notebook = jupytext.read(TUTORIAL)
    cells = figure_cells(notebook)
    assert len(cells) >= 4, f"expected at least 4 figure cells (plt.show()) in tutorial 6, found {len(cells)}"

    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # CI sets Agg; the kernel must use ipykernel's inline backend
    env.update(MINIRES_SMOKE="1", PYTHONIOENCODING="utf-8")
    # Import minires from this checkout even where it is not installed.
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # The kernel is this interpreter (jupyter_client replaces a kernelspec's "python" by sys.executable).
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])

    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)

    missing = [f"cell {i} (starting {cell.source.strip().splitlines()[0]!r})"
               for i, cell in cells if not has_image(cell)]
    assert not missing, (
        f"{len(missing)} of {len(cells)} figure cells of tutorial 6 showed no inline image "
        "(does library code switch matplotlib's backend?): " + "; ".join(missing)
    )
