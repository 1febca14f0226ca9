"""Pruning: make a trained network smaller (``python -m minires prune``; tutorial 11).

    masks.py       the mechanism: weight = weight_orig * weight_mask, in forward and in the gradient
    magnitude.py   unstructured pruning by |w| (Han et al. 2015): per layer or global, iterative
    slimming.py    channel pruning by batch-norm scale (Liu et al. 2017): a physically smaller model
    loading.py     load a pruned state dict into a freshly built model
    command.py     the command line: prune, measure, fine-tune, write prune.json

    from minires import prune
    prune.magnitude_prune(model, 0.5)         # half of all conv/linear weights set to 0 and kept there
    prune.slim(model, 0.3)                    # 30% of the channels inside residual branches removed
    prune.remove(module, "weight")            # make a magnitude pruning permanent
"""
from minires.prune.loading import prepare_to_load
from minires.prune.magnitude import (
    global_unstructured, iterative_sparsities, l1_unstructured, magnitude_prune, prunable_weights, sparsity,
)
from minires.prune.masks import custom_from_mask, is_pruned, masks, remove
from minires.prune.slimming import (
    add_bn_l1_subgradient_, add_l1_subgradient_, internal_channel_groups, slim, slimmable_gammas,
)

__all__ = [
    "prepare_to_load", "global_unstructured", "iterative_sparsities", "l1_unstructured", "magnitude_prune",
    "prunable_weights", "sparsity", "custom_from_mask", "is_pruned", "masks", "remove", "add_bn_l1_subgradient_",
    "add_l1_subgradient_", "internal_channel_groups", "slim", "slimmable_gammas",
]
