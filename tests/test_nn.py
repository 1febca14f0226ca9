"""Modules: registration, state dicts, train/eval, devices, repr, and the layers' shapes."""
import numpy as np
import pytest

import minires
import minires.nn as nn
from minires.nn import init


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.GlobalAvgPool2d(), nn.Linear(4, 2))

    def forward(self, x):
        return self.head(nn.functional.relu(self.bn(self.conv(x))))


def test_parameters_buffers_and_modules_are_registered_with_dotted_names():
    model = TwoLayer()
    assert [n for n, _ in model.named_parameters()] == ["conv.weight", "bn.weight", "bn.bias", "head.1.weight", "head.1.bias"]
    assert [n for n, _ in model.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert list(model.state_dict()) == ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                        "bn.num_batches_tracked", "head.1.weight", "head.1.bias"]
    assert model.num_parameters() == 4 * 3 * 9 + 4 + 4 + 4 * 2 + 2
    assert len(list(model.modules())) == 6


def test_state_dict_round_trip_restores_outputs_exactly():
    minires.manual_seed(0)
    a, b = TwoLayer(), TwoLayer()
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    a(x)  # a training step changes a's running statistics
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_state_dict_is_a_copy():
    model = TwoLayer()
    state = model.state_dict()
    state["conv.weight"][...] = 0
    assert np.abs(model.conv.weight.data).sum() > 0


def test_load_state_dict_lists_missing_unexpected_and_wrongly_shaped_keys():
    model = TwoLayer()
    state = model.state_dict()
    del state["bn.bias"]
    state["extra.weight"] = np.zeros(3)
    state["conv.weight"] = np.zeros((5, 3, 3, 3))
    with pytest.raises(RuntimeError) as info:  # PyTorch's error type, one message for every problem
        model.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for TwoLayer:\n  ")
    assert "\\n" not in message  # real line breaks (a KeyError would print them as a literal \n)
    assert "missing keys: bn.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "conv.weight: checkpoint (5, 3, 3, 3) vs model (4, 3, 3, 3)" in message


def test_non_strict_load_ignores_missing_and_unexpected_keys():
    model = TwoLayer()
    state = {"bn.bias": np.full(4, 7.0), "nonsense": np.zeros(1)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == ["nonsense"] and "conv.weight" in missing
    np.testing.assert_array_equal(model.bn.bias.data, np.full(4, 7.0, dtype=np.float32))
    assert model.bn.bias.dtype == np.float32  # loaded values take the parameter's dtype


def test_train_and_eval_switch_every_submodule_and_change_batch_norm():
    model = TwoLayer()
    x = minires.tensor(np.random.default_rng(1).standard_normal((4, 3, 5, 5)).astype(np.float32))
    model(x)
    assert not np.allclose(model.bn.running_mean.data, 0)  # training updated the running mean
    model.eval()
    assert all(not m.training for m in model.modules())
    before = model.bn.running_mean.data.copy()
    model(x)
    np.testing.assert_array_equal(model.bn.running_mean.data, before)  # eval leaves it alone
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_is_identity_in_eval():
    drop = nn.Dropout(0.5)
    x = minires.tensor(np.ones((100, 10), dtype=np.float32))
    assert (drop(x).data == 0).any()
    drop.eval()
    np.testing.assert_array_equal(drop(x).data, x.data)


def test_zero_grad_and_backward_reach_every_parameter():
    model = TwoLayer()
    x = minires.tensor(np.random.default_rng(2).standard_normal((2, 3, 5, 5)).astype(np.float32))
    nn.functional.cross_entropy(model(x), np.array([0, 1])).backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_shows_layers_and_parameter_counts():
    text = repr(TwoLayer())
    assert "Conv2d(3, 4, kernel_size=(3, 3)" in text
    assert "# 108 parameters" in text
    assert "parameters in total" in text


def test_to_cpu_keeps_tensors_and_cuda_without_gpu_explains(monkeypatch):
    model = TwoLayer()
    assert model.to("cpu") is model and model.conv.weight.device == "cpu"
    if not minires.cuda_is_available():
        with pytest.raises(RuntimeError, match="cannot move data to cuda:0"):
            model.to("cuda")


def test_module_without_super_init_gets_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


@pytest.mark.parametrize("layer,shape,out_shape", [
    (nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 9, 9), (2, 8, 5, 5)),
    (nn.MaxPool2d(2), (2, 3, 8, 8), (2, 3, 4, 4)),
    (nn.AvgPool2d(3, 2, 1), (2, 3, 8, 8), (2, 3, 4, 4)),
    (nn.GlobalAvgPool2d(), (2, 3, 8, 8), (2, 3)),
    (nn.Flatten(), (2, 3, 4, 4), (2, 48)),
    (nn.Identity(), (2, 3), (2, 3)),
    (nn.BatchNorm1d(3), (4, 3), (4, 3)),
    (nn.Linear(3, 5), (4, 3), (4, 5)),
    (nn.ReLU(), (2, 3), (2, 3)),
])
def test_layer_output_shapes(layer, shape, out_shape):
    x = minires.tensor(np.random.default_rng(3).standard_normal(shape).astype(np.float32))
    assert layer(x).shape == out_shape


