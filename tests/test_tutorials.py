"""Every tutorial runs top to bottom (smoke sizes) and is a well-formed jupytext notebook.

The tutorials are ``tutorials/NN_name.py`` files in jupytext's percent format. Each
is run as a script in a fresh directory with ``MINIRES_SMOKE=1`` (tiny sizes) and
``MPLBACKEND=Agg`` (figures drawn but not shown), and must exit with status 0.

Each tutorial ends with exercises ("### Exercise N" headings), each with one answer
cell: a code cell whose answer starts after a comment line ``# one possible answer``.
A second run removes every answer, as a student who deleted them would leave the
file (function bodies become ``pass``, values ``...``), and checks that the tutorial
still runs to the end and that every check cell says "not answered yet".
"""
import ast
import glob
import itertools
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIAL_DIR = os.path.join(ROOT, "tutorials")
TUTORIALS = sorted(glob.glob(os.path.join(TUTORIAL_DIR, "[0-9][0-9]_*.py")))
EXPECTED_TUTORIALS = 12
TIMEOUT_S = 300  # each takes seconds in smoke mode; generous for a loaded CI machine
ANSWER_MARK = re.compile(r"^\s*#\s*one possible answer\b", re.IGNORECASE | re.MULTILINE)
NOT_ANSWERED = "not answered yet"  # what a check cell prints for an exercise left as `pass` or `...`
YOUR_ANSWER = "# your answer here"  # replaces the marker line in the copy without answers


def ids(paths):
    return [os.path.basename(p) for p in paths]


def run_in_smoke_mode(path, cwd):
    """Run a tutorial as a script in ``cwd``, with tiny sizes and figures not shown; assert it exits with 0."""
    env = dict(os.environ)
    env.update(MINIRES_SMOKE="1", MPLBACKEND="Agg", PYTHONIOENCODING="utf-8")
    # Import minires from this checkout even where it is not installed.
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, check=False,
                            text=True, encoding="utf-8", errors="replace", timeout=TIMEOUT_S)
    assert result.returncode == 0, (
        f"{os.path.basename(path)} exited with status {result.returncode}\n"
        f"--- stderr ---\n{result.stderr[-6000:]}\n--- stdout (end) ---\n{result.stdout[-2000:]}"
    )
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=ids(TUTORIALS))
def test_tutorial_runs_top_to_bottom_in_smoke_mode(path, tmp_path):
    stdout = run_in_smoke_mode(path, tmp_path)
    assert stdout.strip(), f"{os.path.basename(path)} printed nothing; tutorials print their key results"
    assert NOT_ANSWERED not in stdout, f"{os.path.basename(path)}: a shipped answer is missing:\n{stdout[-2000:]}"


# ---- exercises: remove every answer, and the tutorial must still run to the end ----------

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def exercise_numbers(source):
    return [int(n) for n in re.findall(r"^# ### Exercise (\d+)", source, re.MULTILINE)]


def check_calls(source):
    """How many times the exercises call check(...)."""
    exercises = source[source.index("# ## Exercises"):]
    return len(re.findall(r"^\s*check\(", exercises, re.MULTILINE))


def split_cells(source):
    """The file cut into cells, each starting at its ``# %%`` line (the jupytext header comes first)."""
    starts = [m.start() for m in re.finditer(r"^# %%", source, re.MULTILINE)]
    bounds = [0] + starts + [len(source)]
    return [source[a:b] for a, b in itertools.pairwise(bounds) if a < b]


def is_code_cell(cell):
    return cell.startswith("# %%") and not cell.startswith("# %% [markdown]")


