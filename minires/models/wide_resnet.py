"""Wide Residual Networks (Zagoruyko & Komodakis 2016): WRN-d-k.

Pre-activation basic blocks, k times wider than the CIFAR ResNet (widths 16k,
32k, 64k), depth d = 6n + 4, and dropout between the two convolutions:
    BN-ReLU-conv3x3 -> BN-ReLU-dropout-conv3x3   (+ x, or a 1x1 conv where the shape changes)
"""
import minires.functional as F
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, Dropout, GlobalAvgPool2d, Linear
from minires.nn.module import Module


class WideBlock(Module):
    def __init__(self, in_channels, out_channels, stride, dropout):
        super().__init__()
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        self.dropout = Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(Module):
    def __init__(self, depth=28, k=10, dropout=0.0, num_classes=10, in_channels=3):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide ResNet depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        self.depth, self.k = depth, k
        self.conv1 = Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.layers, channels = make_stages(
            lambda cin, cout, stride: WideBlock(cin, cout, stride, dropout), 16, (16 * k, 32 * k, 64 * k), n)
        self.bn = BatchNorm2d(channels)
        self.pool = GlobalAvgPool2d()
        self.fc = Linear(channels, num_classes)
        he_init_convolutions(self)

    def blocks(self):
        return list(self.layers)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        return self.fc(self.pool(F.relu(self.bn(out))))


def wide_resnet(depth=28, k=10, dropout=0.0, num_classes=10):
    return WideResNet(depth, k, dropout, num_classes)
