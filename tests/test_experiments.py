"""The gradient-flow experiments on their "tiny" presets: the claims that hold robustly,
the files they write (with every seed's values), repeatability, deleting a block through the
model's parts, and bad input. The verdict logic itself is in tests/test_claims.py.

Each experiment runs once per module (fixtures below) and several tests read its result.
"""
import csv
import json
import math
import os

import numpy as np
import pytest

import minires
from minires.__main__ import main
from minires.experiments import degradation, gradient_norms, identity_mapping, lesion
from minires.experiments.common import in_parallel
from minires.experiments.gradient_norms import first_to_last
from minires.experiments.lesion import accuracy_without_block, what_is_left
from minires.experiments.recipe import BlockWatch, build_network, held_out_batches, load_data
from minires.models import CifarResNet
from minires.training import evaluate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


@pytest.fixture(scope="module")
def norms(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("norms"))
    return gradient_norms("tiny", out=out, progress=False), out


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("identity"))
    return identity_mapping("tiny", out=out), out


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lesion"))
    return lesion("tiny", out=out, progress=False), out


# ---- gradient norms ------------------------------------------------------------------------
@pytest.mark.parametrize("shortcut", ["A", "none"])
def test_block_watch_hooks_give_the_gradients_that_retain_grad_gives(shortcut):
    # Oracle: walk the model's parts by hand and keep every x_l's gradient with retain_grad().
    minires.manual_seed(0)
    model = CifarResNet(8, shortcut, width=2, num_classes=3, in_channels=1).double()
    images = minires.tensor(np.random.default_rng(0).standard_normal((4, 1, 8, 8)))
    labels = np.array([0, 1, 2, 1])
    xs = [model.stem(images)]
    for block in model.blocks:
        xs.append(block(xs[-1]))
    for x in xs:
        x.retain_grad()
    minires.functional.cross_entropy(model.head(xs[-1]), labels).backward()
    with BlockWatch(model) as watch:
        minires.functional.cross_entropy(model(images), labels).backward()
    assert len(watch.grads) == len(watch.inputs) == len(model.blocks) + 1
    for x, x_watched, g in zip(xs, watch.inputs, watch.grads):
        np.testing.assert_array_equal(x_watched.numpy(), x.numpy())
        np.testing.assert_allclose(g.numpy(), x.grad.numpy(), rtol=1e-12, atol=1e-15)
    grads = list(watch.grads)
    minires.functional.cross_entropy(model(images * 2.0), labels).backward()
    assert all(a is b for a, b in zip(grads, watch.grads))  # the hooks are off after the with



def test_plain56_gradient_spread_far_exceeds_resnet56_at_initialisation(norms):
    result, _ = norms
    plain = result["summary"]["plain-56"]["block_input_first_to_last_at_init"]
    resnet = result["summary"]["resnet-56"]["block_input_first_to_last_at_init"]
    # Orders of magnitude (log10): measured about 4.1 for plain-56 and 1.8 for ResNet-56.
    assert abs(math.log10(plain)) > abs(math.log10(resnet)) + 1.0
    plain_conv = result["summary"]["plain-56"]["conv_weight_first_to_last_at_init"]
    resnet_conv = result["summary"]["resnet-56"]["conv_weight_first_to_last_at_init"]
    assert abs(math.log10(plain_conv)) > abs(math.log10(resnet_conv)) + 1.0


def test_gradient_norms_record_every_block_and_conv(norms):
    result, _ = norms
    record = result["networks"]["resnet-56"]
    assert record["iterations"] == [0, 1, 2]
    assert all(len(norms) == 27 + 1 for norms in record["block_input_norms"])  # x_0 ... x_27
    assert len(record["conv_names"]) == 55 and record["conv_names"][0] == "stem.0"  # depth 56 = 55 convs + fc
    assert all(n > 0 and math.isfinite(n) for row in record["conv_weight_norms"] for n in row)


