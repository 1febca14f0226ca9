"""Checkpoints, the train/evaluate commands end to end, exact resume, and their error messages."""
import json
import os

import numpy as np
import pytest

from minires.__main__ import main
from minires.data import write_idx
from minires.training.checkpoint import load_checkpoint, save_checkpoint


def make_tiny_mnist(root, n_train=192, n_test=64):
    """A small MNIST in IDX format: each class is a bright square at its own place, plus noise."""
    rng = np.random.default_rng(0)
    folder = os.path.join(root, "mnist")
    os.makedirs(folder)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            images[i, 4 + 10 * row: 12 + 10 * row, 2 + 5 * col: 6 + 5 * col] = 250
        write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), images)
        write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), labels)
    return root


@pytest.fixture
def tiny_root(tmp_path):
    return make_tiny_mnist(str(tmp_path / "data"))


def train_args(root, out, *extra):
    return ["train", "--model", "mnist_resnet", "--dataset", "mnist", "--data-root", root, "--batch-size", "32",
            "--out", out, "--quiet", *extra]


# ---- checkpoints -------------------------------------------------------------------------

def test_checkpoint_round_trip_keeps_arrays_numbers_and_int_keys(tmp_path):
    state = {"model": {"conv.weight": np.arange(6.0).reshape(2, 3)}, "epoch": 3, "lr": 0.1, "name": "x",
             "optimizer": {"state": {0: {"momentum_buffer": np.ones(2, np.float32), "step": 2}}}, "none": None,
             "history": [{"epoch": 1, "acc": 0.5}]}
    path = tmp_path / "c.npz"
    save_checkpoint(str(path), state)
    loaded = load_checkpoint(str(path))
    np.testing.assert_array_equal(loaded["model"]["conv.weight"], state["model"]["conv.weight"])
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].dtype == np.float32
    assert loaded["optimizer"]["state"][0]["step"] == 2
    assert (loaded["epoch"], loaded["lr"], loaded["name"], loaded["none"]) == (3, 0.1, "x", None)
    assert loaded["history"] == state["history"]
    with np.load(str(path), allow_pickle=False) as npz:  # loadable without pickle
        assert len(npz.files) == 3
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind


def test_failed_save_leaves_the_old_checkpoint_intact(tmp_path):
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(TypeError, match="cannot be saved"):
        save_checkpoint(path, {"epoch": 2, "bad": object()})
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.npz"]


def test_corrupt_and_foreign_checkpoints_are_reported(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(str(corrupt))
    foreign = tmp_path / "foreign.npz"
    np.savez(str(foreign), a=np.zeros(2))
    with pytest.raises(ValueError, match="not a minires checkpoint"):
        load_checkpoint(str(foreign))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing.npz"))


# ---- the commands ---------------------------------------------------------------------------

def test_train_writes_metrics_checkpoint_and_curves_then_evaluate_reads_them(tiny_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(train_args(tiny_root, out, "--epochs", "2")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["epoch"] for row in lines] == [1, 2]
    assert set(lines[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "curves.png", "metrics.jsonl"]
    with open(os.path.join(out, "curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    assert main(["evaluate", os.path.join(out, "checkpoint.npz"), "--data-root", tiny_root]) == 0
    report = capsys.readouterr().out
    assert f"accuracy {lines[-1]['test_acc']:.4f}" in report  # the same number training reported
    assert report.count("\n") == 12  # a header line, the column names, ten classes


def test_resume_is_bit_for_bit_identical_to_an_uninterrupted_run(tiny_root, tmp_path, capsys):
    straight, interrupted = str(tmp_path / "straight"), str(tmp_path / "interrupted")
    args = ("--epochs", "2", "--augment", "on", "--milestones", "0.5")
    assert main(train_args(tiny_root, straight, *args)) == 0
    assert main(train_args(tiny_root, interrupted, *args, "--stop-after", "1")) == 0
    assert load_checkpoint(os.path.join(interrupted, "checkpoint.npz"))["epoch"] == 1
    assert main(["train", "--resume", os.path.join(interrupted, "checkpoint.npz"), "--quiet"]) == 0
    a = load_checkpoint(os.path.join(straight, "checkpoint.npz"))
    b = load_checkpoint(os.path.join(interrupted, "checkpoint.npz"))
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key], err_msg=key)
    assert a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]
    assert a["scheduler"] == b["scheduler"]


def test_early_stopping_uses_a_validation_split(tiny_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    # lr 0 never improves, so with patience 1 training stops after epoch 2 of 5.
    assert main(train_args(tiny_root, out, "--epochs", "5", "--lr", "0", "--patience", "1")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "val_acc" in lines[0]
    assert lines[-1].get("early_stop") is True and len(lines) == 3
    assert os.path.exists(os.path.join(out, "best.npz"))


@pytest.mark.parametrize("argv,message", [
    (["train", "--model", "resnet21", "--quiet"], "unknown model 'resnet21'; choose one of: "),
    (["train", "--device", "cuda", "--quiet"], "--device cuda:0 is not usable: "),
    (["train", "--dataset", "cifar10", "--data-root", "{tmp}", "--quiet"], "data_batch_1.bin"),
    (["evaluate", "{tmp}/nothing.npz"], "does not exist"),
])
def test_bad_input_gives_one_line_errors(argv, message, tmp_path, capsys):
    import minires

    if "cuda" in argv and minires.cuda_is_available():
        pytest.skip("a GPU is usable here")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_checkpoint_from_another_architecture_is_refused(tiny_root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(train_args(tiny_root, out, "--epochs", "1")) == 0
    checkpoint = os.path.join(out, "checkpoint.npz")
    assert main(["evaluate", checkpoint, "--model", "resnet20", "--data-root", tiny_root]) == 2
    err = capsys.readouterr().err
    assert "holds a mnist_resnet" in err and "does not fit resnet20" in err
    assert main(["train", "--resume", checkpoint, "--model", "resnet20", "--quiet"]) == 2
    assert "cannot continue with --model resnet20" in capsys.readouterr().err


@pytest.mark.slow
def test_default_command_reaches_97_percent_on_the_bundled_mnist_sample(tmp_path, capsys):
    # The README's main job: `python -m minires train` with no arguments (here with --out and --quiet).
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["test_acc"] >= 0.97, lines[-1]
