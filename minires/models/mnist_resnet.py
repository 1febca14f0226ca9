"""A small ResNet for 1x28x28 images (MNIST, Fashion-MNIST) that trains in minutes on a laptop.

The CIFAR ResNet layout (three stages, option-A shortcuts) on 28x28 -> 14x14 -> 7x7
feature maps with one input channel; depth 6n+2 (default 8: one block per stage).
"""
from minires.models.cifar_resnet import CifarResNet


def mnist_resnet(depth=8, width=16, shortcut="A", num_classes=10, in_channels=1):
    return CifarResNet(depth, shortcut, width, num_classes, in_channels)
