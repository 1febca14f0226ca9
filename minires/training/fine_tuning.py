"""Starting from pretrained weights: ``train --init-from ... [--reset-head] [--freeze ...] [--lr-backbone ...]``.

Transfer learning in three moves, each the habit PyTorch code has:

    state = read_weights("pretrained.npz")          # or a .safetensors file (ours or torchvision's names)
    load_initial_weights(model, state, reset_head)  # every layer but, with reset_head, the classifier
    freeze(model, ["stem", "layer1"])               # requires_grad_(False): no gradient, no update
    SGD(parameter_groups(model, lr=0.1, lr_backbone=0.01), ...)

**The head** is the classifier: the model's last ``Linear`` layer (``head.1`` of a CIFAR ResNet,
``fc`` of an ImageNet ResNet). ``reset_head`` keeps the freshly initialised classifier of the
model (built for the new data set's number of classes) instead of the pretrained one; everything
else must match the file exactly. ``--lr-backbone`` gives every other parameter its own learning
rate: the optimizer then has two parameter groups, the head first.

**Freezing** stops gradients and updates of a part's parameters; its batch norms still update
their running statistics in training mode (as in PyTorch: ``requires_grad_`` does not touch
buffers). Parts are named by their attribute path: ``stem``, ``blocks``, ``blocks.0``, ``head``,
or a registered module such as ``layer1`` of an ImageNet ResNet.
"""
import os

from minires.interop.torchvision_names import from_torchvision
from minires.nn.layers import Linear
from minires.nn.module import Module
from minires.prune.loading import prepare_to_load
from minires.serialization import load_checkpoint

DATA_PARALLEL_PREFIX = "module."  # what nn.DataParallel / DDP put before every key in PyTorch


def read_weights(path):
    """The model state dict in ``path``: a checkpoint of ``minires train`` (its model), a file of
    ``minires.save(model.state_dict())``, or a ``.safetensors`` file (``pip install "minires[interop]"``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init-from {path}: no such file")
    if path.endswith(".safetensors"):
        from minires.interop import load_safetensors

        try:
            state = load_safetensors(path)
        except ImportError as err:  # the optional package is missing: one line on the command line
            raise ValueError(f"--init-from {path}: {err}") from None
    else:
        state = load_checkpoint(path)
        if isinstance(state.get("model"), dict):
            state = state["model"]
    if not state or not all(hasattr(value, "shape") for value in state.values()):
        raise ValueError(f"--init-from {path} holds no model state dict (name -> array)")
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
    return dict(state)


def classifier_name(model):
    """The dotted name of ``model``'s classifier: its last Linear layer."""
    names = [name for name, module in model.named_modules() if isinstance(module, Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear layer, so it has no classifier to reset")
    return names[-1]


def load_initial_weights(model, state, reset_head=False, source="the weights"):
    """Load ``state`` into ``model``: all of it, or with ``reset_head`` all but the classifier."""
    try:  # a file with torchvision's names (conv1, layer1.0, fc): ours are left as they are
        state = from_torchvision(state, model)
    except ValueError:  # a model with no torchvision naming: the names must be ours
        pass
    prepare_to_load(model, state)  # a pruned model's masks and narrower layers
    head = classifier_name(model)
    head_keys = {key for key in state if key.startswith(head + ".")}
    if reset_head:
        state = {key: value for key, value in state.items() if key not in head_keys}
    else:
        own = dict(model.named_tensors())
        wrong = [key for key in sorted(head_keys) if key in own and tuple(state[key].shape) != tuple(own[key].shape)]
        if wrong:
            raise ValueError(f"the classifier {head} of {source} has {state[wrong[0]].shape[0]} outputs, this model "
                             f"needs {own[wrong[0]].shape[0]} (another number of classes): pass --reset-head to "
                             "start with a new classifier")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{source} do not fit {type(model).__name__}: {err.args[0]}") from None
    missing = [key for key in missing if not (reset_head and key.startswith(head + "."))]
    if missing or unexpected:
        raise ValueError(f"{source} do not fit {type(model).__name__}: "
                         + "; ".join(f"{what} keys: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
                                     for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys))
    return model


def find_part(model, path):
    """The module at the dotted attribute path ``path`` of ``model`` ("stem", "blocks.3", "layer1")."""
    part = model
    for piece in path.split("."):
        try:
            part = part[int(piece)] if piece.isdigit() else getattr(part, piece)
        except (AttributeError, IndexError, TypeError):
            part = None
        if not isinstance(part, Module):
            known = ["stem", "blocks", "head"] + [name for name, _ in model._modules.items()]
            raise ValueError(f"--freeze {path}: {type(model).__name__} has no part {path!r}; its parts include "
                             f"{', '.join(dict.fromkeys(known))} (and blocks.0, blocks.1, ...)")
    return part


def freeze(model, parts):
    """``requires_grad_(False)`` for every parameter of each named part; returns how many were frozen."""
    frozen = 0
    for path in parts:
        for parameter in find_part(model, path).parameters():
            frozen += parameter.requires_grad
            parameter.requires_grad_(False)
    if parts and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"--freeze {','.join(parts)} freezes every parameter: nothing would be trained")
    return frozen


def parameter_groups(model, lr, lr_backbone=None):
    """The optimizer's parameter groups of the trainable parameters: one group ("all"), or with
    ``lr_backbone`` two, the classifier's ("head", learning rate ``lr``) first, then all others
    ("backbone"). A group left without parameters (a frozen backbone) is left out."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if lr_backbone is None:
        return [{"params": trainable, "lr": lr, "name": "all"}]
    head_ids = {id(p) for p in dict(model.named_modules())[classifier_name(model)].parameters()}
    groups = [{"params": [p for p in trainable if id(p) in head_ids], "lr": lr, "name": "head"},
              {"params": [p for p in trainable if id(p) not in head_ids], "lr": lr_backbone, "name": "backbone"}]
    return [group for group in groups if group["params"]]
