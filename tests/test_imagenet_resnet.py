"""The ImageNet ResNets (imagenet_resnet.py): torchvision's parameter counts, torchvision's state-dict keys and
logits (against a PyTorch ResNet with the same weights, if torch imports), and the stem / blocks / head views."""
import copy
import math

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import nn
from minires.models.imagenet_resnet import (
    BasicBlock, Bottleneck, ImageNetResNet, resnet18, resnet34, resnet50, resnet101, resnet152,
)

# torchvision.models.resnet*(): sum(p.numel() for p in model.parameters()), and the blocks of layer1..layer4.
TORCHVISION_COUNTS = {
    "resnet18": (resnet18, 11_689_512, [2, 2, 2, 2]),
    "resnet34": (resnet34, 21_797_672, [3, 4, 6, 3]),
    "resnet50": (resnet50, 25_557_032, [3, 4, 6, 3]),
    "resnet101": (resnet101, 44_549_160, [3, 4, 23, 3]),
    "resnet152": (resnet152, 60_192_808, [3, 8, 36, 3]),
}
BUILDERS = {name: make for name, (make, _, _) in TORCHVISION_COUNTS.items()}


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_and_block_counts_equal_torchvisions(name):
    make, count, layers = TORCHVISION_COUNTS[name]
    model = make()
    assert model.num_parameters() == count
    assert [len(getattr(model, f"layer{k}")) for k in range(1, 5)] == layers
    assert len(model.blocks) == sum(layers) == len(list(model.blocks))


def test_state_dict_keys_are_torchvisions_and_nothing_else():
    keys = list(resnet18().state_dict())
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    for key in ("layer1.0.bn1.running_mean", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
                "layer4.1.conv2.weight"):
        assert key in keys
    assert not any(key.split(".")[0] in ("stem", "blocks", "head") for key in keys)
    assert "layer1.0.downsample.0.weight" not in keys  # layer1 of ResNet-18 keeps the shape: no projection
    assert "layer1.0.downsample.0.weight" in resnet50().state_dict()  # ResNet-50's widens 64 -> 256


# ---- against PyTorch ----------------------------------------------------------------------------------------

def torch_resnet(torch, name, num_classes=1000, small_input=False):
    """torchvision's ResNet when torchvision imports, else the same layout written here in torch.nn."""
    try:
        from torchvision.models import resnet as torchvision_resnet
        model = getattr(torchvision_resnet, name)(num_classes=num_classes)
    except ImportError:
        model = TorchResNet(torch, name, num_classes)
    if small_input:
        model.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = torch.nn.Identity()
    return model


