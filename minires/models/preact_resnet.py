"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Moving BN and ReLU *before* each convolution leaves the shortcut path a pure
identity from block to block:  x_{l+1} = x_l + F(x_l),  so
    x_L = x_l + sum_{i=l}^{L-1} F(x_i)   and   dL/dx_l = dL/dx_L (1 + d/dx_l sum F_i)   (eq. 5).

    stem:    conv3x3
    blocks:  three stages, each block  y = branch(x) + shortcut(x)  (nothing after the addition)
    head:    BN, ReLU (the last block's output is not yet activated), global average pool, fully connected

Basic block branch:       BN-ReLU-conv3x3 -> BN-ReLU-conv3x3
Bottleneck block branch:  BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (4x wider)
The shortcut is the identity; where the shape changes it is a 1x1 convolution (``projection``)
of the pre-activated input, ReLU(BN(x)), the same one the branch starts from.
CIFAR depths: basic 6n+2 (e.g. 20, 110), bottleneck 9n+2 (e.g. 164, 1001).
"""
import minires.functional as F
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear, ReLU, Sequential
from minires.nn.module import Module


def projection_if_needed(in_channels, out_channels, stride):
    """None (the shortcut is the identity) where the shape is kept, else a 1x1 convolution."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class PreActivationBlock(Module):
    """What every pre-activation block shares. A subclass defines ``bn1`` (it pre-activates the
    input), ``projection`` (``projection_if_needed``) and ``branch_from_activated``; then

        block(x) = branch(x) + shortcut(x)
        branch(x) = branch_from_activated(ReLU(bn1(x)))
        shortcut(x) = x,  or  projection(ReLU(bn1(x)))

    ``forward`` computes ReLU(bn1(x)) once and hands it to both paths. Calling ``branch`` and
    ``shortcut`` one after the other gives the same numbers, but in training mode a projection
    block's ``bn1`` then updates its running statistics twice."""

    def branch(self, x):
        """F(x): the branch that learns the residual."""
        return self.branch_from_activated(F.relu(self.bn1(x)))

    def shortcut(self, x):
        return x if self.projection is None else self.projection(F.relu(self.bn1(x)))

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        return self.branch_from_activated(activated) + shortcut


class PreActBlock(PreActivationBlock):
    expansion = 1
    # bn1 normalises the block's input (the shortcut's channels): only conv1's outputs are internal.
    internal_channels = (("conv1", "bn2", "conv2"),)

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels * self.expansion, 3, padding=1, bias=False)
        self.projection = projection_if_needed(in_channels, channels * self.expansion, stride)

    def branch_from_activated(self, activated):
        return self.conv2(F.relu(self.bn2(self.conv1(activated))))


class PreActBottleneck(PreActivationBlock):
    expansion = 4
    internal_channels = (("conv1", "bn2", "conv2"), ("conv2", "bn3", "conv3"))

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, channels, 1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = BatchNorm2d(channels)
        self.conv3 = Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.projection = projection_if_needed(in_channels, channels * self.expansion, stride)

    def branch_from_activated(self, activated):
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return self.conv3(F.relu(self.bn3(out)))


def preactivated_head(channels, num_classes):
    """BN and ReLU for the last block's output, then global average pool and the classifier."""
    return Sequential(BatchNorm2d(channels), ReLU(), GlobalAvgPool2d(), Linear(channels, num_classes))


class PreActResNet(Module):
    def __init__(self, depth=164, bottleneck=True, width=16, num_classes=10, in_channels=3):
        super().__init__()
        per_block = 9 if bottleneck else 6
        if (depth - 2) % per_block != 0 or depth < per_block + 2:
            kind = "bottleneck" if bottleneck else "basic"
            raise ValueError(f"pre-activation ResNet with {kind} blocks needs depth {per_block}n+2, got {depth}")
        n = (depth - 2) // per_block
        block = PreActBottleneck if bottleneck else PreActBlock
        self.depth = depth
        self.stem = Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.blocks, channels = make_stages(block, width, (width, 2 * width, 4 * width), n, block.expansion)
        self.head = preactivated_head(channels, num_classes)
        he_init_convolutions(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def preact_resnet(depth, bottleneck=None, width=16, num_classes=10):
    """Basic blocks for 6n+2 depths below 164 unless told otherwise; bottlenecks for 164 and 1001."""
    if bottleneck is None:
        bottleneck = depth in (164, 1001)
    return PreActResNet(depth, bottleneck, width, num_classes)


def preact_resnet164(**kwargs):
    return PreActResNet(164, bottleneck=True, **kwargs)
