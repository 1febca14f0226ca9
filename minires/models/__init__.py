"""The model zoo, one family per file:

    cifar_resnet.py       CIFAR ResNets and plain nets (He et al. 2015), shortcut options A, B, C
    residual_variants.py  the units of He et al. 2016: shortcut kinds (Fig. 2), BN/ReLU placements (Fig. 4)
    preact_resnet.py      pre-activation ResNets (He et al. 2016)
    wide_resnet.py        Wide ResNets (Zagoruyko & Komodakis 2016)
    highway.py            convolutional Highway networks (Srivastava et al. 2015)
    squeeze_excitation.py SE blocks and SE-ResNets (Hu et al. 2018)
    densenet.py           DenseNet and DenseNet-BC for CIFAR (Huang et al. 2017)
    imagenet_resnet.py    ResNet-18 ... 152 for ImageNet, with torchvision's state-dict names
    spp_resnet.py         a ResNet with a spatial pyramid pooling head (He et al. 2014): any input size
    mnist_resnet.py       a small ResNet for MNIST

Every model has three parts, and ``model(x)`` is exactly ``model.head(model.blocks(model.stem(x)))``:
``stem`` (the layers before the first block), ``blocks`` (index, iterate, or replace one:
``model.blocks[i] = nn.Identity()``) and ``head`` (the layers after the last block). Every
residual block has a ``branch`` F and a ``shortcut``; ``block(x)`` is ReLU(F(x) + shortcut(x))
in the original ResNet and F(x) + shortcut(x) in the pre-activation ones. A plain network's
blocks have ``shortcut = None``; a DenseNet's dense layers have a ``branch`` H and compute
cat([x, H(x)]): the concatenation carries x on unchanged. See ``stages.py``.
"""
from minires.models.cifar_resnet import (
    BasicBlock, CifarResNet, ZeroPadShortcut, plain_net, resnet20, resnet32, resnet44, resnet56, resnet110,
)
from minires.models.residual_variants import VariantBlock, VariantResNet, cifar_resnet
from minires.models.highway import HighwayBlock, HighwayNet, highway_net
from minires.models.spp_resnet import SppResNet, spp_resnet, spp_resnet20
from minires.models.densenet import DenseLayer, DenseNet, Transition, densenet40_k12, densenet_bc100_k12
from minires.models.imagenet_resnet import BasicBlock as ImageNetBasicBlock
from minires.models.imagenet_resnet import Bottleneck, ImageNetResNet, resnet18, resnet34, resnet50, resnet101, resnet152
from minires.models.squeeze_excitation import (
    SEBasicBlock, SEBottleneck, SECifarResNet, SqueezeExcitation, se_resnet20, se_resnet50, se_resnet56,
)
from minires.models.preact_resnet import PreActBlock, PreActBottleneck, PreActResNet, preact_resnet, preact_resnet164
from minires.models.wide_resnet import WideBlock, WideResNet, wide_resnet
from minires.models.mnist_resnet import mnist_resnet

IMAGENET_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101, 152: resnet152}

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
    "se_resnet20": lambda c, k: se_resnet20(num_classes=k, in_channels=c),
    "se_resnet56": lambda c, k: se_resnet56(num_classes=k, in_channels=c),
    # The ImageNet layouts (torchvision's names); "_small" is the stem for 28x28 / 32x32 images (3x3, no max-pool).
    **{f"resnet{d}{suffix}": (lambda d, small: lambda c, k: IMAGENET_RESNETS[d](
        num_classes=k, in_channels=c, small_input=small))(d, small)
       for d in (18, 34, 50, 101, 152) for suffix, small in (("", False), ("_small", True))},
    "se_resnet50": lambda c, k: se_resnet50(num_classes=k, in_channels=c),
    "densenet40_k12": lambda c, k: densenet40_k12(num_classes=k, in_channels=c),
    "densenet_bc100_k12": lambda c, k: densenet_bc100_k12(num_classes=k, in_channels=c),
    "densenet40_k12_efficient": lambda c, k: densenet40_k12(num_classes=k, in_channels=c, memory_efficient=True),
    "densenet_bc100_k12_efficient": lambda c, k: densenet_bc100_k12(num_classes=k, in_channels=c,
                                                                    memory_efficient=True),
}


def build_model(name, in_channels=3, num_classes=10):
    """A model from the registry by name; unknown names list the valid ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](in_channels, num_classes)
