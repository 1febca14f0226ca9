"""``python -m minires transfer`` (tiny preset): pretrain on digits 0-4, then fine-tune and train from
scratch on a tenth of digits 5-9; every step is an ordinary, resumable training run."""
import json
import os

import numpy as np

from minires.__main__ import main
from minires.serialization import load_checkpoint


def test_the_tiny_transfer_runs_pretrain_finetune_and_scratch(tmp_path, capsys):
    out = str(tmp_path / "transfer")
    assert main(["transfer", "--preset", "tiny", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| finetuned (classes 5-9, 10% of the images) | 0 |" in printed
    assert "fine-tuning the pretrained model" in printed
    with open(os.path.join(out, "transfer.json"), encoding="utf-8") as f:
        result = json.load(f)
    assert result["claim"]["verdict"] in ("holds", "within noise", "does not hold")
    assert len(result["finetuned"]) == len(result["scratch"]) == 1
    for run in [result["pretrain"], *result["finetuned"], *result["scratch"]]:
        assert 0 <= run["test_accuracy"] <= 1 and run["seconds"] > 0

    pretrained = load_checkpoint(os.path.join(out, "pretrain", "checkpoint.npz"))
    tuned = load_checkpoint(os.path.join(out, "finetune-seed0", "checkpoint.npz"))
    scratch = load_checkpoint(os.path.join(out, "scratch-seed0", "checkpoint.npz"))
    assert json.loads(pretrained["config"])["classes"] == [0, 1, 2, 3, 4]
    config = json.loads(tuned["config"])
    assert config["classes"] == [5, 6, 7, 8, 9] and config["reset_head"] and config["train_fraction"] == 0.1
    assert config["init_from"] == os.path.join(out, "pretrain", "checkpoint.npz")
    # fine-tuning started from the pretrained stem (lr 0.01, one small epoch: it moved only a little),
    # scratch from a random one
    start = pretrained["model"]["stem.0.weight"]
    assert np.abs(tuned["model"]["stem.0.weight"] - start).max() < np.abs(scratch["model"]["stem.0.weight"] - start).max()
    # both target runs saw the same images: the same subset seed
    assert json.loads(scratch["config"])["seed"] == config["seed"] == 0
