"""``python -m minires prune``: prune.json before / after / finetuned, the pruned checkpoints load
everywhere (evaluate, --resume, --init-from), the masks survive fine-tuning and resume, and the
slimmed model is really smaller. A tiny MNIST, one epoch each."""
import json
import os

import numpy as np
import pytest

from minires.__main__ import main
from minires.serialization import load_checkpoint
from test_training import make_tiny_mnist


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch mnist_resnet checkpoint on a tiny MNIST, and its data root."""
    tmp = tmp_path_factory.mktemp("pruning")
    root = make_tiny_mnist(str(tmp / "data"), n_train=160, n_test=64)
    out = str(tmp / "trained")
    assert main(["train", "--model", "mnist_resnet", "--dataset", "mnist", "--data-root", root, "--batch-size", "32",
                 "--epochs", "2", "--quiet", "--out", out]) == 0
    return os.path.join(out, "checkpoint.npz"), root


def prune(checkpoint, out, *flags):
    return main(["prune", checkpoint, "--out", out, "--quiet", *flags])


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def weights_that_are_zero(state):
    """{key: boolean array} of where each conv/linear weight is 0 as the model uses it (orig * mask)."""
    zero = {}
    for key, value in state.items():
        if key.endswith(".weight_mask"):
            base = key[:-len("_mask")]
            zero[base] = (state[base + "_orig"] * value) == 0
    return zero


def test_magnitude_writes_before_after_finetuned_and_the_masks_survive_fine_tuning_and_resume(trained, tmp_path, capsys):
    checkpoint, _ = trained
    out = str(tmp_path / "magnitude")
    assert prune(checkpoint, out, "--method", "magnitude", "--amount", "0.5", "--finetune-epochs", "1") == 0
    result = read(os.path.join(out, "prune.json"))
    assert set(result) >= {"before", "after", "finetuned", "method", "amount"}
    for stage in ("before", "after", "finetuned"):
        assert set(result[stage]) >= {"params", "macs", "accuracy", "nonzero_params", "train_step_ms"}
    assert result["before"]["nonzero_params"] == result["before"]["params"]
    assert abs(result["after"]["sparsity"] - 0.5) < 1e-3
    assert result["after"]["params"] == result["before"]["params"]  # masks: the arrays keep their size
    assert result["after"]["nonzero_macs"] < result["before"]["nonzero_macs"]
    assert "| 0.5 | finetuned |" in capsys.readouterr().out

    pruned = weights_that_are_zero(load_checkpoint(os.path.join(out, "pruned.npz"))["model"])
    tuned_path = os.path.join(out, "finetune", "checkpoint.npz")
    tuned = weights_that_are_zero(load_checkpoint(tuned_path)["model"])
    assert pruned.keys() == tuned.keys() and pruned
    for key in pruned:
        assert np.all(tuned[key][pruned[key]]), key  # every pruned weight is still 0 after fine-tuning

    assert main(["train", "--resume", tuned_path, "--epochs", "2", "--quiet"]) == 0  # one more epoch
    resumed = weights_that_are_zero(load_checkpoint(tuned_path)["model"])
    for key in pruned:
        assert np.all(resumed[key][pruned[key]]), key
    assert main(["evaluate", tuned_path]) == 0


def test_slimming_gives_a_smaller_model_that_evaluates_and_trains_from(trained, tmp_path, capsys):
    checkpoint, root = trained
    out = str(tmp_path / "slim")
    assert prune(checkpoint, out, "--method", "slimming", "--amount", "0.5") == 0
    result = read(os.path.join(out, "prune.json"))
    assert result["finetuned"] is None
    assert result["after"]["params"] < result["before"]["params"]
    assert result["after"]["macs"] < result["before"]["macs"]
    assert result["slimming"]["channels"] == [16 + 32 + 64, 56]
    path = os.path.join(out, "pruned.npz")
    state = load_checkpoint(path)["model"]
    assert state["blocks.0.conv1.weight"].shape[0] < 16
    capsys.readouterr()
    assert main(["evaluate", path]) == 0
    assert f"accuracy {result['after']['accuracy']:.4f}" in capsys.readouterr().out
    again = str(tmp_path / "from-slim")
    assert main(["train", "--model", "mnist_resnet", "--dataset", "mnist", "--data-root", root, "--batch-size", "32",
                 "--epochs", "1", "--quiet", "--init-from", path, "--out", again]) == 0
    assert load_checkpoint(os.path.join(again, "checkpoint.npz"))["model"]["blocks.0.conv1.weight"].shape == \
        state["blocks.0.conv1.weight"].shape


def test_several_amounts_give_a_folder_each_a_summary_and_a_plot(trained, tmp_path):
    checkpoint, _ = trained
    out = str(tmp_path / "sweep")
    assert prune(checkpoint, out, "--method", "magnitude", "--amount", "0.3", "0.7", "--scope", "layer") == 0
    summary = read(os.path.join(out, "prune.json"))
    assert summary["amounts"] == [0.3, 0.7]
    assert [r["after"]["sparsity"] for r in summary["results"]] == pytest.approx([0.3, 0.7], abs=2e-3)
    assert os.path.getsize(os.path.join(out, "accuracy_vs_amount.png")) > 1000
    for amount in ("0.3", "0.7"):
        assert read(os.path.join(out, f"amount-{amount}", "prune.json"))["amount"] == float(amount)


def test_iterative_rounds_reach_the_target_in_steps(trained, tmp_path):
    checkpoint, _ = trained
    out = str(tmp_path / "rounds")
    assert prune(checkpoint, out, "--method", "magnitude", "--amount", "0.75", "--rounds", "2",
                 "--finetune-epochs", "1") == 0
    result = read(os.path.join(out, "prune.json"))
    assert [round(r["sparsity"], 2) for r in result["rounds"]] == [0.5, 0.75]
    assert all("finetuned_accuracy" in r for r in result["rounds"])
    assert os.path.isfile(os.path.join(out, "round-2", "finetune", "checkpoint.npz"))


@pytest.mark.parametrize("flags, words", [
    (["--method", "magnitude", "--amount", "1.5"], "[0, 1)"),
    (["--method", "slimming", "--amount", "0.5", "--rounds", "2"], "--rounds"),
    (["--method", "magnitude", "--amount", "0.5", "--finetune-epochs", "-1"], "--finetune-epochs"),
])
def test_bad_prune_flags_are_one_line(trained, tmp_path, capsys, flags, words):
    assert prune(trained[0], str(tmp_path / "bad"), *flags) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "bad")


def test_prune_refuses_a_folder_holding_a_run_and_a_file_that_is_no_checkpoint(trained, tmp_path, capsys):
    checkpoint, _ = trained
    assert prune(checkpoint, os.path.dirname(checkpoint), "--method", "magnitude", "--amount", "0.5") == 2
    assert "already holds a run" in capsys.readouterr().err
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a checkpoint")
    assert prune(str(bogus), str(tmp_path / "p"), "--method", "magnitude", "--amount", "0.5") == 2
    assert "not a minires checkpoint" in capsys.readouterr().err
