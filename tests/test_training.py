"""Checkpoints, the train/evaluate commands end to end, exact resume, and their error messages."""
import json
import os

import numpy as np
import pytest

from minires.__main__ import main
from minires.data import write_idx
from minires.serialization import load_checkpoint, save_checkpoint


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
    (["train", "--device", "cuda", "--quiet"], "--device cuda is not usable: "),
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
    assert "holds a mnist_resnet, not a resnet20" in err
    assert main(["train", "--resume", checkpoint, "--model", "resnet20", "--quiet"]) == 2
    assert "cannot continue with --model resnet20" in capsys.readouterr().err


@pytest.mark.slow
def test_default_command_reaches_97_percent_on_the_bundled_mnist_sample(tmp_path, capsys):
    # The README's main job: `python -m minires train` with no arguments (here with --out and --quiet).
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["test_acc"] >= 0.97, lines[-1]


# ---- the one training loop ----------------------------------------------------------------------

def tiny_classifier():
    import minires
    from minires import nn

    minires.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def tiny_batches(n_batches, batch_size=8, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield rng.standard_normal((batch_size, 1, 2, 2)).astype(np.float32), rng.integers(0, 3, batch_size)


def test_train_steps_calls_back_after_each_update_with_the_lr_it_used():
    from minires import optim
    from minires.training import train_steps

    model = tiny_classifier()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    scheduler = optim.MultiStepLR(optimizer, milestones=[2], gamma=0.1)
    calls = []

    def on_step(step, metrics):
        calls.append((step, optimizer.param_groups[0]["lr"], metrics.seen))
        if step == 2:
            model.eval()  # as if it had evaluated the model
            metrics.reset()

    metrics = train_steps(model, tiny_batches(10), optimizer, 4, scheduler=scheduler, on_step=on_step)
    assert calls == [(1, 0.1, 8), (2, 0.1, 16), (3, pytest.approx(0.01), 8), (4, pytest.approx(0.01), 16)]
    assert metrics.seen == 16 and 0 <= metrics.accuracy <= 1 and metrics.loss > 0
    assert model.training  # training mode came back after the callback's evaluation


def test_train_steps_stops_when_the_callback_says_so_and_when_batches_run_out():
    from minires import optim
    from minires.training import train_steps

    model = tiny_classifier()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    steps = []
    train_steps(model, tiny_batches(10), optimizer, 8, on_step=lambda step, _: steps.append(step) or step == 3)
    assert steps == [1, 2, 3]
    with pytest.raises(ValueError, match="the batches ran out after 2 of 5 steps"):
        train_steps(model, tiny_batches(2), optimizer, 5)


def test_train_epoch_and_evaluate_agree_with_a_plain_numpy_count():
    from minires import data, optim
    from minires.training import evaluate, train_epoch

    rng = np.random.default_rng(3)
    dataset = data.ArrayDataset(rng.standard_normal((40, 1, 2, 2)).astype(np.float32), rng.integers(0, 3, 40),
                                ["a", "b", "c"])
    loader = data.DataLoader(dataset, batch_size=16, prefetch=0)
    model = tiny_classifier()
    loss, accuracy = train_epoch(model, loader, optim.SGD(model.parameters(), lr=0.1))
    assert loss > 0 and 0 <= accuracy <= 1
    test_loss, test_accuracy, confusion = evaluate(model, loader, 3)
    import minires

    with minires.no_grad():
        predicted = model(minires.tensor(dataset.images)).numpy().argmax(axis=1)
    expected = np.zeros((3, 3), dtype=np.int64)
    np.add.at(expected, (dataset.labels, predicted), 1)
    np.testing.assert_array_equal(confusion, expected)
    assert test_accuracy == np.mean(predicted == dataset.labels) and test_loss > 0


def test_make_transforms_normalises_with_the_training_statistics_and_augments_only_training():
    from minires import data
    from minires.training import make_transforms

    rng = np.random.default_rng(0)
    dataset = data.ArrayDataset(rng.integers(0, 256, (16, 3, 8, 8)).astype(np.uint8), np.zeros(16, np.int64), ["x"])
    train_transform, eval_transform = make_transforms(dataset, augment=True)
    assert isinstance(train_transform, data.Compose) and isinstance(eval_transform, data.Normalize)
    plain_train, plain_eval = make_transforms(dataset, augment=False)
    assert isinstance(plain_train, data.Normalize) and isinstance(plain_eval, data.Normalize)
    batch = dataset.images.astype(np.float32) / 255
    normalized = eval_transform(batch)
    np.testing.assert_allclose(normalized.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert train_transform(batch, np.random.default_rng(1)).shape == batch.shape


# ---- the steps of the train command ----------------------------------------------------------------

def run_config(root, out, **changes):
    from minires.training.train_command import DEFAULTS

    return {**DEFAULTS, "dataset": "mnist", "data_root": root, "batch_size": 32, "epochs": 3, "augment": False,
            "out": out, **changes}


def test_build_restore_and_save_steps_continue_a_run_exactly(tiny_root, tmp_path):
    from minires.training.training_run import build_run, restore_run, run_state, save_epoch, train_and_evaluate

    config = run_config(tiny_root, str(tmp_path / "run"))
    run = build_run(config)
    assert (run.num_classes, run.start_epoch, run.val_loader) == (10, 0, None)
    row = train_and_evaluate(run, 0)
    assert run.history == [row] and row["epoch"] == 1 and set(row) >= {"train_loss", "test_acc", "lr", "seconds"}
    save_epoch(run, row)
    assert sorted(os.listdir(config["out"])) == ["checkpoint.npz", "curves.png", "metrics.jsonl"]

    resumed = build_run(config)
    restore_run(resumed, load_checkpoint(os.path.join(config["out"], "checkpoint.npz")))
    assert resumed.start_epoch == 1 and resumed.history == run.history
    restored, trained = resumed.optimizer.state_dict(), run.optimizer.state_dict()
    assert restored["param_groups"] == trained["param_groups"] and restored["state"].keys() == trained["state"].keys()
    for index, buffers in trained["state"].items():
        np.testing.assert_array_equal(restored["state"][index]["momentum_buffer"], buffers["momentum_buffer"])
    assert run_state(resumed)["scheduler"] == run_state(run)["scheduler"]
    for key, value in run.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[key], value, err_msg=key)


def test_remaining_epochs_counts_stop_after_and_patience_lazily(tiny_root, tmp_path):
    from minires.training.training_run import build_run, remaining_epochs

    run = build_run(run_config(tiny_root, str(tmp_path), epochs=6, patience=2, val_fraction=0.25))
    run.start_epoch, run.best_epoch = 1, 1  # one epoch done, and it was the best so far
    assert list(remaining_epochs(run, stop_after=2)) == [1, 2]
    logged, epochs = [], []
    for epoch in remaining_epochs(run, log=logged.append):
        epochs.append(epoch)
        if epoch == 2:
            run.best_epoch = 3  # epoch 3 (1-based) was the best: patience counts from there
    assert epochs == [1, 2, 3, 4] and json.loads(logged[0]) == {
        "early_stop": True, "after_epoch": 5, "best_epoch": 3, "best_val_acc": -1.0}


def test_config_to_resume_keeps_device_and_out_and_refuses_foreign_files(tmp_path):
    from minires.training.training_run import config_to_resume

    saved = {"model": "mnist_resnet", "dataset": "mnist", "device": "cuda:0", "out": "elsewhere", "lr": 0.5}
    path = str(tmp_path / "c.npz")
    rest = {"model": {}, "optimizer": {}, "scheduler": {}, "rng": {}, "history": [], "best_val": -1.0, "best_epoch": 0}
    save_checkpoint(path, {"config": json.dumps(saved), "epoch": 1, **rest})
    config, state = config_to_resume({"device": "cpu", "out": "here"}, path, given={"model": "mnist_resnet"})
    assert config == {**saved, "device": "cpu", "out": "here"} and state["epoch"] == 1
    save_checkpoint(path, {"epoch": 1})
    with pytest.raises(ValueError, match="not a checkpoint written by 'minires train'"):
        config_to_resume({"device": "cpu", "out": "here"}, path)
