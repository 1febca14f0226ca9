"""Wide Residual Networks (Zagoruyko & Komodakis 2016): WRN-d-k.

Pre-activation blocks (``preact_resnet.py``), k times wider than the CIFAR ResNet
(widths 16k, 32k, 64k), depth d = 6n + 4, and dropout between the two convolutions:
    branch:    BN-ReLU-conv3x3 -> BN-ReLU-dropout-conv3x3
    shortcut:  x, or a 1x1 conv of ReLU(BN(x)) where the shape changes
The parts are those of ``PreActResNet``: stem (conv3x3 to 16 channels), blocks, head
(BN, ReLU, global average pool, fully connected).
"""
import minires.functional as F
from minires.models.preact_resnet import PreActivationBlock, preactivated_head, projection_if_needed
from minires.models.stages import he_init_convolutions, make_stages
from minires.nn.layers import BatchNorm2d, Conv2d, Dropout
from minires.nn.module import Module


class WideBlock(PreActivationBlock):
    internal_channels = (("conv1", "bn2", "conv2"),)  # as in PreActBlock (the dropout follows the ReLU)

    def __init__(self, in_channels, out_channels, stride, dropout):
        super().__init__()
        self.bn1 = BatchNorm2d(in_channels)
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(out_channels)
        self.dropout = Dropout(dropout)
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.projection = projection_if_needed(in_channels, out_channels, stride)

    def branch_from_activated(self, activated):
        out = self.conv1(activated)
        return self.conv2(self.dropout(F.relu(self.bn2(out))))


class WideResNet(Module):
    def __init__(self, depth=28, k=10, dropout=0.0, num_classes=10, in_channels=3):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide ResNet depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {depth}")
        n = (depth - 4) // 6
        self.depth, self.k = depth, k
        self.stem = Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.blocks, channels = make_stages(
            lambda cin, cout, stride: WideBlock(cin, cout, stride, dropout), 16, (16 * k, 32 * k, 64 * k), n)
        self.head = preactivated_head(channels, num_classes)
        he_init_convolutions(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def wide_resnet(depth=28, k=10, dropout=0.0, num_classes=10):
    return WideResNet(depth, k, dropout, num_classes)