def test_batch_norm_rejects_the_wrong_rank():
    with pytest.raises(ValueError, match="BatchNorm2d expects 4-D input"):
        nn.BatchNorm2d(3)(minires.tensor(np.zeros((2, 3), dtype=np.float32)))


def test_initialisers_have_the_advertised_variance():
    minires.manual_seed(0)
    w = nn.Parameter(np.zeros((256, 128, 3, 3), dtype=np.float32))
    init.kaiming_normal_(w)  # std = sqrt(2 / fan_in), fan_in = 128 * 9
    assert abs(w.data.std() / np.sqrt(2 / (128 * 9)) - 1) < 0.02
    init.kaiming_normal_(w, mode="fan_out")
    assert abs(w.data.std() / np.sqrt(2 / (256 * 9)) - 1) < 0.02
    init.xavier_uniform_(w)  # uniform(-b, b) with b = sqrt(6 / (fan_in + fan_out))
    bound = np.sqrt(6 / (128 * 9 + 256 * 9))
    assert w.data.max() <= bound and w.data.min() >= -bound and w.data.max() > 0.95 * bound
    init.xavier_normal_(w)
    assert abs(w.data.std() / np.sqrt(2 / (128 * 9 + 256 * 9)) - 1) < 0.02


def test_manual_seed_makes_initialisation_repeatable():
    minires.manual_seed(5)
    a = nn.Conv2d(3, 4, 3).weight.data.copy()
    minires.manual_seed(5)
    np.testing.assert_array_equal(a, nn.Conv2d(3, 4, 3).weight.data)


def test_a_numpy_array_fed_to_a_module_says_to_wrap_it_in_a_tensor():
    model = TwoLayer()
    with pytest.raises(TypeError, match=r"TwoLayer: the input is a numpy.ndarray, not a minires Tensor; "
                                        r"wrap it first: minires.tensor\(array\)"):
        model(np.zeros((1, 3, 8, 8), np.float32))


def test_a_non_array_fed_to_an_op_is_named_without_the_array_hint():
    import minires.functional as F

    with pytest.raises(TypeError, match=r"^relu: input is a builtins.list, not a minires Tensor$"):
        F.relu([1.0, -1.0])
    with pytest.raises(TypeError, match=r"^ReLUFunction: argument 0 is a numpy.ndarray, not a minires Tensor; wrap"):
        minires.ops.activation.ReLUFunction()(np.ones(2, np.float32))


# ---- containers, losses and apply, as in torch.nn ------------------------------------------

class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
        self.heads = nn.ModuleDict({"logits": nn.Linear(3, 2), "score": nn.Linear(3, 1)})

    def forward(self, x):
        for layer in self.layers:
            x = nn.functional.relu(layer(x))
        return self.heads["logits"](x)


