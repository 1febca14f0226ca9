"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Moving BN and ReLU *before* each convolution leaves the shortcut path a pure
identity from block to block:  x_{l+1} = x_l + F(x_l),  so
    x_L = x_l + sum_{i=l}^{L-1} F(x_i)   and   dL/dx_l = dL/dx_L (1 + d/dx_l sum F_i)   (eq. 5).

Basic block:       BN-ReLU-conv3x3 -> BN-ReLU-conv3x3            (+ x)
Bottleneck block:  BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (4x wider)   (+ x)
Where the shape changes, the shortcut is a 1x1 convolution of the pre-activated input.
CIFAR depths: basic 6n+2 (e.g. 20, 110), bottleneck 9n+2 (e.g. 164, 1001).
"""
import minires.functional as F
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear
from minires.nn.module import Module


class PreActBlock(Module):
    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        out_channels = channels * self.expansion
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def residual_from_activated(self, activated):
        return self.conv2(F.relu(self.bn2(self.conv1(activated))))

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.residual_from_activated(activated) + shortcut


class PreActBottleneck(Module):
    expansion = 4

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        out_channels = channels * self.expansion
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, channels, 1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = BatchNorm2d(channels)
        self.conv3 = Conv2d(channels, out_channels, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def residual_from_activated(self, activated):
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return self.conv3(F.relu(self.bn3(out)))

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.residual_from_activated(activated) + shortcut


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
        self.conv1 = Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.layers, channels = make_stages(block, width, (width, 2 * width, 4 * width), n, block.expansion)
        self.bn = BatchNorm2d(channels)  # the last block's output is not yet activated
        self.pool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        he_init_convolutions(self)

    def blocks(self):
        return list(self.layers)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        return self.fc(self.pool(F.relu(self.bn(out))))


def preact_resnet(depth, bottleneck=None, width=16, num_classes=10):
    """Basic blocks for 6n+2 depths below 164 unless told otherwise; bottlenecks for 164 and 1001."""
    if bottleneck is None:
        bottleneck = depth in (164, 1001)
    return PreActResNet(depth, bottleneck, width, num_classes)


def preact_resnet164(**kwargs):
    return PreActResNet(164, bottleneck=True, **kwargs)