def test_gradient_norms_files(norms):
    result, out = norms
    rows = read_csv(os.path.join(out, "gradient_norms.csv"))
    assert list(rows[0]) == ["network", "kind", "depth", "iteration", "quantity", "layer", "name", "norm"]
    first = [r for r in rows if r["network"] == "plain-56" and r["iteration"] == "0" and r["quantity"] == "block_input"]
    assert float(first[0]["norm"]) == pytest.approx(result["networks"]["plain-56"]["block_input_norms"][0][0])
    with open(os.path.join(out, "gradient_norms.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["summary"] == result["summary"] and saved["settings"]["depths"] == [8, 56]
    # every seed's ratios (tiny: seeds 0 and 1), and the summary is their geometric mean
    assert saved["seeds"] == [0, 1] and set(saved["runs"]) == {"0", "1"}
    per_seed = [saved["runs"][seed]["plain-56"]["block_input_first_to_last_at_init"] for seed in ("0", "1")]
    assert saved["spread"]["plain-56"]["block_input_first_to_last_at_init"]["values"] == per_seed
    assert result["summary"]["plain-56"]["block_input_first_to_last_at_init"] == pytest.approx(
        math.sqrt(per_seed[0] * per_seed[1]))
    assert per_seed[0] == pytest.approx(first_to_last(result["networks"]["plain-56"]["block_input_norms"][0]))
    assert per_seed[0] != per_seed[1]  # another seed, another network
    claim = saved["claims"]["resnet_closer_to_one_at_init"]
    assert claim["verdict"] == "holds" and claim["seeds"] == 2
    for name in ("gradient_norms.png", "gradient_norms_training.png"):
        assert_png(os.path.join(out, name))


def test_gradient_norms_repeat_exactly_with_a_seed():
    first = gradient_norms("tiny", depths=(8,), iterations=1, progress=False, seed=3, seeds=1)
    again = gradient_norms("tiny", depths=(8,), iterations=1, progress=False, seed=3, seeds=1)
    other = gradient_norms("tiny", depths=(8,), iterations=1, progress=False, seed=4, seeds=1)
    assert first["networks"] == again["networks"]
    assert first["networks"] != other["networks"]


# ---- the identity-mapping view (eq. 5) -----------------------------------------------------

def test_eq5_holds_to_rounding_error_within_each_stage(identity):
    result, _ = identity
    assert result["max_relative_difference"] < 1e-10
    for row in result["rows"]:
        assert row["eq4_max_relative_difference"] < 1e-10
        # Leaving out the direct term dL/dx_L (the "1" of eq. 5) is badly wrong:
        assert row["branch_only_max_relative_difference"] > 0.1


def test_identity_check_skips_the_projection_blocks(identity):
    result, _ = identity
    # PreAct ResNet-14: blocks 0-5; blocks 2 and 4 start stages 2 and 3 with a 1x1 projection.
    assert [row["block"] for row in result["rows"]] == [0, 1, 3, 5]
    assert [row["L"] for row in result["rows"]] == [2, 2, 4, 6]
    assert [row["stage"] for row in result["rows"]] == [1, 1, 2, 3]


def test_identity_mapping_files(identity):
    result, out = identity
    rows = read_csv(os.path.join(out, "identity_mapping.csv"))
    assert {"stage", "block", "L", "autograd_norm", "direct_term_norm", "branch_term_norm",
            "eq5_max_relative_difference"} <= set(rows[0])
    with open(os.path.join(out, "identity_mapping.json"), encoding="utf-8") as f:
        assert json.load(f)["max_relative_difference"] == result["max_relative_difference"]
    assert_png(os.path.join(out, "identity_mapping.png"))


# ---- degradation -------------------------------------------------------------------------------

def test_degradation_writes_training_curves_of_every_seed(tmp_path):
    result = degradation("tiny", out=str(tmp_path), progress=False)
    rows = read_csv(os.path.join(tmp_path, "degradation.csv"))
    assert list(rows[0]) == ["seed", "network", "iteration", "lr", "train_error", "test_error"]
    assert {r["network"] for r in rows} == {"plain-8", "plain-20", "resnet-8", "resnet-20"}
    assert {r["seed"] for r in rows} == {"0", "1"}  # tiny: two seeds
    plain8 = [r for r in rows if r["network"] == "plain-8" and r["seed"] == "1"]
    assert [int(r["iteration"]) for r in plain8] == [6, 12]
    assert all(0 <= float(r["train_error"]) <= 1 and 0 <= float(r["test_error"]) <= 1 for r in rows)
    # The lr is divided by 10 at 50% and 75% of the 12 iterations: it is 0.001 in the last one.
    assert result["runs"][0]["curves"]["plain-8"][-1]["lr"] == pytest.approx(0.001)
    assert set(result["claims"]) == {"plain_deeper_trains_worse", "resnet_deeper_trains_better",
                                     "resnet_beats_plain_at_depth"}
    # The spread over the seeds is made of each seed's own final error, and the claims use it.
    per_seed = [result["runs"][seed]["final"]["plain-20"]["train_error"] for seed in (0, 1)]
    assert result["final"]["plain-20"]["train_error"]["values"] == per_seed
    claim = result["claims"]["plain_deeper_trains_worse"]
    assert claim["plain-20"]["values"] == per_seed and claim["seeds"] == 2
    assert claim["verdict"] in ("holds", "within noise", "does not hold")
    with open(os.path.join(tmp_path, "degradation.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["seeds"] == [0, 1] and saved["final"]["plain-20"]["train_error"]["values"] == per_seed
    assert_png(os.path.join(tmp_path, "degradation.png"))


def test_trainings_side_by_side_give_the_numbers_of_one_process():
    """jobs=2 trains in two worker processes (BLAS on one thread each), jobs=1 here. The tiny
    networks' layers are one slab and one block each, so both run the same arithmetic."""
    here = degradation("tiny", progress=False, jobs=1)
    side_by_side = degradation("tiny", progress=False, jobs=2)
    assert side_by_side["jobs"] == 2 and here["jobs"] == 1
    assert side_by_side["runs"] == here["runs"] or all(
        side_by_side["runs"][seed]["final"][name]["train_error"] == here["runs"][seed]["final"][name]["train_error"]
        for seed in here["runs"] for name in here["runs"][seed]["final"])


def test_in_parallel_keeps_the_order_and_passes_errors_on():
    assert in_parallel(math.sqrt, [(16.0,), (4.0,), (9.0,)], jobs=2, progress=False) == [4.0, 2.0, 3.0]
    assert in_parallel(math.sqrt, [(16.0,)], jobs=1) == [4.0]  # one call: no workers
    with pytest.raises(ValueError, match="math domain error"):
        in_parallel(math.sqrt, [(1.0,), (-1.0,)], jobs=2, progress=False)


# ---- lesion ------------------------------------------------------------------------------------------

def test_deleted_block_leaves_its_shortcut():
    x = minires.tensor(np.abs(np.random.default_rng(0).standard_normal((2, 4, 8, 8))).astype(np.float32))
    resnet_blocks = CifarResNet(14, "A", 4, 10, 1).blocks
    plain_blocks = CifarResNet(14, "none", 4, 10, 1).blocks
    assert what_is_left(resnet_blocks[1]) is resnet_blocks[1].shortcut
    np.testing.assert_array_equal(what_is_left(resnet_blocks[1])(x).numpy(), x.numpy())  # identity shortcut
    np.testing.assert_array_equal(what_is_left(plain_blocks[1])(x).numpy(), x.numpy())   # same shape: identity
    down = what_is_left(plain_blocks[2])(x).numpy()   # halves the resolution, doubles the channels
    np.testing.assert_array_equal(down[:, :4], x.numpy()[:, :, ::2, ::2])
    assert down.shape == (2, 8, 4, 4) and not down[:, 4:].any()
    np.testing.assert_array_equal(what_is_left(resnet_blocks[2])(x).numpy(), down)


def test_deleting_a_block_replaces_it_in_model_blocks_and_puts_it_back():
    train_set, test_set = load_data("mnist_sample", train_size=64, test_size=64)
    model = build_network("plain", 14, 2, train_set)
    loader = held_out_batches(test_set, train_set, batch_size=32)
    blocks = list(model.blocks)
    deleted = accuracy_without_block(model, 2, loader, 10, "cpu")
    assert list(model.blocks) == blocks  # the very same blocks, in the same order
    model.blocks[2] = what_is_left(blocks[2])
    assert evaluate(model, loader, 10)[1] == deleted


def test_resnet_degrades_gracefully_and_plain_net_collapses(lesions):
    result, _ = lesions
    run = result["runs"][0]  # tiny: one seed
    resnet, plain = run["one_block_deleted"]["resnet-26"], run["one_block_deleted"]["plain-26"]
    assert run["intact"]["resnet-26"] > 0.8 and run["intact"]["plain-26"] > 0.5
    # Measured with seeds 0-2: ResNet medians 0.72-0.75, plain medians about 0.15 (chance is 0.1).
    assert resnet["median_accuracy"] > plain["median_accuracy"] + 0.3
    assert resnet["accuracy_drop"] == pytest.approx(run["intact"]["resnet-26"] - resnet["mean_accuracy"])
    assert result["claims"]["resnet_degrades_gracefully"]["verdict"] == "holds"


def test_lesion_files(lesions):
    result, out = lesions
    rows = read_csv(os.path.join(out, "lesion.csv"))
    assert list(rows[0]) == ["seed", "network", "kind", "deleted_block", "changes_shape", "accuracy"]
    assert len(rows) == 2 * 12  # two networks of 12 blocks each
    assert [r["changes_shape"] for r in rows[:12]].count("True") == 2
    with open(os.path.join(out, "lesion.json"), encoding="utf-8") as f:
        assert json.load(f)["intact"] == result["intact"]
    assert_png(os.path.join(out, "lesion.png"))


def test_lesion_over_two_seeds_keeps_each_seeds_drops(tmp_path):
    result = lesion("tiny", out=str(tmp_path), progress=False, seeds=2, train_size=256, test_size=128,
                    depth=14, iterations=10)
    rows = read_csv(os.path.join(tmp_path, "lesion.csv"))
    assert list(rows[0]) == ["seed", "network", "kind", "deleted_block", "changes_shape", "accuracy"]
    assert {r["seed"] for r in rows} == {"0", "1"} and len(rows) == 2 * 2 * 6  # seeds x networks x blocks
    drops = [result["runs"][seed]["one_block_deleted"]["plain-14"]["accuracy_drop"] for seed in (0, 1)]
    assert result["accuracy_drop"]["plain-14"]["values"] == drops
    assert result["claims"]["resnet_degrades_gracefully"]["plain-14"]["values"] == drops
    with open(os.path.join(tmp_path, "lesion.json"), encoding="utf-8") as f:
        assert json.load(f)["accuracy_drop"]["plain-14"]["values"] == drops
    assert_png(os.path.join(tmp_path, "lesion.png"))


# ---- command line and bad input ------------------------------------------------------------------------

def test_command_line_runs_an_experiment(tmp_path, capsys):
    out = str(tmp_path / "identity")
    assert main(["gradflow", "identity", "--preset", "tiny", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "max relative difference" in printed and out in printed
    assert os.path.isfile(os.path.join(out, "identity_mapping.json"))


def test_command_line_prints_a_verdict_per_claim(tmp_path, capsys):
    out = str(tmp_path / "norms")
    assert main(["gradflow", "norms", "--preset", "tiny", "--seeds", "2", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "over 2 seeds" in printed and "True" not in printed and "False" not in printed
    verdicts = [line for line in printed.splitlines() if line.startswith(("holds:", "within noise:", "does not hold:"))]
    assert len(verdicts) == 2  # at initialisation and after training


def test_identity_refuses_seeds_in_one_line(capsys):
    assert main(["gradflow", "identity", "--preset", "tiny", "--seeds", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: identity takes no --seeds") and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["gradflow", "gradients"], "invalid choice: 'gradients'"),
    (["gradflow", "norms", "--preset", "huge"], "invalid choice: 'huge'"),
    (["gradflow", "norms", "--seeds", "0"], "must be at least 1"),
])
def test_command_line_refuses_unknown_names(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_missing_cifar10_is_one_line_error_not_a_download(tmp_path, capsys):
    argv = ["gradflow", "norms", "--preset", "tiny", "--dataset", "cifar10", "--data-root", str(tmp_path),
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data_batch_1.bin" in err and "Traceback" not in err
    assert os.listdir(tmp_path) == []  # nothing was downloaded or written


def test_unusable_device_is_one_line_error(capsys):
    if minires.cuda_is_available():
        pytest.skip("a GPU is usable here")
    assert main(["gradflow", "identity", "--preset", "tiny", "--device", "cuda", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda is not usable: ")


@pytest.mark.parametrize("call,message", [
    (lambda: gradient_norms("huge"), "unknown preset 'huge'; choose one of: tiny, laptop, gpu"),
    (lambda: lesion("tiny", depht=20), "unknown setting(s) depht"),
    (lambda: degradation("tiny", depths=(8, 14, 20)), "degradation compares two depths"),
])
def test_python_api_refuses_bad_settings(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


# ---- the GPU path ------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_experiments_give_the_cpu_numbers_on_a_gpu():
    on_cpu = identity_mapping("tiny", device="cpu")
    on_gpu = identity_mapping("tiny", device="cuda")
    assert on_gpu["max_relative_difference"] < 1e-10
    for cpu_row, gpu_row in zip(on_cpu["rows"], on_gpu["rows"]):
        assert gpu_row["autograd_norm"] == pytest.approx(cpu_row["autograd_norm"], rel=1e-6)
    cpu_norms = gradient_norms("tiny", device="cpu", iterations=0, progress=False)
    gpu_norms = gradient_norms("tiny", device="cuda", iterations=0, progress=False)
    for name, record in cpu_norms["networks"].items():
        np.testing.assert_allclose(gpu_norms["networks"][name]["block_input_norms"], record["block_input_norms"],
                                   rtol=1e-3)
