"""minires.summary: parameters and multiply-adds against the papers' numbers and against counts made here
from the layer shapes, the printed table, modes and hooks put back, shared parameters counted once, errors.
"""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import nn
from minires.models import resnet20
from minires.models.cifar_resnet import CifarResNet
from minires.summary import ModelSummary


def conv_macs(size, c_in, c_out, k):
    """A k x k convolution with a size x size output: every output element is a dot product of c_in * k * k."""
    return size * size * c_out * c_in * k * k


def cifar_resnet20_macs(shortcut):
    """ResNet-20 at 32x32 counted from its layout (He et al. 2015, sec. 4.2): a 3x3 conv 3 -> 16, then
    three stages of three blocks of two 3x3 convs at 32x32 (16 ch.), 16x16 (32) and 8x8 (64), then 64 -> 10.
    Option B adds a 1x1 projection, with stride 2, where a stage starts."""
    total = conv_macs(32, 3, 16, 3)
    c_in = 16
    for width, size in ((16, 32), (32, 16), (64, 8)):
        for block in range(3):
            total += conv_macs(size, c_in, width, 3) + conv_macs(size, width, width, 3)
            if shortcut == "B" and c_in != width:
                total += conv_macs(size, c_in, width, 1)
            c_in = width
    return total + 64 * 10


@pytest.mark.parametrize("shortcut,published_params", [("A", 269_722), ("B", 272_474)])
def test_resnet20_parameters_and_multiply_adds(shortcut, published_params):
    model = CifarResNet(20, shortcut)
    result = minires.summary(model, (1, 3, 32, 32))
    assert isinstance(result, ModelSummary)
    assert result.total_params == model.num_parameters() == published_params
    assert result.trainable_params == result.total_params and result.non_trainable_params == 0
    assert result.total_macs == cifar_resnet20_macs(shortcut)
    assert round(result.total_macs / 1e6) == 41  # "about 41M" (40.55M for option A)
    assert sum(row.params for row in result.rows) == result.total_params


def test_multiply_adds_grow_with_the_batch_and_the_image():
    model = resnet20()
    one = minires.summary(model, (1, 3, 32, 32)).total_macs
    assert minires.summary(model, (3, 3, 32, 32)).total_macs == 3 * one
    # Every layer's output has 4x the pixels at 64x64 (the classifier still sees 64 features per image).
    assert minires.summary(model, (1, 3, 64, 64)).total_macs == 4 * (one - 640) + 640


@pytest.mark.parametrize("builder,published_params,giga_macs", [
    ("resnet18", 11_689_512, 1.81),  # torchvision's counts, and torchinfo's mult-adds
    ("resnet50", 25_557_032, 4.09),
])
def test_imagenet_resnets_match_the_published_counts(builder, published_params, giga_macs):
    from minires.models import imagenet_resnet

    model = getattr(imagenet_resnet, builder)()
    result = minires.summary(model, (1, 3, 224, 224))
    assert result.total_params == model.num_parameters() == published_params
    assert round(result.total_macs / 1e9, 2) == giga_macs
    text = str(result)
    assert f"Total params: {published_params:,}" in text and f"Total mult-adds (G): {giga_macs:.2f}" in text


def test_the_table_has_a_row_per_module_call_indented_by_depth_and_the_totals():
    model = resnet20()
    result = minires.summary(model, (2, 3, 32, 32))
    assert len(result.rows) == len(list(model.modules()))  # every module is called once here
    text = str(result)
    lines = text.splitlines()
    header = lines[1].split()
    assert " ".join(header) == "Layer (type:depth-idx) Output Shape Param # Mult-Adds"
    for expected in ("Total params: 269,722", "Trainable params: 269,722", "Non-trainable params: 0",
                     f"Total mult-adds (M): {result.total_macs / 1e6:.2f}"):
        assert expected in lines
    assert lines[3].split() == ["CifarResNet", "[2,", "10]", "--", "--"]
    assert lines[4].split() == ["Sequential:", "1-1", "[2,", "16,", "32,", "32]", "--", "--"]
    assert lines[5].split() == ["Conv2d:", "2-1", "[2,", "16,", "32,", "32]", "432", f"{2 * 32 * 32 * 16 * 27:,}"]
    assert lines[5].startswith("    Conv2d") and lines[4].startswith("  Sequential")
    stem, last = result.rows[1], result.rows[-1]
    assert (stem.name, stem.type, stem.depth, stem.index) == ("stem", "Sequential", 1, 1)
    assert (last.name, last.type, last.output_shape, last.params, last.macs) == ("head.1", "Linear", (2, 10), 650, 1280)
    assert [row.index for row in result.rows if row.depth == 2][:4] == [1, 2, 3, 4]  # counted across parents
    assert repr(result) == text


