"""Highway networks (Srivastava, Greff & Schmidhuber 2015), convolutional, in the CIFAR ResNet layout.

A highway layer lets a learned *transform gate* T(x) in (0, 1) decide, per channel and pixel, how
much of the layer's transform H(x) to take and how much of the input to carry through unchanged:

    y = H(x) T(x) + x (1 - T(x)),        T(x) = sigmoid(conv(x) + b_T)

With b_T initialised negative (the paper uses -1 to -3; here -2, T ~ 0.12) every layer starts close
to the identity, so a deep highway network trains where a plain one does not. The ResNet is the
special case with both gates fixed open, y = H(x) + x; in a highway network the carry path is
x (1 - T(x)), which multiplies the gradient reaching x through it by 1 - T < 1 in every layer: a
learned version of the constant scaling of He et al. 2016 (``residual_variants.py``).

    dy/dx = diag(T) dH/dx + diag(1 - T) + diag(H - x) dT/dx

Here H(x) = ReLU(BN(conv3x3(ReLU(BN(conv3x3(x)))))), the two convolutions of a ResNet block with the
ReLU inside the transform (so both paths are summed as they are), and T has a 3x3 convolution of its
own (the same receptive field as H). Where a stage halves the resolution and doubles the channels,
x on the carry path is the parameter-free option-A shortcut (subsample, zero-pad the new channels),
as in the CIFAR ResNet. Depth 6n+2 counts H's convolutions like a ResNet's.

Parts as in every model here: ``stem``, ``blocks``, ``head``; each block has ``branch(x)`` (H),
``shortcut`` (the carry's x, a module) and ``gate`` (T).
"""
import minires.functional as F
from minires.models.cifar_resnet import ZeroPadShortcut
from minires.models.residual_variants import Gate
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Identity, Linear, ReLU, Sequential
from minires.nn.module import Module


class HighwayBlock(Module):
    """y = H(x) T(x) + x (1 - T(x))."""

    def __init__(self, in_channels, out_channels, stride=1, gate_bias=-2.0):
        super().__init__()
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(out_channels)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = ZeroPadShortcut(out_channels, stride) if changes_shape else Identity()
        self.gate = Gate(in_channels, out_channels, stride, gate_bias, kernel_size=3)  # T(x), b_T = gate_bias

    def branch(self, x):
        """H(x): the transform."""
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))

    def forward(self, x):
        T = self.gate(x)
        return self.branch(x) * T + self.shortcut(x) * (1 - T)


class HighwayNet(Module):
    def __init__(self, depth=20, width=16, num_classes=10, in_channels=3, gate_bias=-2.0):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"highway net depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}")
        self.depth = depth
        self.stem = Sequential(Conv2d(in_channels, width, 3, padding=1, bias=False), BatchNorm2d(width), ReLU())
        self.blocks, channels = make_stages(
            lambda cin, cout, stride: HighwayBlock(cin, cout, stride, gate_bias),
            width, (width, 2 * width, 4 * width), (depth - 2) // 6)
        self.head = Sequential(GlobalAvgPool2d(), Linear(channels, num_classes))
        he_init_convolutions(self)  # weights only: the gates keep their bias b_T

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def highway_net(depth=20, width=16, num_classes=10, in_channels=3, gate_bias=-2.0):
    """A convolutional highway network of ``depth`` (6n+2) in the CIFAR ResNet's layout."""
    return HighwayNet(depth, width, num_classes, in_channels, gate_bias)
