"""Squeeze-and-Excitation networks (Hu et al. 2018): ResNets whose blocks re-weight their channels.

A convolution mixes channels only within its small window. An SE module lets the whole
image decide how much each channel matters, at almost no cost:

    squeeze:     z = global average pool of x                       (N, C): one number per channel
    excitation:  s = sigmoid(fc2(relu(fc1(z))))                     (N, C), each in (0, 1)
                 fc1: C -> C/r (the bottleneck that keeps it cheap), fc2: C/r -> C
    scale:       y[n, c, h, w] = x[n, c, h, w] * s[n, c]            (``F.channel_scale``)

In an SE-ResNet the module sits at the end of every block's branch, before the addition:

    block(x) = relu(se(branch(x)) + shortcut(x))

so the shortcut still carries x unchanged, and the gradient still reaches x through it
(the paper's figure 3 compares other places and finds this one best). With r = 16, SE adds
2 C^2 / 16 + C + C/16 parameters per block: about 10% more for ResNet-50 (25.6M -> 28.1M).

Models: ``se_resnet20``, ``se_resnet56`` (the CIFAR ResNets of ``cifar_resnet.py``) and
``se_resnet50`` (the ImageNet ResNet-50 of ``imagenet_resnet.py``; keys ``layer1.0.se.fc1.weight``).
"""
import minires.functional as F
from minires.models.cifar_resnet import BasicBlock, CifarResNet
from minires.models.imagenet_resnet import Bottleneck, ImageNetResNet
from minires.nn.layers import Linear
from minires.nn.module import Module


class SqueezeExcitation(Module):
    """(N, C, H, W) -> (N, C, H, W): every channel of every image scaled by a weight in (0, 1) that
    two fully connected layers compute from the channel averages; hidden width max(1, C // reduction)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"SqueezeExcitation: channels must be a positive int, got {channels!r}")
        if not isinstance(reduction, int) or reduction < 1:
            raise ValueError(f"SqueezeExcitation: reduction must be a positive int (the paper uses 16), "
                             f"got {reduction!r}")
        self.channels, self.reduction = channels, reduction
        hidden = max(1, channels // reduction)
        self.fc1 = Linear(channels, hidden)
        self.fc2 = Linear(hidden, channels)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"SqueezeExcitation({self.channels}) expects (N, {self.channels}, H, W) input, "
                             f"got shape {tuple(x.shape)}")
        z = F.global_avg_pool2d(x)  # squeeze: (N, C)
        s = F.sigmoid(self.fc2(F.relu(self.fc1(z))))  # excitation: (N, C) in (0, 1)
        return F.channel_scale(x, s)

    def extra_repr(self):
        return f"{self.channels}, reduction={self.reduction}"


class SEBasicBlock(BasicBlock):
    """The CIFAR basic block with SE on its branch: y = ReLU(se(F(x)) + shortcut(x))."""

    def __init__(self, in_channels, out_channels, stride=1, shortcut="A", reduction=16):
        super().__init__(in_channels, out_channels, stride, shortcut)
        self.se = SqueezeExcitation(out_channels, reduction)

    def branch(self, x):
        """se(F(x)): the residual, its channels re-weighted."""
        return self.se(super().branch(x))


class SEBottleneck(Bottleneck):
    """The ImageNet bottleneck with SE on its branch: y = relu(se(F(x)) + shortcut(x))."""

    def __init__(self, in_channels, width, stride=1, reduction=16):
        super().__init__(in_channels, width, stride)
        self.se = SqueezeExcitation(width * self.expansion, reduction)

    def branch(self, x):
        """se(F(x)): the residual, its channels re-weighted."""
        return self.se(super().branch(x))


class SECifarResNet(CifarResNet):
    """A CIFAR ResNet (depth 6n+2) whose blocks are SEBasicBlocks: the same stem, stages and head."""

    def __init__(self, depth=20, reduction=16, shortcut="A", width=16, num_classes=10, in_channels=3):
        super().__init__(depth, shortcut, width, num_classes, in_channels,
                         block=lambda cin, cout, stride, kind: SEBasicBlock(cin, cout, stride, kind, reduction))
        self.reduction = reduction


def se_resnet20(num_classes=10, in_channels=3, reduction=16, shortcut="A"):
    return SECifarResNet(20, reduction, shortcut, 16, num_classes, in_channels)


def se_resnet56(num_classes=10, in_channels=3, reduction=16, shortcut="A"):
    return SECifarResNet(56, reduction, shortcut, 16, num_classes, in_channels)


def se_resnet50(num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False, reduction=16):
    """SE-ResNet-50: ResNet-50 (``imagenet_resnet.resnet50``) with SE in every bottleneck."""
    return ImageNetResNet(SEBottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, zero_init_residual,
                          block_options={"reduction": reduction})
