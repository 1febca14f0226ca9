"""python -m minires compare: the tiny preset with two small models writes the table, the numbers and the
figure with sensible values; bad model names are one error line; an earlier run is never written over.
"""
import contextlib
import csv
import io
import json
import math
import os
import subprocess
import sys

import pytest

import minires
from minires.__main__ import main
from minires.experiments.compare import COLUMNS, timing_note
from minires.models import build_model

MODELS = ["mnist_resnet", "plain20"]  # quick on 28x28 MNIST: a ResNet-8 and a plain 20-layer net


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One tiny comparison of the two models (each trained in a fresh process); its folder and its printout."""
    folder = str(tmp_path_factory.mktemp("compare") / "first")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["compare", *MODELS, "--preset", "tiny", "--out", folder, "--quiet"]) == 0
    return folder, printed.getvalue()


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_tiny_preset_writes_one_row_per_model_with_sensible_values(first_run):
    folder, _ = first_run
    rows = read_csv(os.path.join(folder, "compare.csv"))
    assert [row["model"] for row in rows] == MODELS and list(rows[0]) == list(COLUMNS)
    with open(os.path.join(folder, "compare.json"), encoding="utf-8") as f:
        result = json.load(f)
    assert [row["model"] for row in result["rows"]] == MODELS
    assert result["settings"]["iterations"] == 8 and result["jobs"] == 1
    assert "one after another" in result["timing"]
    for row in result["rows"]:
        model = build_model(row["model"], 1, 10)
        assert row["params"] == model.num_parameters()
        assert row["macs"] == minires.summary(model, (1, 1, 28, 28)).total_macs > 0  # at the data's image size
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["step_ms"] > 0 and row["peak_extra_mb"] >= 0 and row["train_seconds"] > 0
        assert math.isfinite(row["final_train_loss"]) and row["final_train_loss"] > 0
        curve = result["curves"][row["model"]]
        assert len(curve) == 8 and all(math.isfinite(loss) and loss > 0 for loss in curve)
        assert row["final_train_loss"] == pytest.approx(curve[-1], rel=1e-5)  # the last tenth of 8 steps: one
        csv_row = next(r for r in rows if r["model"] == row["model"])
        assert int(csv_row["params"]) == row["params"] and float(csv_row["test_accuracy"]) == row["test_accuracy"]
    assert rows[0]["params"] != rows[1]["params"]  # two different models, not one trained twice
    with open(os.path.join(folder, "compare.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_printed_table_names_every_model_and_how_it_was_timed(first_run):
    folder, printed = first_run
    with open(os.path.join(folder, "compare.json"), encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    lines = printed.splitlines()
    assert lines[0].split() == ["model", "params", "MACs", "step", "ms", "peak", "extra", "MB", "train", "loss",
                                "test", "acc"]
    for line, row in zip(lines[1:3], rows):
        cells = line.split()
        assert cells[:2] == [row["model"], f"{row['params']:,}"] and cells[-1] == f"{row['test_accuracy']:.4f}"
    assert "one after another" in lines[3] and lines[-1].endswith(f"outputs in {folder}")
    assert timing_note(1).startswith("models trained one after another")
    assert timing_note(2).startswith("warning: 2 trainings ran side by side")


def test_an_earlier_run_is_never_written_over(first_run, tmp_path, monkeypatch, capsys):
    folder, _ = first_run
    before = {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)}
    # --out naming a folder that holds a run: refused before anything is trained
    assert main(["compare", "mnist_resnet", "--preset", "tiny", "--out", folder, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {folder} already holds a run") and len(err.strip().splitlines()) == 1
    assert {name: os.path.getmtime(os.path.join(folder, name)) for name in os.listdir(folder)} == before
    # the default folder: runs/compare-tiny holds a run, so the next one goes to runs/compare-tiny-2
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.join("runs", "compare-tiny"))
    with open(os.path.join("runs", "compare-tiny", "compare.csv"), "w", encoding="utf-8") as f:
        f.write("an earlier run\n")
    assert main(["compare", "mnist_resnet", "--preset", "tiny", "--iterations", "3", "--quiet"]) == 0
    assert "outputs in " + os.path.join("runs", "compare-tiny-2") in capsys.readouterr().out
    with open(os.path.join("runs", "compare-tiny", "compare.csv"), encoding="utf-8") as f:
        assert f.read() == "an earlier run\n"
    assert sorted(os.listdir(os.path.join("runs", "compare-tiny-2"))) == ["compare.csv", "compare.json", "compare.png"]


def test_an_unknown_model_is_one_error_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minires", "compare", "nosuchmodel"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown model 'nosuchmodel'; choose from: ")
    assert "mnist_resnet" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []  # no output folder was made


@pytest.mark.parametrize("argv,message", [
    (["compare", "mnist_resnet", "mnist_resnet", "--preset", "tiny"], "error: model mnist_resnet is named twice"),
    (["compare", "mnist_resnet", "--preset", "tiny", "--batch-size", "1000"],
     "error: batch size 1000 is larger than the 256 training images"),
])
def test_bad_input_is_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1


def test_a_bad_flag_value_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "mnist_resnet", "--iterations", "0"])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err