def TorchResNet(torch, name, num_classes):
    """torchvision's resnet18 / resnet50 layout (the same attributes, in the same order)."""
    tnn = torch.nn

    class Basic(tnn.Module):
        expansion = 1

        def __init__(self, cin, width, stride, downsample):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, width, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(width)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(width)
            self.downsample = downsample

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class Neck(tnn.Module):
        expansion = 4

        def __init__(self, cin, width, stride, downsample):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(width)
            self.conv2 = tnn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(width)
            self.conv3 = tnn.Conv2d(width, 4 * width, 1, bias=False)
            self.bn3 = tnn.BatchNorm2d(4 * width)
            self.relu = tnn.ReLU()
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    block, layers = {"resnet18": (Basic, [2, 2, 2, 2]), "resnet50": (Neck, [3, 4, 6, 3])}[name]

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for k, (width, count) in enumerate(zip((64, 128, 256, 512), layers)):
                stride, blocks = (1 if k == 0 else 2), []
                for j in range(count):
                    s = stride if j == 0 else 1
                    down = None
                    if s != 1 or cin != width * block.expansion:
                        down = tnn.Sequential(tnn.Conv2d(cin, width * block.expansion, 1, s, bias=False),
                                              tnn.BatchNorm2d(width * block.expansion))
                    blocks.append(block(cin, width, s, down))
                    cin = width * block.expansion
                setattr(self, f"layer{k + 1}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(cin, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return Net()


def randomise_batch_norms(torch, model):
    """Fresh BNs are all alike (weight 1, bias 0, mean 0, var 1): make each different, so a swapped name shows."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.num_batches_tracked.fill_(int(torch.randint(1, 100, (), generator=generator)))


CASES = {  # name: (builder, kwargs, input shape)
    "resnet18": ("resnet18", {}, (2, 3, 64, 64)),
    "resnet50": ("resnet50", {}, (2, 3, 64, 64)),
    "resnet18_small_input": ("resnet18", {"num_classes": 10, "small_input": True}, (2, 3, 32, 32)),
}


def ours_and_theirs(torch, case):
    name, kwargs, shape = CASES[case]
    torch.manual_seed(0)
    theirs = torch_resnet(torch, name, **kwargs)
    ours = BUILDERS[name](**kwargs)
    return ours, theirs, shape


@pytest.mark.parametrize("case", sorted(CASES))
def test_keys_and_logits_are_those_of_a_pytorch_resnet_with_the_same_weights(torch, case):
    ours, theirs, shape = ours_and_theirs(torch, case)
    their_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(their_state)  # num_batches_tracked included, in the same order
    assert [name for name, _ in ours.named_modules()] == [name for name, _ in theirs.named_modules()]
    randomise_batch_norms(torch, theirs)
    ours.load_state_dict({key: value.detach().numpy() for key, value in theirs.state_dict().items()})  # strict
    exact = copy.deepcopy(theirs).double()
    x = images(shape)

    def compare(mode):
        """Ours against PyTorch's float64 logits, as close as a few times PyTorch's own float32 rounding
        (in train mode a BN of layer4 normalises by the spread of 8 numbers, which magnifies rounding)."""
        for model in (ours, theirs, exact):
            model.train(mode)
        with torch.no_grad():
            expected = exact(torch.from_numpy(x).double()).numpy()
            their_error = np.abs(theirs(torch.from_numpy(x)).numpy() - expected).max()
        actual = ours(minires.tensor(x)).numpy()
        assert actual.dtype == np.float32
        tolerance = max(1e-5 * np.abs(expected).max(), 4 * their_error)
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance, err_msg=f"logits, train={mode}")

    compare(False)  # eval: the running statistics
    compare(True)  # train: each BN normalises with its batch's statistics and updates its running ones
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        expected = their_state[key].numpy()
        if key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(value, expected, err_msg=key)  # one more batch than loaded
        else:
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(), err_msg=key)


# ---- the views: stem, blocks, head ----------------------------------------------------------------------------

def small_model(make=resnet18, **kwargs):
    minires.manual_seed(0)
    return make(num_classes=10, **kwargs).eval()


def test_forward_is_head_of_blocks_of_stem():
    model = small_model()
    x = minires.tensor(images((2, 3, 32, 32)))
    walked = model.stem(x)
    for block in model.blocks:
        walked = block(walked)
    np.testing.assert_array_equal(model.head(walked).numpy(), model(x).numpy())
    np.testing.assert_array_equal(model.head(model.blocks(model.stem(x))).numpy(), model(x).numpy())


def test_the_views_are_not_registered_but_walk_the_layers_they_show():
    model = resnet18()
    for names in (list(model.state_dict()), [name for name, _ in model.named_modules()],
                  [name for name, _ in model.named_parameters()]):
        assert not any(name.split(".")[0] in ("stem", "blocks", "head") for name in names)
    parameters = list(model.parameters())
    assert len({id(p) for p in parameters}) == len(parameters)
    assert list(model.stem.state_dict()) == [key for key in model.state_dict() if key.split(".")[0] in ("conv1", "bn1")]
    assert list(model.head.state_dict()) == ["fc.weight", "fc.bias"]
    assert list(model.blocks.state_dict()) == [key for key in model.state_dict() if key.startswith("layer")]
    assert sum(part.num_parameters() for part in (model.stem, model.blocks, model.head)) == model.num_parameters()
    model.blocks.eval()  # reaches the blocks' layers, not the stem's
    assert not model.layer3[1].bn2.training and model.bn1.training


def test_a_block_replaced_through_the_view_lands_in_its_stage():
    model = small_model()
    x = minires.tensor(np.abs(images((2, 3, 32, 32), seed=1)))
    before = model(x).numpy()
    original = model.blocks[3]
    assert original is model.layer2[1]
    model.blocks[3] = nn.Identity()  # ResNet-18: blocks 0, 1 are layer1; 2, 3 are layer2
    assert isinstance(model.layer2[1], nn.Identity) and len(model.blocks) == 8
    assert not any(key.startswith("layer2.1.") for key in model.state_dict())
    assert "layer2.0.conv1.weight" in model.state_dict() and "layer3.0.conv1.weight" in model.state_dict()
    assert not np.array_equal(model(x).numpy(), before)
    model.blocks[3] = original
    np.testing.assert_array_equal(model(x).numpy(), before)
    model.blocks[-1] = nn.Identity()
    assert isinstance(model.layer4[1], nn.Identity)
    replacement = BasicBlock(64, 64)
    model.layer1[0] = replacement  # replaced under the view: the view looks the blocks up each time
    assert model.blocks[0] is replacement and next(iter(model.blocks)) is replacement
    with pytest.raises(IndexError, match="out of range for the 8 blocks"):
        model.blocks[8] = nn.Identity()
    with pytest.raises(TypeError, match="Modules"):
        model.blocks[0] = lambda t: t


@pytest.mark.parametrize("make", [resnet18, resnet50], ids=["basic", "bottleneck"])
def test_every_block_is_relu_of_its_branch_plus_its_shortcut(make):
    model = small_model(make)
    x = model.stem(minires.tensor(images((2, 3, 32, 32))))
    module_names = [name for name, _ in model.named_modules()]
    for index, block in enumerate(model.blocks):
        if block.downsample is None:
            assert isinstance(block.shortcut, nn.Identity) and block.shortcut is block.shortcut
        else:
            assert block.shortcut is block.downsample
        y = block(x)
        np.testing.assert_allclose(F.relu(block.branch(x) + block.shortcut(x)).numpy(), y.numpy(), rtol=1e-6,
                                   atol=1e-6)
        x = y
    assert not any(name.endswith(("identity", "shortcut")) for name in module_names)
    assert sum(block.downsample is not None for block in model.blocks) == (3 if make is resnet18 else 4)


def test_small_input_keeps_the_names_and_the_resolution():
    standard, small = resnet18(num_classes=10), resnet18(num_classes=10, small_input=True)
    assert list(standard.state_dict()) == list(small.state_dict())
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == 1 and small.conv1.padding == 1
    assert isinstance(small.maxpool, nn.Identity)
    x = minires.tensor(images((2, 3, 32, 32)))
    assert small.stem(x).shape == (2, 64, 32, 32) and standard.stem(x).shape == (2, 64, 8, 8)
    logits = small(minires.tensor(images((2, 3, 16, 16))))
    assert logits.shape == (2, 10)
    F.cross_entropy(logits, np.array([1, 7])).backward()
    assert all(p.grad is not None for p in small.parameters())
    one_channel = resnet18(num_classes=10, in_channels=1, small_input=True)
    assert one_channel(minires.tensor(images((1, 1, 28, 28)))).shape == (1, 10)


def test_initialisation_is_torchvisions():
    minires.manual_seed(0)
    model = resnet18()
    weight = model.layer4[0].conv2.weight.numpy()  # 512 x 512 x 3 x 3: He normal, fan_out = 512 * 9
    assert abs(weight.mean()) < 1e-3 and weight.std() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)
    stem_weight = model.conv1.weight.numpy()  # 64 x 3 x 7 x 7: fan_out = 64 * 49
    assert stem_weight.std() == pytest.approx(math.sqrt(2 / (64 * 49)), rel=0.05)
    assert np.all(model.layer1[0].bn2.weight.numpy() == 1) and np.all(model.layer1[0].bn2.bias.numpy() == 0)
    bound = 1 / math.sqrt(512)  # Linear's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    fc = model.fc.weight.numpy()
    assert np.abs(fc).max() <= bound and fc.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(model.fc.bias.numpy()).max() <= bound


@pytest.mark.parametrize("block,last", [(BasicBlock, "bn2"), (Bottleneck, "bn3")])
def test_zero_init_residual_zeroes_the_last_bn_of_every_branch(block, last):
    model = ImageNetResNet(block, [1, 2, 1, 1], num_classes=10, zero_init_residual=True)
    for each in model.blocks:
        assert np.all(getattr(each, last).weight.numpy() == 0) and np.all(each.bn1.weight.numpy() == 1)
    assert np.all(getattr(ImageNetResNet(block, [1, 1, 1, 1], num_classes=10).layer1[0], last).weight.numpy() == 1)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="four block counts"):
        ImageNetResNet(Bottleneck, [3, 4, 6])
    with pytest.raises(ValueError, match="four block counts"):
        ImageNetResNet(BasicBlock, [2, 0, 2, 2])
    with pytest.raises(TypeError, match="ResidualBlock class"):
        ImageNetResNet(nn.Identity, [2, 2, 2, 2])
