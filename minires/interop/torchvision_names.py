"""State-dict names to and from torchvision's ResNet naming, so weights trade with PyTorch code.

A state dict is a dict name -> array, and two frameworks agree on weights only if they agree on
the names. minires names a CIFAR ResNet by its three parts (``stem``, ``blocks``, ``head``); most
PyTorch CIFAR ResNets are written in torchvision's style instead. The arrays are the same, only
the names differ:

    minires (CifarResNet, n blocks per stage)     torchvision style
    stem.0.*                                      conv1.*
    stem.1.*                                      bn1.*
    blocks.{i}.conv1.* (bn1, conv2, bn2, se.*)    layer{i // n + 1}.{i % n}.conv1.* (the same names)
    blocks.{i}.shortcut.0.* / .1.*                layer{i // n + 1}.{i % n}.downsample.0.* / .1.*
    head.1.*                                      fc.*

So blocks.3 of a ResNet-20 (n = 3) is layer2.0, the first block of the second stage.
minires's ImageNet ResNets (``imagenet_resnet.py``) already have torchvision's exact names:
for them both functions leave the names as they are.

``from_torchvision`` also strips the ``module.`` that ``nn.DataParallel`` and DDP put before every
name of the state dicts they save. A name that has no counterpart stays as it is, so
``model.load_state_dict`` names it among the unexpected (or missing) keys; the arrays are
passed on, not copied.
"""
import re
from collections import OrderedDict

from minires.models.cifar_resnet import CifarResNet
from minires.models.imagenet_resnet import ImageNetResNet
from minires.nn.layers import BatchNorm2d, Conv2d, GlobalAvgPool2d, Linear
from minires.nn.sync_batch_norm import SyncBatchNorm

DATA_PARALLEL_PREFIX = "module."
STAGES = 3  # a CIFAR ResNet's stages: layer1, layer2, layer3
# minires part -> torchvision name, for the layers outside the blocks
OUTER_NAMES = (("stem.0.", "conv1."), ("stem.1.", "bn1."), ("head.1.", "fc."))
MINIRES_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
TORCHVISION_BLOCK = re.compile(r"layer(\d+)\.(\d+)\.(.+)")


def to_torchvision(state_dict, model):
    """``state_dict`` of ``model`` (a minires CifarResNet or ImageNetResNet) under torchvision's names,
    in the same order. For an ImageNetResNet this is the state dict as it is: its names already are."""
    rename = _renaming(model, "to_torchvision")
    return _renamed(state_dict, rename, "to_torchvision")


def from_torchvision(state_dict, model):
    """A state dict with torchvision's names (a ``torch`` model's ``state_dict()``, through
    ``minires.load_safetensors``, say) under ``model``'s minires names, ready for
    ``model.load_state_dict``. A leading ``module.`` (DataParallel / DDP) is removed first.
    For an ImageNetResNet the names are torchvision's already: only ``module.`` is removed."""
    rename = _renaming(model, "from_torchvision")
    if isinstance(state_dict, dict):
        state_dict = OrderedDict((_without_data_parallel_prefix(name), value) for name, value in state_dict.items())
    return _renamed(state_dict, rename, "from_torchvision")


def _without_data_parallel_prefix(name):
    if isinstance(name, str) and name.startswith(DATA_PARALLEL_PREFIX):
        return name[len(DATA_PARALLEL_PREFIX):]
    return name


def _renamed(state_dict, rename, caller):
    if not isinstance(state_dict, dict):
        raise TypeError(f"{caller} renames a state dict (a dict name -> array), got {type(state_dict).__name__}")
    renamed = OrderedDict()
    for name, value in state_dict.items():
        new_name = rename(name) if isinstance(name, str) else name
        if new_name in renamed:
            raise ValueError(f"{caller}: two keys become {new_name!r} ({name!r} is one); the state dict mixes "
                             "minires and torchvision names, so pass one naming only")
        renamed[new_name] = value
    return renamed


def _renaming(model, caller):
    """The function that renames one key for ``model``, in the direction ``caller`` names."""
    if isinstance(model, ImageNetResNet):
        return lambda name: name  # torchvision's names already (imagenet_resnet.py)
    if isinstance(model, CifarResNet):
        per_stage = _blocks_per_stage(model, caller)
        rename = _cifar_to_torchvision if caller == "to_torchvision" else _cifar_from_torchvision
        return lambda name: rename(name, per_stage)
    raise ValueError(f"{caller}: no torchvision naming is defined for {type(model).__name__}; there is one for "
                     "CifarResNet (resnet20 ... resnet110, plain nets, mnist_resnet, se_resnet20/56) and for "
                     "ImageNetResNet (resnet18 ... resnet152, se_resnet50). Pass the model instance the state "
                     "dict belongs to")


def _blocks_per_stage(model, caller):
    """n, from the model itself; a CifarResNet whose stem or head is not the standard one is refused."""
    stem, head = list(model.stem), list(model.head)
    standard = (len(stem) >= 2 and isinstance(stem[0], Conv2d) and isinstance(stem[1], (BatchNorm2d, SyncBatchNorm))
                and len(head) == 2 and isinstance(head[0], GlobalAvgPool2d) and isinstance(head[1], Linear)
                and len(model.blocks) % STAGES == 0)
    if not standard:
        raise ValueError(f"{caller}: this {type(model).__name__} has a stem, head or block count that torchvision "
                         "has no names for (the mapping covers conv-BN stems, 3 stages of blocks and a "
                         "pool + fc head: not SppResNet's pyramid head, say)")
    return len(model.blocks) // STAGES


def _cifar_to_torchvision(name, per_stage):
    for ours, theirs in OUTER_NAMES:
        if name.startswith(ours):
            return theirs + name[len(ours):]
    match = MINIRES_BLOCK.fullmatch(name)
    if match is None:
        return name
    index, rest = int(match.group(1)), match.group(2)
    if index >= STAGES * per_stage:
        return name  # no such block: left as it is for load_state_dict to report
    if rest.startswith("shortcut."):
        rest = "downsample." + rest[len("shortcut."):]
    return f"layer{index // per_stage + 1}.{index % per_stage}.{rest}"


def _cifar_from_torchvision(name, per_stage):
    for ours, theirs in OUTER_NAMES:
        if name.startswith(theirs):
            return ours + name[len(theirs):]
    match = TORCHVISION_BLOCK.fullmatch(name)
    if match is None:
        return name
    stage, position, rest = int(match.group(1)), int(match.group(2)), match.group(3)
    if not (1 <= stage <= STAGES and position < per_stage):
        return name  # a block this model does not have (a deeper network's): left for load_state_dict to report
    if rest.startswith("downsample."):
        rest = "shortcut." + rest[len("downsample."):]
    return f"blocks.{(stage - 1) * per_stage + position}.{rest}"
