"""The training command with a week of runs: no run overwrites another, divergence stops a run
without harming its checkpoint, --resume takes new flags, evaluate finds the run's data, every bad
flag is one line naming it, and the messages say what is true.

Each test is one finding of issue 12 (the number in its name); they train a very small MNIST
(64 images) for an epoch or two, or stop before any data is read.
"""
import json
import os
import re

import numpy as np
import pytest

from minires.__main__ import main
from minires.serialization import load_checkpoint
from test_training import make_tiny_mnist


@pytest.fixture
def root(tmp_path):
    return make_tiny_mnist(str(tmp_path / "data"), n_train=64, n_test=32)


def train(root, *extra):
    return main(["train", "--model", "mnist_resnet", "--dataset", "mnist", "--data-root", root,
                 "--batch-size", "32", "--quiet", *extra])


def strict_json_lines(path):
    """Every line of a metrics file, parsed by a JSON reader that refuses NaN and Infinity."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    with open(path, encoding="utf-8") as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def fake_run(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write("{}\n")


# ---- 1. runs never overwrite runs -----------------------------------------------------------------
def test_1_a_folder_holding_a_run_is_refused_and_left_alone(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    fake_run(out, "metrics.jsonl", "best.npz")
    assert train(root, "--out", out, "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "--resume" in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(os.listdir(out)) == ["best.npz", "metrics.jsonl"]


def test_1_the_default_out_moves_to_a_fresh_numbered_folder(root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fake_run(os.path.join("runs", "mnist_resnet-mnist"), "checkpoint.npz")
    assert train(root, "--epochs", "1") == 0
    assert "outputs in runs/mnist_resnet-mnist-2" in capsys.readouterr().err
    assert len(strict_json_lines(os.path.join("runs", "mnist_resnet-mnist-2", "metrics.jsonl"))) == 1


def test_1_overwrite_empties_a_run_folder_but_not_any_folder(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    fake_run(out, "metrics.jsonl", "best.npz", ".checkpoint-abc.npz.tmp")
    assert train(root, "--out", out, "--epochs", "1", "--overwrite") == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.jsonl"]  # old best.npz gone
    assert [row["epoch"] for row in strict_json_lines(os.path.join(out, "metrics.jsonl"))] == [1]
    mine = str(tmp_path / "thesis")
    fake_run(mine, "chapter1.tex", "metrics.jsonl")
    assert train(root, "--out", mine, "--overwrite") == 2
    assert "only empties a run folder" in capsys.readouterr().err and os.path.exists(os.path.join(mine, "chapter1.tex"))


# ---- 2. divergence ----------------------------------------------------------------------------------
def test_2_a_diverging_run_exits_nonzero_keeps_the_last_good_checkpoint_and_writes_strict_json(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train(root, "--out", out, "--epochs", "3", "--stop-after", "1") == 0
    checkpoint = os.path.join(out, "checkpoint.npz")
    with open(checkpoint, "rb") as f:
        good = f.read()
    capsys.readouterr()
    assert main(["train", "--resume", checkpoint, "--lr", "1e6", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "epoch 2" in err and "smaller --lr" in err and "epoch 1" in err
    assert "untouched" in err and err.count("\n") == 1
    with open(checkpoint, "rb") as f:
        assert f.read() == good
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 1 and all(np.isfinite(v).all() for v in state["model"].values())
    assert [row["epoch"] for row in strict_json_lines(os.path.join(out, "metrics.jsonl"))] == [1]


def test_2_a_nan_loss_stops_the_epoch_and_names_the_first_bad_step():
    import minires
    from minires import nn, optim
    from minires.training.loop import NonFiniteLoss, train_epoch

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((4, 1, 2, 2)).astype(np.float32), rng.integers(0, 3, 4)) for _ in range(50)]
    batches[2][0][0, 0, 0, 0] = np.nan  # step 3 sees a NaN pixel
    minires.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    taken = []

    class Loader(list):
        def __iter__(self):
            for batch in super().__iter__():
                taken.append(1)
                yield batch

    with pytest.raises(NonFiniteLoss, match="at step 3 of 50") as info:
        train_epoch(model, Loader(batches), optim.SGD(model.parameters(), lr=0.1))
    assert info.value.step == 3 and len(taken) == 20  # stopped at the first check, not after 50 steps


@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan")])
def test_2_non_finite_settings_are_refused(flag, value, capsys):
    assert main(["train", flag, value, "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {flag} {float(value)}: must be a finite number")


# ---- 3. --resume takes the flags given now ------------------------------------------------------
def test_3_resume_extends_a_finished_run_with_epochs_and_finds_moved_data(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train(root, "--out", out, "--epochs", "1") == 0
    checkpoint = os.path.join(out, "checkpoint.npz")
    assert main(["train", "--resume", checkpoint, "--quiet"]) == 2
    assert "already finished 1 epochs; pass a larger --epochs" in capsys.readouterr().err
    moved = str(tmp_path / "moved")
    os.rename(root, moved)
    assert main(["train", "--resume", checkpoint, "--epochs", "2", "--data-root", moved, "--quiet"]) == 0
    state = load_checkpoint(checkpoint)
    config = json.loads(state["config"])
    assert state["epoch"] == 2 and config["epochs"] == 2 and config["data_root"] == moved
    assert config["resumed"] == [{"at_epoch": 1, "changed": {"epochs": [1, 2], "data_root": [root, moved]}}]
    assert [row["epoch"] for row in strict_json_lines(os.path.join(out, "metrics.jsonl"))] == [1, 2]
    assert main(["train", "--resume", checkpoint, "--seed", "3", "--epochs", "3", "--quiet"]) == 2
    assert "cannot continue with --seed 3" in capsys.readouterr().err


# ---- 4. evaluate --------------------------------------------------------------------------------
def test_4_evaluate_uses_the_runs_data_root_and_checks_model(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train(root, "--out", out, "--epochs", "1") == 0
    checkpoint = os.path.join(out, "checkpoint.npz")
    capsys.readouterr()
    assert main(["evaluate", checkpoint]) == 0  # no --data-root: the one it was trained with
    table = capsys.readouterr().out.splitlines()[1:]
    # The columns line up: the numbers of every class end where the header's column names end.
    ends = lambda line: [m.end() for m in re.finditer(r"\S+", line)][1:]  # noqa: E731
    assert table[0].split() == ["class", "images", "correct", "accuracy"] and len(table) == 11
    assert all(ends(row) == ends(table[0]) for row in table[1:])
    assert main(["evaluate", checkpoint, "--model", "resnet20"]) == 2
    assert "holds a mnist_resnet, not a resnet20" in capsys.readouterr().err


# ---- 5. bad settings are refused up front, naming the flag ---------------------------------------
@pytest.mark.parametrize("flag,value,words", [
    ("--gamma", "-1", "must be in (0, 1]"), ("--patience", "0", "at least 1 epoch"),
    ("--val-fraction", "-0.1", "in [0, 1)"), ("--warmup-epochs", "-2", ">= 0"), ("--epochs", "0", "at least 1"),
    ("--epochs", "-1", "at least 1"), ("--stop-after", "-1", "at least 1"), ("--seed", "-1", "[0, 2**32)"),
    ("--batch-size", "0", "at least 1"), ("--milestones", "1.5", "fraction of training"),
    ("--label-smoothing", "2", "[0, 1]"),
])
def test_5_each_bad_setting_is_one_line_naming_its_flag(flag, value, words, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["train", flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} ") and words in err and err.count("\n") == 1
    assert not os.path.exists("runs")  # refused before anything was made


# ---- 6. file-system and checkpoint problems are one line -----------------------------------------
def test_6_out_that_is_a_file_or_below_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for out in (str(a_file), str(a_file / "run")):
        assert main(["train", "--out", out, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out}") and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_6_an_unwritable_out_is_refused_before_the_data_is_read(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["train", "--out", str(locked / "run"), "--dataset", "cifar10", "--quiet"]) == 2
        assert "cannot be written" in capsys.readouterr().err  # not the missing-CIFAR message
    finally:
        locked.chmod(0o700)


def test_6_a_checkpoint_without_optimizer_or_a_png_is_one_line(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train(root, "--out", out, "--epochs", "2", "--val-fraction", "0.25", "--patience", "1") == 0
    capsys.readouterr()
    assert main(["train", "--resume", os.path.join(out, "best.npz"), "--quiet"]) == 2
    assert "lacks optimizer" in capsys.readouterr().err
    png = os.path.join(out, "curves.png")
    assert main(["evaluate", png]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pickled" not in err and "Traceback" not in err


# ---- 7. the interrupt message says what is saved --------------------------------------------------
def test_7_an_interrupt_before_the_first_epoch_says_nothing_was_saved(root, tmp_path, monkeypatch, capsys):
    from minires.training import train_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "train_and_evaluate", interrupted)
    assert train(root, "--out", str(tmp_path / "run"), "--epochs", "1") == 130
    err = capsys.readouterr().err
    assert "no checkpoint was saved" in err and "intact" not in err


# ---- 9. help and numbers -------------------------------------------------------------------------------
def test_9_train_help_lists_models_and_datasets_and_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "resnet20" in text and "preact_resnet164" in text and "cifar10" in text
    import argparse

    from minires.training.train_command import add_train_arguments

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    undocumented = [a.option_strings[0] for a in parser._actions if a.option_strings and not a.help]
    assert undocumented == []


def test_9_metrics_are_rounded_and_the_lr_is_not_float_noise(root, tmp_path):
    out = str(tmp_path / "run")
    assert train(root, "--out", out, "--epochs", "2", "--milestones", "0.5") == 0
    rows = strict_json_lines(os.path.join(out, "metrics.jsonl"))
    assert [row["lr"] for row in rows] == [0.1, 0.01]  # 0.1 * 0.1 is 0.010000000000000002 in floats
    assert all(len(repr(row["train_loss"]).replace("0.", "").lstrip("0")) <= 7 for row in rows)
