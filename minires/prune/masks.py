"""Pruning masks: how a pruned weight stays zero (PyTorch's ``torch.nn.utils.prune`` scheme).

Pruning ``conv.weight`` with a 0/1 ``mask`` of its shape re-parametrizes the module:

    conv.weight_orig    the Parameter that was ``conv.weight`` (the same object: an optimizer
                        built before pruning keeps updating it)
    conv.weight_mask    a buffer: saved in the state dict, moved by ``to()``, never learned
    conv.weight         a plain tensor, recomputed before every forward by a forward pre-hook:
                            weight = weight_orig * weight_mask

Because ``weight`` is computed *in the graph*, the mask is applied in forward and to the
gradient alike: d(weight_orig * mask)/d(weight_orig) = mask, so a pruned entry's gradient is
exactly 0 and the weight the layer uses stays exactly 0, through any number of SGD steps, in
checkpoints (the state dict holds ``weight_orig`` and ``weight_mask``) and after a resume.
(Weight decay still shrinks a pruned entry of ``weight_orig`` towards 0; it is multiplied by
0 wherever it is used.)

``remove(module, "weight")`` makes it permanent: ``weight`` becomes a Parameter again, holding
``weight_orig * weight_mask``, and the mask and the hook are gone.

The state-dict keys are PyTorch's (``weight_orig``, ``weight_mask``). The parameters keep their
positions in ``module._parameters``, so ``model.parameters()`` gives the same order before and
after pruning, and optimizer checkpoints stay aligned.
"""
from collections import OrderedDict

import numpy

from minires.backends import to_device
from minires.engine.grad_mode import no_grad
from minires.engine.tensor import Tensor


def _rename_parameter(module, old, new):
    """Move Parameter ``old`` to the name ``new``, keeping its position in ``module._parameters``."""
    parameter = module._parameters[old]
    renamed = OrderedDict((new if name == old else name, p) for name, p in module._parameters.items())
    object.__setattr__(module, "_parameters", renamed)
    del module.__dict__[old]
    object.__setattr__(module, new, parameter)
    return parameter


def _pruned_names(module):
    return module.__dict__.setdefault("_pruned", {})  # name -> the forward pre-hook's handle


def is_pruned(module):
    """True when ``module`` or any module inside it holds a pruning mask."""
    return any(m.__dict__.get("_pruned") for m in module.modules())


def apply_mask(module, name):
    """Recompute ``module.<name>`` = ``<name>_orig * <name>_mask`` (in the graph when grad mode is on)."""
    object.__setattr__(module, name, getattr(module, name + "_orig") * getattr(module, name + "_mask"))


def custom_from_mask(module, name, mask):
    """Prune ``module.<name>`` with ``mask`` (1 keeps an entry, 0 prunes it); returns ``module``.

    Pruning a tensor that already has a mask multiplies the masks: a pruned entry never comes back.
    """
    pruned = name in _pruned_names(module)
    if not pruned and name not in module._parameters:
        raise ValueError(f"{type(module).__name__} has no parameter {name!r} to prune "
                         f"(its parameters: {', '.join(module._parameters) or 'none'})")
    parameter = module._parameters[name + "_orig" if pruned else name]
    mask = numpy.asarray(to_device(mask, "cpu"))
    if mask.shape != tuple(parameter.shape):
        raise ValueError(f"the mask for {type(module).__name__}.{name} has shape {mask.shape}, "
                         f"the parameter {tuple(parameter.shape)}")
    if not numpy.isin(mask, (0, 1)).all():
        raise ValueError(f"a pruning mask holds only 0 and 1; the one for {name!r} has other values")
    if pruned:  # a second pruning: the masks multiply
        old = getattr(module, name + "_mask")
        old.data = old.data * to_device(mask.astype(old.dtype), old.device)
        with no_grad():
            apply_mask(module, name)
        return module
    _rename_parameter(module, name, name + "_orig")
    module.register_buffer(name + "_mask", Tensor(to_device(mask.astype(parameter.dtype), parameter.device)))
    _pruned_names(module)[name] = module.register_forward_pre_hook(lambda m, args: apply_mask(m, name))
    with no_grad():  # so that module.weight can be read before the first forward
        apply_mask(module, name)
    return module


def remove(module, name):
    """Make the pruning of ``module.<name>`` permanent: ``<name>`` is a Parameter again, with the
    pruned entries 0, and ``<name>_orig``, ``<name>_mask`` and the hook are removed. Returns ``module``."""
    handles = _pruned_names(module)
    if name not in handles:
        raise ValueError(f"{type(module).__name__}.{name} is not pruned, so there is nothing to remove")
    handles.pop(name).remove()
    mask = module._buffers.pop(name + "_mask")
    module.__dict__["_buffer_names"].discard(name + "_mask")
    del module.__dict__[name + "_mask"]
    del module.__dict__[name]  # the computed tensor
    parameter = _rename_parameter(module, name + "_orig", name)
    parameter.data = parameter.data * mask.data
    return module


def masks(model):
    """``{(module's dotted name, parameter name): mask array}`` of every mask in ``model``."""
    return {(prefix, name): module.__dict__[name + "_mask"].data
            for prefix, module in model.named_modules() for name in module.__dict__.get("_pruned", {})}

