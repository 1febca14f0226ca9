"""``gradflow shortcuts`` and ``gradflow norms --models`` on their tiny presets: every variant trains and is
recorded (curves, gradient norms at initialisation and at the end, the spread over seeds), the claims have
verdicts, the files are written, and the command line takes and refuses what it should."""
import csv
import json
import os

import pytest

from minires.__main__ import main
from minires.experiments import gradient_norms, shortcuts
from minires.experiments.shortcuts import VARIANTS


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shortcuts"))
    return shortcuts("tiny", out=out, progress=False), out


def test_every_variant_is_trained_with_every_seed(result):
    result, _ = result
    assert set(result["final"]) == set(VARIANTS) and result["seeds"] == [0, 1]
    for run in result["runs"].values():
        for name in VARIANTS:
            curve = run["curves"][name]
            assert [point["iteration"] for point in curve] == [3, 6]
            assert all(0 < point["train_loss"] < 10 and 0 <= point["test_error"] <= 1 for point in curve)
            # x_0 ... x_L for depth 8 (three blocks): four norms, finite and positive, at both ends of training
            norms = run["norms"][name]
            assert len(norms["at_init"]) == len(norms["at_end"]) == 4
            assert all(0 < value < float("inf") for value in norms["at_init"] + norms["at_end"])
    final = result["final"]["dropout"]["train_loss"]
    assert final["values"] == [run["final"]["dropout"]["train_loss"] for run in result["runs"].values()]
    assert final["min"] <= final["mean"] <= final["max"]


def test_the_variants_differ_from_each_other(result):
    # one recipe, one batch order, one seed: the identity unit and each variant end with different losses
    run = result[0]["runs"][0]["final"]
    losses = {name: run[name]["train_loss"] for name in VARIANTS}
    assert len(set(losses.values())) == len(VARIANTS)


def test_claims_have_verdicts_and_both_sides(result):
    claims = result[0]["claims"]
    assert set(claims) == {"identity_beats_constant_scaling", "identity_beats_shortcut_only_gating",
                           "identity_beats_dropout", "full_preact_beats_bn_after_add"}
    for claim in claims.values():
        assert claim["verdict"] in ("holds", "within noise", "does not hold")
        assert len(claim[claim["lower"]]["values"]) == len(claim[claim["higher"]]["values"]) == 2


def test_files(result):
    result, out = result
    with open(os.path.join(out, "shortcuts.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(VARIANTS) * 2  # seeds x variants x points
    with open(os.path.join(out, "shortcuts.json"), encoding="utf-8") as f:
        assert json.load(f)["final"].keys() == result["final"].keys()
    assert os.path.getsize(os.path.join(out, "shortcuts.png")) > 10_000


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant\\(s\\) lambda_two"):
        shortcuts("tiny", variants=("identity", "lambda_two"))


def test_norms_sweep_over_highway_and_densenet():
    result = gradient_norms("tiny", depths=(8,), iterations=1, seeds=2, progress=False,
                            kinds=("plain", "resnet", "highway", "densenet"))
    assert set(result["summary"]) == {"plain-8", "resnet-8", "highway-8", "densenet-8"}
    assert set(result["claims"]) == {f"{kind}_closer_to_one_{when}" for kind in ("resnet", "highway", "densenet")
                                     for when in ("at_init", "at_end")}
    dense = result["networks"]["densenet-8"]
    # DenseNet-10: two dense layers in each of three blocks, two transitions: eight blocks, x_0 ... x_8
    assert len(dense["block_input_norms"][0]) == 9


def test_command_line_models_and_shortcuts(tmp_path, capsys):
    out = str(tmp_path / "norms")
    assert main(["gradflow", "norms", "--preset", "tiny", "--models", "plain,highway", "--seeds", "2",
                 "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "highway-56" in printed and "highway-56 lies closer to 1 than plain-56" in printed
    assert main(["gradflow", "shortcuts", "--preset", "tiny", "--models", "plain", "--quiet"]) == 2
    assert "shortcuts takes no --models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gradflow", "norms", "--models", "plain,wide"])
    assert "unknown network kind(s) wide" in capsys.readouterr().err
