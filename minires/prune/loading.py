"""Loading a pruned model's state dict into a freshly built model.

A pruned state dict does not fit the model its name builds: magnitude pruning adds
``weight_orig`` and ``weight_mask`` keys, network slimming shrinks layers. So, before
``model.load_state_dict(state_dict)``, give the model the same structure:

    model = build_model("resnet56", 3, 10)
    prepare_to_load(model, state_dict)     # masks where the state dict has them; slimmed widths
    model.load_state_dict(state_dict)

The train command (``--resume``, ``--init-from``), ``evaluate`` and ``prune`` all do this, so a
pruned checkpoint is an ordinary checkpoint everywhere.
"""
import numpy

from minires.prune.masks import custom_from_mask
from minires.prune.slimming import shrink_to_fit

MASK_SUFFIX = "_mask"


def prepare_to_load(model, state_dict):
    """Reshape ``model`` (in place) to fit ``state_dict``; returns ``model``. A model that already
    fits is left as it is."""
    shrink_to_fit(model, state_dict)
    modules = dict(model.named_modules())
    for key, mask in state_dict.items():
        if not key.endswith(MASK_SUFFIX):
            continue
        prefix, _, name = key[:-len(MASK_SUFFIX)].rpartition(".")
        module = modules.get(prefix)
        if module is None or name in module.__dict__.get("_pruned", {}) or name not in module._parameters:
            continue  # not ours to prepare: load_state_dict will name the key
        custom_from_mask(module, name, numpy.ones(numpy.shape(mask)))  # loading then sets the mask itself
    return model