def test_it_runs_in_eval_mode_without_a_graph_and_puts_the_modes_and_hooks_back():
    model = resnet20()
    model.train()
    model.blocks[1].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    running_var = model.stem[1].running_var.numpy().copy()
    seen = []
    handle = model.register_forward_hook(lambda m, args, out: seen.append((m.training, out.requires_grad)))
    minires.summary(model, (1, 3, 32, 32))
    assert seen == [(False, False)]  # eval mode, no graph
    assert [m.training for m in model.modules()] == modes
    np.testing.assert_array_equal(model.stem[1].running_var.numpy(), running_var)  # training BN would move it
    handle.remove()
    assert all(not any(m.__dict__.get("_hooks_of", {}).values()) for m in model.modules())
    assert minires.is_grad_enabled()


def test_a_failing_forward_still_puts_the_modes_and_hooks_back():
    model = resnet20()
    model.train()
    with pytest.raises(ValueError):
        minires.summary(model, (1, 1, 32, 32))  # three input channels expected
    assert all(m.training for m in model.modules())
    assert all(not any(m.__dict__.get("_hooks_of", {}).values()) for m in model.modules())


class CalledTwice(nn.Module):
    """One Linear applied twice (a parameter used twice), and a second name for it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.same_linear = self.linear  # registered twice: parameters() yields its weight twice

    def forward(self, x):
        return self.linear(F.relu(self.linear(x)))


class TiedWeights(nn.Module):
    """Two Linear layers that share one weight matrix (tied weights), each with its own bias."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(3, 3), nn.Linear(3, 3)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(self.first(x))


def test_a_parameter_used_twice_is_counted_once():
    model = CalledTwice()
    assert model.num_parameters() == 2 * 20  # the plain count meets the shared module twice
    result = minires.summary(model, (5, 4))
    assert result.total_params == result.trainable_params == 20
    calls = [row for row in result.rows if row.type == "Linear"]
    assert [(row.params, row.shared) for row in calls] == [(20, False), (0, True)]
    assert result.total_macs == 2 * 5 * 4 * 4  # it computes twice
    assert "(shared)" in str(result) and "Total params: 20" in str(result)

    tied = minires.summary(TiedWeights(), (2, 3))
    assert tied.total_params == 9 + 3 + 3  # one weight, two biases
    assert [(row.params, row.shared) for row in tied.rows[1:]] == [(12, False), (3, True)]


def test_parameters_that_do_not_learn_are_counted_apart():
    model = resnet20()
    model.head[1].weight.requires_grad = False
    result = minires.summary(model, (1, 3, 32, 32))
    assert result.non_trainable_params == 640 and result.trainable_params == 269_722 - 640
    assert "Non-trainable params: 640" in str(result)


@pytest.mark.parametrize("shape", [(3, 32, 32, 0), "1, 3, 32, 32", (1, 3, 32.0, 32), (), 32])
def test_a_bad_input_shape_is_refused_with_an_example(shape):
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of positive ints .* e\.g\. \(1, 3, 32, 32\)"):
        minires.summary(resnet20(), shape)


def test_only_modules_are_summarized():
    with pytest.raises(TypeError, match="model must be a minires.nn.Module, got function"):
        minires.summary(resnet20, (1, 3, 32, 32))
