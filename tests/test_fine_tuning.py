"""Starting from pretrained weights (minires/training/fine_tuning.py and the train flags --init-from,
--reset-head, --freeze, --lr-backbone, --classes, --train-fraction, --bn-l1), on a tiny MNIST."""
import json
import os

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import models, optim
from minires.__main__ import main
from minires.serialization import load_checkpoint, save
from minires.training import fine_tuning
from minires.training.train_command import DEFAULTS
from minires.training.training_run import build_run
from test_training import make_tiny_mnist


@pytest.fixture
def root(tmp_path):
    return make_tiny_mnist(str(tmp_path / "data"), n_train=160, n_test=64)


def train(root, out, *extra):
    return main(["train", "--model", "mnist_resnet", "--dataset", "mnist", "--data-root", root, "--batch-size", "32",
                 "--quiet", "--out", out, *extra])


@pytest.fixture
def pretrained(root, tmp_path):
    """A one-epoch run on digits 0-4 (a 5-class model)."""
    out = str(tmp_path / "pretrain")
    assert train(root, out, "--epochs", "1", "--classes", "0-4") == 0
    return os.path.join(out, "checkpoint.npz")


def config(root, **changes):
    return {**DEFAULTS, "model": "mnist_resnet", "dataset": "mnist", "data_root": root, "batch_size": 32,
            "epochs": 1, "augment": False, **changes}


def test_init_from_loads_every_layer_but_the_new_classifier(root, pretrained):
    saved = load_checkpoint(pretrained)["model"]
    run = build_run(config(root, classes=[5, 6, 7], init_from=pretrained, reset_head=True))
    own = run.model.state_dict()
    assert own["head.1.weight"].shape == (3, 64) and saved["head.1.weight"].shape == (5, 64)
    for key, value in own.items():
        if not key.startswith("head.1."):
            np.testing.assert_array_equal(value, saved[key], err_msg=key)


def test_a_classifier_of_the_wrong_size_needs_reset_head(root, pretrained, tmp_path, capsys):
    assert train(root, str(tmp_path / "x"), "--classes", "5-7", "--init-from", pretrained) == 2
    err = capsys.readouterr().err
    assert "classifier head.1" in err and "5 outputs" in err and "--reset-head" in err and len(err.strip().splitlines()) == 1


def test_init_from_a_bare_state_dict_file_and_with_the_same_classes(root, pretrained, tmp_path):
    path = str(tmp_path / "weights.npz")
    save(load_checkpoint(pretrained)["model"], path)
    run = build_run(config(root, classes=[0, 1, 2, 3, 4], init_from=path))  # same classes: the head loads too
    np.testing.assert_array_equal(run.model.state_dict()["head.1.weight"],
                                  load_checkpoint(pretrained)["model"]["head.1.weight"])


