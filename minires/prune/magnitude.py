"""Unstructured magnitude pruning (Han et al. 2015, "Learning both Weights and Connections").

The weights closest to zero matter least: set the smallest ``|w|`` to zero and keep them there
(the masks of ``masks.py``), then fine-tune the rest to recover the accuracy. Repeating
prune-and-fine-tune reaches higher sparsity than pruning once ("iterative pruning").

PyTorch's spelling, L1 (magnitude) only:

    prune.l1_unstructured(conv, "weight", amount=0.3)        # 30% of conv.weight's remaining entries
    prune.global_unstructured([(conv1, "weight"), (fc, "weight")], amount=0.5)  # one threshold for all
    prune.remove(conv, "weight")                              # make it permanent

``amount`` is a fraction of the entries *not yet pruned* (a float in [0, 1]) or a number of
entries (an int), as in PyTorch: pruning 50% twice leaves 25%. For a whole model,
``magnitude_prune(model, sparsity)`` takes a *target* instead: the fraction of all prunable
weights (every convolution's and linear layer's weight, the first and last layers included)
that are zero afterwards.

Ties at the threshold are broken by position (a stable sort), so a pruning is deterministic.
"""
import math

import numpy

from minires.backends import to_device
from minires.nn.layers import Conv2d, Linear
from minires.prune.masks import custom_from_mask


def _weight_and_mask(module, name):
    """(|weight| as used in forward, current mask) on the host; the mask is all ones when unpruned."""
    weight = numpy.abs(to_device(getattr(module, name).data, "cpu"))
    mask = to_device(module.__dict__[name + "_mask"].data, "cpu") if name in module.__dict__.get("_pruned", {}) \
        else numpy.ones_like(weight)
    return weight, mask


def _count(amount, remaining, where):
    """How many of ``remaining`` entries ``amount`` (a fraction or a count) prunes."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise ValueError(f"{where}: amount must be a fraction in [0, 1] or a number of entries, got {amount!r}")
    if isinstance(amount, int):
        if not 0 <= amount <= remaining:
            raise ValueError(f"{where}: amount {amount} is more entries than the {remaining} not yet pruned")
        return amount
    if not 0 <= amount <= 1:
        raise ValueError(f"{where}: amount {amount} must be a fraction in [0, 1]")
    return int(round(amount * remaining))


def _prune_smallest(pairs, count):
    """Prune, across all ``(module, name)`` pairs together, the ``count`` unpruned entries of smallest |w|."""
    weights, masks = zip(*(_weight_and_mask(m, n) for m, n in pairs))
    scores = numpy.concatenate([w.ravel() for w in weights]).astype(numpy.float64)
    alive = numpy.concatenate([k.ravel() for k in masks]) != 0
    scores[~alive] = numpy.inf  # already pruned: never chosen again, never counted twice
    chosen = numpy.argsort(scores, kind="stable")[:count]
    new_mask = alive.astype(numpy.float64)
    new_mask[chosen] = 0
    start = 0
    for (module, name), weight in zip(pairs, weights):
        custom_from_mask(module, name, new_mask[start:start + weight.size].reshape(weight.shape))
        start += weight.size


def l1_unstructured(module, name, amount):
    """Prune ``amount`` of ``module.<name>``'s remaining entries, those of smallest magnitude."""
    _, mask = _weight_and_mask(module, name)
    _prune_smallest([(module, name)], _count(amount, int(numpy.count_nonzero(mask)), f"{type(module).__name__}.{name}"))
    return module


def global_unstructured(parameters, amount):
    """Prune ``amount`` of the remaining entries of all ``(module, name)`` pairs with one threshold:
    layers with many small weights lose more of them than others."""
    pairs = list(parameters)
    if not pairs:
        raise ValueError("global_unstructured got no (module, name) pairs to prune")
    remaining = sum(int(numpy.count_nonzero(_weight_and_mask(m, n)[1])) for m, n in pairs)
    _prune_smallest(pairs, _count(amount, remaining, "global_unstructured"))


def prunable_weights(model):
    """``[(dotted name, module, "weight")]`` for every convolution and linear layer of ``model``."""
    return [(prefix, module, "weight") for prefix, module in model.named_modules()
            if isinstance(module, (Conv2d, Linear))]


def sparsity(model):
    """The fraction of ``model``'s prunable weights that are exactly 0."""
    weights = [getattr(m, n).data for _, m, n in prunable_weights(model)]
    zeros = sum(int(numpy.count_nonzero(to_device(w, "cpu") == 0)) for w in weights)
    return zeros / sum(w.size for w in weights)


def magnitude_prune(model, sparsity_target, scope="global"):
    """Prune ``model``'s conv and linear weights until ``sparsity_target`` of them are 0.

    scope "global": one threshold over all layers (Han et al.); "layer": every layer to the
    target. Entries pruned earlier stay pruned, so calling it again with a higher target
    continues an iterative schedule. Returns ``model``.
    """
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if not (isinstance(sparsity_target, (int, float)) and 0 <= sparsity_target < 1):
        raise ValueError(f"the target sparsity must be in [0, 1), got {sparsity_target!r}")
    layers = [(m, n) for _, m, n in prunable_weights(model)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no convolution or linear layer to prune")
    groups = [layers] if scope == "global" else [[pair] for pair in layers]
    for group in groups:
        masks = [_weight_and_mask(m, n)[1] for m, n in group]
        total = sum(k.size for k in masks)
        pruned = total - sum(int(numpy.count_nonzero(k)) for k in masks)
        wanted = int(round(sparsity_target * total))
        if wanted < pruned:
            raise ValueError(f"the model is already pruned to {pruned / total:.1%}; a pruning mask only "
                             f"grows, so the target {sparsity_target:.1%} cannot be reached")
        _prune_smallest(group, wanted - pruned)
    return model


def iterative_sparsities(target, rounds):
    """The sparsity after each of ``rounds`` rounds, each pruning the same fraction of what remains:
    s_r = 1 - (1 - target)^(r / rounds), ending at ``target``."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    return [1 - (1 - target) ** (r / rounds) for r in range(1, rounds)] + [target]

