"""The ImageNet ResNets of He et al. 2015 (ResNet-18/34/50/101/152, table 1), laid out as
torchvision's ``torchvision.models.resnet``, so that its published weights load one to one.

    stem:    conv1 7x7/2 (-> 64), bn1, relu, maxpool 3x3/2           224 -> 56
    blocks:  layer1: 64 wide, 56x56     layer2: 128 wide, 28x28        (the first block of
             layer3: 256 wide, 14x14    layer4: 512 wide, 7x7           layer2..4 has stride 2)
    head:    avgpool (adaptive, to 1x1), flatten, fc -> 1000 classes

Basic block (ResNet-18/34):  branch = bn2(conv2 3x3(relu(bn1(conv1 3x3(x)))))
Bottleneck (ResNet-50/101/152): branch = bn3(conv3 1x1(relu(bn2(conv2 3x3(relu(bn1(conv1 1x1(x))))))))
    conv1 narrows to the width, conv3 widens to 4x the width. The stride sits on the 3x3
    conv2 ("ResNet v1.5", as torchvision; the paper put it on conv1, which skips 3/4 of the input).
Every block is  y = relu(branch(x) + shortcut(x)); the shortcut is the identity, or where the
shape changes ``downsample`` = Sequential(conv 1x1 with the stride, BN): the paper's option B.

Names: the registered attributes are torchvision's (``conv1``, ``layer2.0.downsample.1``, ``fc``),
so ``state_dict()`` has exactly torchvision's keys. The ``stem``, ``blocks`` and ``head`` every
minires model has are views onto those layers, not registered (see ``named_parts.py``); a block's
``shortcut`` is likewise its ``downsample`` or an identity that is not registered.

``small_input=True`` is the variant for CIFAR / MNIST sizes (32x32, 28x28): ``conv1`` becomes a
3x3 conv with stride 1 and padding 1, and ``maxpool`` the identity (the same key names), so the
first stage works at the full input resolution instead of a quarter of it.
"""
from minires.models.named_parts import NamedLayers, StagedBlocks
from minires.models.stages import he_init_convolutions
from minires.nn import init
from minires.nn.layers import (
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Identity, Linear, MaxPool2d, ReLU, Sequential,
)
from minires.nn.module import Module

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
STAGE_WIDTHS = (64, 128, 256, 512)


def downsample_if_needed(in_channels, out_channels, stride):
    """None where the block keeps the shape (the shortcut is the identity), else a 1x1 conv + BN projection."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), BatchNorm2d(out_channels))


class ResidualBlock(Module):
    """What both blocks share:  block(x) = relu(branch(x) + shortcut(x)).

    A subclass registers its layers, ``relu`` and ``downsample`` (torchvision's names) and defines
    ``branch``; the last BN of the branch is ``last_bn`` (zeroed by ``zero_init_residual``)."""

    def __init__(self):
        super().__init__()
        # torchvision's blocks hold ``downsample = None`` where the shortcut is the identity, and no
        # module for it: this one is a plain attribute, not registered (so not in named_modules()).
        object.__setattr__(self, "identity", Identity())

    @property
    def shortcut(self):
        """The shortcut as a module: ``downsample``, or where there is none the identity."""
        return self.identity if self.downsample is None else self.downsample

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))  # y = F(x) + x: the gradient reaches x by both paths


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34); the first carries the stride."""
    expansion = 1
    internal_channels = (("conv1", "bn1", "conv2"),)  # inside the branch: see cifar_resnet.BasicBlock

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.relu = ReLU()
        self.conv2 = Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.downsample = downsample_if_needed(in_channels, width, stride)
        self.stride = stride

    @property
    def last_bn(self):
        return self.bn2

    def branch(self, x):
        """F(x): the branch that learns the residual."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 (narrow to ``width``), 3x3 (with the stride), 1x1 (widen to 4 * width) (ResNet-50/101/152)."""
    expansion = 4
    internal_channels = (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3"))  # the two narrow ones

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self.relu = ReLU()
        self.downsample = downsample_if_needed(in_channels, out_channels, stride)
        self.stride = stride

    @property
    def last_bn(self):
        return self.bn3

    def branch(self, x):
        """F(x): the branch that learns the residual."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def make_layer(block, in_channels, width, count, stride, block_options):
    """One stage: ``count`` blocks of ``width``, the first with ``stride``. Returns (Sequential, output channels)."""
    blocks = [block(in_channels, width, stride, **block_options)]
    channels = width * block.expansion
    blocks += [block(channels, width, 1, **block_options) for _ in range(count - 1)]
    return Sequential(*blocks), channels


class ImageNetResNet(Module):
    """torchvision's ``ResNet(block, layers)``: ``layers`` gives the number of blocks of each of the four stages;
    ``block_options`` are further keyword arguments for every block (``{"reduction": 16}`` for an SE block)."""

    def __init__(self, block, layers, num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False,
                 block_options=None):
        super().__init__()
        layers = tuple(layers)
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(f"layers must give four block counts >= 1, one per stage (e.g. [2, 2, 2, 2] for "
                             f"ResNet-18), got {list(layers)}")
        if not (isinstance(block, type) and issubclass(block, ResidualBlock)):
            raise TypeError(f"block must be a ResidualBlock class (BasicBlock or Bottleneck), got {block!r}")
        if small_input:  # CIFAR / MNIST sizes: keep the resolution for layer1
            self.conv1 = Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        self.maxpool = Identity() if small_input else MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, (name, width, count) in enumerate(zip(STAGE_NAMES, STAGE_WIDTHS, layers)):
            layer, channels = make_layer(block, channels, width, count, 1 if stage == 0 else 2, block_options or {})
            setattr(self, name, layer)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc = Linear(channels, num_classes)
        self.small_input = small_input
        # The parts every minires model has, as views of the layers above (a dict is not registered).
        self._views = {
            "stem": NamedLayers(self, ["conv1", "bn1", "relu", "maxpool"]),
            "blocks": StagedBlocks(self, STAGE_NAMES),
            "head": NamedLayers(self, ["avgpool", ("flatten", Flatten(1)), "fc"]),
        }
        # torchvision's initialisation: He normal (fan_out) convs, BN weight 1 and bias 0 (BatchNorm2d's
        # own), Linear's default; optionally each branch's last BN weight 0, so every block starts as
        # the identity (Goyal et al. 2017).
        he_init_convolutions(self)
        if zero_init_residual:
            for block_module in self.blocks:
                init.zeros_(block_module.last_bn.weight)

    @property
    def stem(self):
        """conv1, bn1, relu, maxpool (a view)."""
        return self._views["stem"]

    @property
    def blocks(self):
        """Every block of layer1 .. layer4, in order (a view: ``blocks[i] = m`` writes into its stage)."""
        return self._views["blocks"]

    @property
    def head(self):
        """avgpool, flatten, fc (a view)."""
        return self._views["head"]

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def resnet18(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
    return ImageNetResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small_input, zero_init_residual)


def resnet34(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
    return ImageNetResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet50(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
    return ImageNetResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet101(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
    return ImageNetResNet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, small_input, zero_init_residual)


def resnet152(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False):
    return ImageNetResNet(Bottleneck, [3, 8, 36, 3], num_classes, in_channels, small_input, zero_init_residual)