def test_module_list_and_dict_register_what_they_hold():
    model = Tower()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias",
                     "heads.logits.weight", "heads.logits.bias", "heads.score.weight", "heads.score.bias"]
    assert len(model.layers) == 2 and isinstance(model.layers[-1], nn.Linear) and len(model.layers[:1]) == 1
    assert list(model.heads) == ["logits", "score"] and "score" in model.heads and len(model.heads) == 2
    model.layers.append(nn.Linear(3, 3))
    model.layers[0] = nn.Identity()
    assert [name for name, _ in model.named_parameters()][:2] == ["layers.1.weight", "layers.1.bias"]
    assert "layers.2.weight" in model.state_dict()
    assert model(minires.tensor(np.ones((4, 3), np.float32))).shape == (4, 2)
    with pytest.raises(TypeError, match="holds Modules"):
        model.layers.append(np.zeros(3))
    with pytest.raises(KeyError, match="without dots"):
        model.heads["a.b"] = nn.Identity()
    with pytest.raises(TypeError, match="not called"):
        model.layers(minires.tensor(np.ones((1, 3), np.float32)))


def test_apply_visits_every_module_children_first():
    model = TwoLayer()
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Conv2d", "BatchNorm2d", "GlobalAvgPool2d", "Linear", "Sequential", "TwoLayer"]
    model.apply(lambda m: isinstance(m, nn.Linear) and m.bias.data.fill(0.25))
    assert np.all(model.head[1].bias.data == 0.25)


def test_loss_modules_equal_the_functional_losses_and_torch():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    ours = criterion(minires.tensor(logits), labels)
    assert float(ours) == float(nn.functional.cross_entropy(minires.tensor(logits), labels, label_smoothing=0.1))
    prediction, target = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    mse = nn.MSELoss()(minires.tensor(prediction, requires_grad=True), minires.tensor(target))
    assert float(mse) == pytest.approx(((prediction - target) ** 2).mean(), rel=1e-12)
    assert float(nn.MSELoss(reduction="sum")(minires.tensor(prediction), minires.tensor(target))) == \
        pytest.approx(((prediction - target) ** 2).sum(), rel=1e-12)
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'"):
        nn.CrossEntropyLoss(reduction="average")
    per_element = nn.MSELoss(reduction="none")(minires.tensor(prediction), minires.tensor(target))
    np.testing.assert_allclose(per_element.numpy(), (prediction - target) ** 2, rtol=1e-12)
    summed = nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)(minires.tensor(logits), labels)
    assert float(summed) == pytest.approx(5 * float(ours), rel=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        nn.MSELoss()(minires.tensor(prediction), minires.tensor(target[:2]))
    torch = pytest.importorskip("torch")
    theirs = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.tensor(logits), torch.tensor(labels))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-12)
    assert float(mse) == pytest.approx(float(torch.nn.MSELoss()(torch.tensor(prediction), torch.tensor(target))))


def test_double_and_float_cast_parameters_and_buffers_but_not_integer_state():
    model = TwoLayer().double()
    assert all(t.dtype == np.float64 for _, t in model.named_tensors() if t.dtype.kind == "f")
    out = model(minires.tensor(np.ones((1, 3, 4, 4))))
    assert out.dtype == np.float64
    assert model.float() is model and model.conv.weight.dtype == np.float32


def test_batch_norm_counts_training_batches_as_pytorch_does_and_loads_state_dicts_without_the_count():
    bn = nn.BatchNorm2d(3)
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32))
    bn(x)
    bn(x)
    bn.eval()
    bn(x)  # evaluation does not count
    assert bn.num_batches_tracked.dtype == np.int64 and int(bn.num_batches_tracked.data) == 2
    older = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}  # a state dict from before
    fresh = nn.BatchNorm2d(3)
    assert fresh.load_state_dict(older) == ([], [])
    np.testing.assert_array_equal(fresh.running_mean.data, bn.running_mean.data)
    assert int(fresh.num_batches_tracked.data) == 0
    fresh.load_state_dict(bn.state_dict())
    assert int(fresh.num_batches_tracked.data) == 2
    with pytest.raises(RuntimeError, match="missing keys: running_var"):  # the other buffers stay required
        fresh.load_state_dict({k: v for k, v in older.items() if k != "running_var"})
