"""Every tutorial runs top to bottom (smoke sizes) and is a well-formed jupytext notebook.

The tutorials are ``tutorials/NN_name.py`` files in jupytext's percent format. Each
is run as a script in a fresh directory with ``MINIRES_SMOKE=1`` (tiny sizes) and
``MPLBACKEND=Agg`` (figures drawn but not shown), and must exit with status 0.
"""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL_DIR = os.path.join(ROOT, "tutorials")
TUTORIALS = sorted(glob.glob(os.path.join(TUTORIAL_DIR, "[0-9][0-9]_*.py")))
EXPECTED_TUTORIALS = 8
TIMEOUT_S = 300  # each takes seconds in smoke mode; generous for a loaded CI machine


def ids(paths):
    return [os.path.basename(p) for p in paths]


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=ids(TUTORIALS))
def test_tutorial_runs_top_to_bottom_in_smoke_mode(path, tmp_path):
    env = dict(os.environ)
    env.update(MINIRES_SMOKE="1", MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
    # Import minires from this checkout even where it is not installed.
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run([sys.executable, path], cwd=tmp_path, env=env, capture_output=True, text=True,
                            encoding="utf-8", errors="replace", timeout=TIMEOUT_S)
    assert result.returncode == 0, (
        f"{os.path.basename(path)} exited with status {result.returncode}\n"
        f"--- stderr ---\n{result.stderr[-6000:]}\n--- stdout (end) ---\n{result.stdout[-2000:]}"
    )
    assert result.stdout.strip(), f"{os.path.basename(path)} printed nothing; tutorials print their key results"


@pytest.mark.parametrize("path", TUTORIALS, ids=ids(TUTORIALS))
def test_tutorial_is_a_notebook_with_a_title(path):
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed (pip install jupytext)")
    notebook = jupytext.read(path)
    kinds = [cell.cell_type for cell in notebook.cells]
    assert "markdown" in kinds and "code" in kinds, f"{os.path.basename(path)} needs markdown and code cells"
    first = notebook.cells[0]
    assert first.cell_type == "markdown", (
        f"{os.path.basename(path)}: the first cell should be markdown, not {first.cell_type}"
    )
    assert any(line.startswith("# ") for line in first.source.splitlines()), (
        f"{os.path.basename(path)}: the first cell should open with a '# Title' heading"
    )


def test_the_readme_lists_every_tutorial():
    with open(os.path.join(TUTORIAL_DIR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    missing = [name for name in ids(TUTORIALS) if name not in readme]
    assert not missing, f"tutorials/README.md does not list {missing}"


def test_there_are_at_least_eight_tutorials_numbered_in_order():
    """Fails until all eight tutorials exist: the course is 01 ... 08 with no gaps."""
    numbers = [int(os.path.basename(p)[:2]) for p in TUTORIALS]
    assert len(TUTORIALS) >= EXPECTED_TUTORIALS, (
        f"expected at least {EXPECTED_TUTORIALS} tutorials, found {len(TUTORIALS)}: {ids(TUTORIALS)}"
    )
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"tutorial numbers should run 01, 02, ... without gaps: {numbers}"
    )
