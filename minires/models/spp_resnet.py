"""A CIFAR ResNet with a spatial-pyramid-pooling head (He et al. 2014): one model, any image size.

The CIFAR ResNet (``cifar_resnet.py``) ends in global average pooling and a Linear layer, so
its head already accepts any feature-map size, but it keeps only each channel's mean and
forgets *where* a feature was. SPP (``minires/nn/pyramid.py``) keeps more: each channel's
max over the whole map, over each quadrant and over each cell of a 4x4 grid (levels 1, 2, 4),
21 numbers per channel, still a fixed length for any input size:

    stem, blocks:  as in CifarResNet (depth 6n + 2, three stages of 16, 32, 64 channels)
    head:          SpatialPyramidPool2d(levels) -> 64 * sum(l * l) features -> BatchNorm1d -> Linear -> classes

Why the BatchNorm1d: one SGD step changes the logits by about lr * ||features||^2 (the classifier's
weight gradient is the features times the error), and 21 maxima per channel make ||features||^2 a
couple of hundred times what 64 channel means give. With the ResNet recipe (lr 0.1) the loss jumped
from 3 to 350 in the second step and the network never recovered (it stayed at chance on the MNIST
sample); normalising the pooled vector puts every feature back on unit scale.

Only the head is replaced; ``model(x) == model.head(model.blocks(model.stem(x)))`` still holds,
and the same weights classify a 32x32 image, a 48x48 one or a 40x56 one.
"""
from minires.models.cifar_resnet import CifarResNet
from minires.nn.layers import BatchNorm1d, Linear, Sequential
from minires.nn.pyramid import SpatialPyramidPool2d


class SppResNet(CifarResNet):
    """CifarResNet(depth, shortcut, width, num_classes, in_channels) with an SPP + Linear head."""

    def __init__(self, depth=20, shortcut="A", width=16, num_classes=10, in_channels=3, levels=(1, 2, 4)):
        super().__init__(depth, shortcut, width, num_classes, in_channels)
        pool = SpatialPyramidPool2d(levels)
        channels = self.head[-1].in_features  # what the last stage gives: 4 * width
        features = pool.output_features(channels)
        self.head = Sequential(pool, BatchNorm1d(features), Linear(features, num_classes))


def spp_resnet(depth=20, num_classes=10, in_channels=3, levels=(1, 2, 4), shortcut="A", width=16):
    return SppResNet(depth, shortcut, width, num_classes, in_channels, levels)


def spp_resnet20(num_classes=10, in_channels=3, levels=(1, 2, 4)):
    return SppResNet(20, "A", 16, num_classes, in_channels, levels)