def test_weights_of_another_model_give_a_clear_error(root, tmp_path):
    path = str(tmp_path / "resnet20.npz")
    save(models.resnet20().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        build_run(config(root, init_from=path))


def test_frozen_parts_stay_bit_identical_while_the_rest_trains(root, pretrained, tmp_path):
    out = str(tmp_path / "frozen")
    assert train(root, out, "--epochs", "2", "--classes", "5-9", "--init-from", pretrained, "--reset-head",
                 "--freeze", "stem,blocks.0") == 0
    start, end = load_checkpoint(pretrained)["model"], load_checkpoint(os.path.join(out, "checkpoint.npz"))["model"]
    model = models.mnist_resnet(num_classes=5)
    parameters = {name for name, _ in model.named_parameters()}
    frozen = [k for k in parameters if k.startswith(("stem.", "blocks.0."))]
    trained = [k for k in parameters if k.startswith("blocks.1.")]
    assert frozen and trained
    for key in frozen:
        np.testing.assert_array_equal(end[key], start[key], err_msg=key)
    assert all(not np.array_equal(end[key], start[key]) for key in trained)
    assert not np.array_equal(end["stem.1.running_mean"], start["stem.1.running_mean"])  # statistics still move


def test_freeze_names_an_unknown_part(root):
    with pytest.raises(ValueError, match="no part 'layer9'.*stem, blocks, head"):
        build_run(config(root, freeze=["layer9"]))


def test_each_parameter_group_steps_with_its_own_learning_rate():
    minires.manual_seed(0)
    model = models.mnist_resnet(num_classes=3).double()
    groups = fine_tuning.parameter_groups(model, lr=0.1, lr_backbone=0.01)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    head = {id(p) for p in model.head[1].parameters()}
    assert {id(p) for p in groups[0]["params"]} == head
    optimizer = optim.SGD(groups, lr=0.1)
    rng = np.random.default_rng(0)
    x = minires.tensor(rng.standard_normal((4, 1, 28, 28)))
    loss = F.cross_entropy(model(x), rng.integers(0, 3, 4))
    optimizer.zero_grad()
    loss.backward()
    before = {id(p): (p.data.copy(), p.grad.data.copy()) for p in model.parameters()}
    optimizer.step()
    for p in model.parameters():
        weights, grad = before[id(p)]
        lr = 0.1 if id(p) in head else 0.01
        np.testing.assert_allclose(p.data, weights - lr * grad, rtol=1e-13, atol=1e-16)


def test_lr_backbone_follows_the_schedule_and_is_logged_in_the_run(root, pretrained):
    run = build_run(config(root, classes=[5, 6, 7, 8, 9], init_from=pretrained, reset_head=True, lr=0.1,
                           lr_backbone=0.02, epochs=4, milestones=[0.5]))
    assert [g["lr"] for g in run.optimizer.param_groups] == [0.1, 0.02]
    for _ in range(2):
        run.scheduler.step()
    np.testing.assert_allclose([g["lr"] for g in run.optimizer.param_groups], [0.01, 0.002])


def test_a_fine_tuning_run_resumes_bit_for_bit(root, pretrained, tmp_path):
    flags = ["--epochs", "2", "--classes", "5-9", "--train-fraction", "0.5", "--init-from", pretrained, "--reset-head",
             "--freeze", "stem", "--lr-backbone", "0.01"]
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    assert train(root, straight, *flags) == 0
    assert train(root, stopped, *flags, "--stop-after", "1") == 0
    assert main(["train", "--resume", os.path.join(stopped, "checkpoint.npz"), "--data-root", root, "--quiet"]) == 0
    a = load_checkpoint(os.path.join(straight, "checkpoint.npz"))["model"]
    b = load_checkpoint(os.path.join(stopped, "checkpoint.npz"))["model"]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_classes_and_fraction_choose_the_data_and_evaluate_follows(root, tmp_path, capsys):
    out = str(tmp_path / "few")
    assert train(root, out, "--epochs", "1", "--classes", "2,7", "--train-fraction", "0.5") == 0
    saved = json.loads(load_checkpoint(os.path.join(out, "checkpoint.npz"))["config"])
    assert saved["classes"] == [2, 7] and saved["train_fraction"] == 0.5
    capsys.readouterr()
    assert main(["evaluate", os.path.join(out, "checkpoint.npz"), "--data-root", root]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[2:]] == ["2", "7"]  # MNIST's class names are its digits


def test_resume_refuses_other_classes(root, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train(root, out, "--epochs", "1", "--classes", "0-4") == 0
    assert main(["train", "--resume", os.path.join(out, "checkpoint.npz"), "--epochs", "2", "--classes", "5-9",
                 "--data-root", root, "--quiet"]) == 2
    assert "--classes" in capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--reset-head"], "without --init-from"),
    (["--init-from", "nowhere.npz"], "no such file"),
    (["--classes", "9-5"], "--classes 9-5: the range '9-5'"),
    (["--train-fraction", "0"], "(0, 1]"),
    (["--bn-l1", "-1"], ">= 0"),
    (["--lr-backbone", "nan"], "finite"),
])
def test_bad_fine_tuning_flags_are_one_line(flags, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_bn_l1_shrinks_the_branch_gammas_and_is_refused_where_nothing_is_slimmable(root, tmp_path):
    plain, penalised = str(tmp_path / "plain"), str(tmp_path / "l1")
    assert train(root, plain, "--epochs", "1", "--weight-decay", "0") == 0
    assert train(root, penalised, "--epochs", "1", "--weight-decay", "0", "--bn-l1", "0.05") == 0
    a = load_checkpoint(os.path.join(plain, "checkpoint.npz"))["model"]
    b = load_checkpoint(os.path.join(penalised, "checkpoint.npz"))["model"]
    for block in range(3):
        assert np.abs(b[f"blocks.{block}.bn1.weight"]).sum() < np.abs(a[f"blocks.{block}.bn1.weight"]).sum() - 0.1
    with pytest.raises(ValueError, match="--bn-l1"):
        build_run(config(root, model="highway20", bn_l1=1e-4))


def test_imagenet_weights_in_a_safetensors_file_start_a_model_for_other_classes(tmp_path):
    pytest.importorskip("safetensors")
    minires.manual_seed(0)
    published = models.resnet18(num_classes=1000)  # as torchvision publishes it: 1000 classes, its key names
    path = str(tmp_path / "resnet18.safetensors")
    minires.save_safetensors({"module." + key: value for key, value in published.state_dict().items()}, path)
    minires.manual_seed(1)
    model = models.resnet18(num_classes=10)
    fine_tuning.load_initial_weights(model, fine_tuning.read_weights(path), reset_head=True)
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 10
        else:
            np.testing.assert_array_equal(value, published.state_dict()[key], err_msg=key)


def test_a_safetensors_file_without_the_package_is_one_line(root, tmp_path, monkeypatch, capsys):
    import builtins

    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    assert train(root, str(tmp_path / "x"), "--init-from", str(path)) == 2
    err = capsys.readouterr().err
    assert 'pip install "minires[interop]"' in err and len(err.strip().splitlines()) == 1
