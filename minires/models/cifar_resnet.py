"""The CIFAR-10 ResNets of He et al. 2015 ("Deep Residual Learning", section 4.2),
and the plain networks they are compared with.

    stem:    conv3x3(3 -> 16), BN, ReLU
    blocks:  stage 1: n blocks, 16 channels, 32x32
             stage 2: n blocks, 32 channels, 16x16   (first block has stride 2)
             stage 3: n blocks, 64 channels, 8x8     (first block has stride 2)
    head:    global average pool, fully connected -> 10 classes

Depth = 6n + 2 (two convs per block, plus the first conv and the classifier).
A block is  y = ReLU(branch(x) + shortcut(x)),  with the branch F(x) = BN(conv(ReLU(BN(conv(x))))).
Shortcut options:
    A  identity; where the shape changes, subsample and zero-pad the new channels (no parameters)
    B  identity; where the shape changes, a 1x1 convolution (+BN) projection
    C  a 1x1 projection in every block
A plain network is the same stack with no shortcut at all: its blocks have
``shortcut = None`` and compute y = ReLU(branch(x)).
"""
import minires.functional as F
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Identity, Linear, ReLU, Sequential
from minires.nn.module import Module

SHORTCUTS = ("A", "B", "C", "none")


class ZeroPadShortcut(Module):
    """Option A: parameter-free; subsample by ``stride`` and append zero channels."""

    def __init__(self, out_channels, stride):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x):
        return F.zero_pad_shortcut(x, self.out_channels, self.stride)

    def extra_repr(self):
        return f"out_channels={self.out_channels}, stride={self.stride}"


def projection(in_channels, out_channels, stride):
    """Options B and C: a 1x1 convolution followed by batch norm."""
    return Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), BatchNorm2d(out_channels))


class BasicBlock(Module):
    """y = ReLU(branch(x) + shortcut(x)); in a plain network ``shortcut`` is None and y = ReLU(branch(x)).

    ``changes_shape`` is True for a block that halves the resolution or changes the width
    (the first block of stages 2 and 3)."""

    # The channels conv1 makes, bn1 normalises and conv2 reads: inside the branch, so network slimming
    # (minires/prune/slimming.py) may remove some. conv2's outputs are added to the shortcut: they stay.
    internal_channels = (("conv1", "bn1", "conv2"),)

    def __init__(self, in_channels, out_channels, stride=1, shortcut="A"):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.changes_shape = stride != 1 or in_channels != out_channels
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        if shortcut == "none":
            self.shortcut = None  # a plain network
        elif shortcut == "C" or (shortcut == "B" and self.changes_shape):
            self.shortcut = projection(in_channels, out_channels, stride)
        elif shortcut == "A" and self.changes_shape:
            self.shortcut = ZeroPadShortcut(out_channels, stride)
        else:
            self.shortcut = Identity()

    def branch(self, x):
        """F(x): the branch that learns the residual."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x):
        out = self.branch(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # y = F(x) + x: the gradient reaches x by both paths
        return F.relu(out)


class CifarResNet(Module):
    """``block(in_channels, out_channels, stride, shortcut)`` builds each block: ``BasicBlock``, or a subclass
    of it (the SE block of ``squeeze_excitation.py``)."""

    def __init__(self, depth=20, shortcut="A", width=16, num_classes=10, in_channels=3, block=None):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        n = (depth - 2) // 6
        self.depth, self.shortcut_option = depth, shortcut
        widths = (width, 2 * width, 4 * width)
        self.stem = Sequential(Conv2d(in_channels, width, 3, padding=1, bias=False), BatchNorm2d(width), ReLU())
        block = BasicBlock if block is None else block
        self.blocks, channels = make_stages(
            lambda cin, cout, stride: block(cin, cout, stride, shortcut), width, widths, n)
        self.head = Sequential(GlobalAvgPool2d(), Linear(channels, num_classes))
        he_init_convolutions(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def plain_net(depth, width=16, num_classes=10):
    """The paper's plain baseline: the same layers as CifarResNet(depth) without shortcuts."""
    return CifarResNet(depth, "none", width, num_classes)


def resnet20(**kwargs):
    return CifarResNet(20, **kwargs)


def resnet32(**kwargs):
    return CifarResNet(32, **kwargs)


def resnet44(**kwargs):
    return CifarResNet(44, **kwargs)


def resnet56(**kwargs):
    return CifarResNet(56, **kwargs)


def resnet110(**kwargs):
    return CifarResNet(110, **kwargs)