def placeholder(statement, lines):
    """What is left of one answer statement: a def keeps its header and gets ``pass``, a class
    keeps its methods that way, an assignment assigns ``...``; anything else goes."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        assert not statement.decorator_list, "decorated answers are not supported"
        first = statement.body[0]
        assert first.lineno > statement.lineno, f"put the body of line {statement.lineno} on lines of its own"
        header = lines[statement.lineno - 1:first.lineno - 1]
        inner = " " * first.col_offset
        body = []
        if isinstance(statement, ast.ClassDef):   # its methods, each reduced to `pass`
            for inner_statement in statement.body:
                body += (["\n"] if body else []) + placeholder(inner_statement, lines)
        return header + (body or [inner + "pass\n"])
    targets = []
    if isinstance(statement, ast.Assign):
        targets = statement.targets
    elif isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    names = [node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)]
    return [" " * statement.col_offset + f"{name} = ...\n" for name in names]


def remove_answer(cell):
    """Replace the answer of one code cell (everything after its ``# one possible answer`` line,
    to the end of the function, class or cell the line is in) by placeholders; return the new
    cell, the lines removed and the lines put in their place."""
    lines = cell.splitlines(keepends=True)
    marks = [i for i, line in enumerate(lines) if ANSWER_MARK.match(line)]
    assert len(marks) == 1, f"one '# one possible answer' line per answer cell, found {len(marks)}:\n{cell}"
    mark = marks[0]
    tree = ast.parse(cell)
    enclosing = [node for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and node.lineno <= mark + 1 <= node.end_lineno]
    block = max(enclosing, key=lambda node: node.lineno) if enclosing else tree
    answer = [s for s in block.body if s.lineno > mark + 1]
    assert answer, f"nothing follows the '# one possible answer' line:\n{cell}"
    indent = lines[mark][:len(lines[mark]) - len(lines[mark].lstrip())]
    if isinstance(block, (ast.FunctionDef, ast.AsyncFunctionDef)):
        replacement = [indent + "pass\n"]                  # the rest of the body
    else:
        replacement = [line for s in answer for line in placeholder(s, lines)]
    end = answer[-1].end_lineno
    replacement = [indent + YOUR_ANSWER + "\n"] + replacement
    return "".join(lines[:mark] + replacement + lines[end:]), lines[mark:end], replacement


def remove_answers(source):
    """The tutorial with every exercise answer removed, and for each answer cell the number of
    its exercise (the "### Exercise N" heading above it), the lines removed and their replacement."""
    cells, removed, exercise = [], [], None
    for cell in split_cells(source):
        exercise = (exercise_numbers(cell) or [exercise])[-1]   # the latest heading so far
        if is_code_cell(cell) and any(ANSWER_MARK.match(line) for line in cell.splitlines()):
            cell, lines, replacement = remove_answer(cell)
            removed.append((exercise, lines, replacement))
        cells.append(cell)
    return "".join(cells), removed


def is_placeholder(line):
    return line.startswith(("def ", "class ")) or line == "pass" or line.endswith(" = ...")


def code_lines(lines):
    """The lines that hold code (not blank, not only a comment), stripped."""
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("path", TUTORIALS, ids=ids(TUTORIALS))
def test_removing_the_answers_leaves_only_placeholders(path):
    name = os.path.basename(path)
    source = read(path)
    numbers = exercise_numbers(source)
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, f"{name}: exercises 1, 2, ...: {numbers}"
    stripped, removed = remove_answers(source)
    answered_exercises = [exercise for exercise, _, _ in removed]
    assert answered_exercises == numbers, (
        f"{name}: every exercise needs exactly one answer cell marked '# one possible answer'; "
        f"exercises {numbers}, answer cells under exercises {answered_exercises}"
    )
    assert stripped != source
    compile(stripped, name, "exec")
    assert not [cell for cell in split_cells(stripped) if is_code_cell(cell) and ANSWER_MARK.search(cell)], (
        f"{name}: an answer marker is left after removing the answers"
    )
    for exercise, lines, replacement in removed:
        # what is left: def and class headers, `pass`, `name = ...`
        left = [line for line in code_lines(replacement) if not is_placeholder(line)]
        assert not left, f"{name}, exercise {exercise}: the answer is not gone, left: {left}"
        answer = [line for line in code_lines(lines) if not is_placeholder(line)]
        assert answer, f"{name}, exercise {exercise}: nothing was removed but placeholders:\n{''.join(lines)}"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=ids(TUTORIALS))
def test_tutorial_without_answers_says_not_answered_yet_and_runs_on(path, tmp_path):
    name = os.path.basename(path)
    source = read(path)
    stripped, _ = remove_answers(source)
    copy = tmp_path / name
    copy.write_text(stripped, encoding="utf-8")
    stdout = run_in_smoke_mode(copy, tmp_path)
    said = [int(n) for n in re.findall(rf"^… Exercise (\d+): .*{NOT_ANSWERED}", stdout, re.MULTILINE)]
    assert sorted(set(said)) == exercise_numbers(source), (
        f"{name} without answers: expected '{NOT_ANSWERED}' for exercises {exercise_numbers(source)}, "
        f"got it for {sorted(set(said))}:\n{stdout[-3000:]}"
    )
    assert len(said) == check_calls(source), (   # exercises with two checks say it twice
        f"{name} without answers: {check_calls(source)} check calls but {len(said)} lines say "
        f"'{NOT_ANSWERED}':\n{stdout[-3000:]}"
    )
    verdicts = [line for line in stdout.splitlines() if line.startswith(("✓", "✗"))]
    assert not verdicts, f"{name} without answers: checks gave verdicts on missing answers: {verdicts}"


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


def test_all_ten_tutorials_exist_numbered_in_order():
    """Fails until all ten tutorials exist: the course is 01 ... 10 with no gaps."""
    numbers = [int(os.path.basename(p)[:2]) for p in TUTORIALS]
    assert len(TUTORIALS) >= EXPECTED_TUTORIALS, (
        f"expected at least {EXPECTED_TUTORIALS} tutorials, found {len(TUTORIALS)}: {ids(TUTORIALS)}"
    )
    assert numbers == list(range(1, len(numbers) + 1)), (
        f"tutorial numbers should run 01, 02, ... without gaps: {numbers}"
    )
