"""The model zoo: CIFAR ResNets and plain nets (He et al. 2015), pre-activation
ResNets (He et al. 2016), Wide ResNets, and a small ResNet for MNIST.

Every model has three parts, and ``model(x)`` is exactly ``model.head(model.blocks(model.stem(x)))``:
``stem`` (the layers before the first block), ``blocks`` (index, iterate, or replace one:
``model.blocks[i] = nn.Identity()``) and ``head`` (the layers after the last block). Every
residual block has a ``branch`` F and a ``shortcut``; ``block(x)`` is ReLU(F(x) + shortcut(x))
in the original ResNet and F(x) + shortcut(x) in the pre-activation ones. A plain network's
blocks have ``shortcut = None``. See ``stages.py``.
"""
from minires.models.cifar_resnet import (
    BasicBlock, CifarResNet, ZeroPadShortcut, plain_net, resnet20, resnet32, resnet44, resnet56, resnet110,
)
from minires.models.residual_variants import VariantBlock, VariantResNet, cifar_resnet
from minires.models.highway import HighwayBlock, HighwayNet, highway_net
from minires.models.spp_resnet import SppResNet, spp_resnet, spp_resnet20
from minires.models.preact_resnet import PreActBlock, PreActBottleneck, PreActResNet, preact_resnet, preact_resnet164
from minires.models.wide_resnet import WideBlock, WideResNet, wide_resnet
from minires.models.mnist_resnet import mnist_resnet

# Names accepted by the training command; each builder takes (in_channels, num_classes) from the data set.
REGISTRY = {
    **{f"resnet{d}": (lambda d: lambda c, k: CifarResNet(d, "A", 16, k, c))(d) for d in (20, 32, 44, 56, 110)},
    **{f"plain{d}": (lambda d: lambda c, k: CifarResNet(d, "none", 16, k, c))(d) for d in (20, 32, 44, 56, 110)},
    "resnet20_b": lambda c, k: CifarResNet(20, "B", 16, k, c),
    "resnet20_c": lambda c, k: CifarResNet(20, "C", 16, k, c),
    "preact_resnet20": lambda c, k: PreActResNet(20, False, 16, k, c),
    "preact_resnet110": lambda c, k: PreActResNet(110, False, 16, k, c),
    "preact_resnet164": lambda c, k: PreActResNet(164, True, 16, k, c),
    "wrn16_4": lambda c, k: WideResNet(16, 4, 0.0, k, c),
    "wrn28_10": lambda c, k: WideResNet(28, 10, 0.3, k, c),
    "mnist_resnet": lambda c, k: mnist_resnet(num_classes=k, in_channels=c),
    "highway20": lambda c, k: HighwayNet(20, 16, k, c),
    "highway56": lambda c, k: HighwayNet(56, 16, k, c),
    "spp_resnet20": lambda c, k: spp_resnet20(num_classes=k, in_channels=c),
}


def build_model(name, in_channels=3, num_classes=10):
    """A model from the registry by name; unknown names list the valid ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](in_channels, num_classes)
