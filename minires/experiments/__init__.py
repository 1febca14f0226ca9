"""Gradient-flow experiments: why residual networks train when plain ones of the same depth do not.

    from minires.experiments import gradient_norms, degradation, identity_mapping, lesion

    result = gradient_norms("laptop", out="runs/gradflow-norms")   # also: "tiny", "gpu"
    result["summary"]["plain-56"]["block_input_first_to_last_at_init"]

Each experiment is a function ``experiment(preset, out=None, seed=0, device="cpu",
data_root=None, download=False, progress=None, **overrides)``. It returns a
plain dict of numbers and, when ``out`` is a folder, writes them there as CSV and
JSON with PNG figures. ``PRESETS`` in each module lists the settings; any of them
can be overridden by keyword. From the shell: ``python -m minires gradflow --help``.

One experiment per file:
    gradient_norms.py    ||dL/dx_l|| and ||dL/dW|| layer by layer, plain vs residual, depths 8 to 110
    degradation.py       He et al. 2015, Fig. 6: plain-56 trains worse than plain-20, ResNet-56 does not
    identity_mapping.py  He et al. 2016, eq. 5: dL/dx_l = dL/dx_L (1 + d/dx_l sum F_i), checked in float64
    lesion.py            Veit et al. 2016: delete one block of a trained network at test time
    shortcuts.py         He et al. 2016, Table 1 / Fig. 4: every shortcut and BN/ReLU placement, one recipe
    compare.py           python -m minires compare: several models, one recipe, their costs side by side
and what they share:
    recipe.py            data, the networks, a walk through a model's parts keeping each block's
                         input, the SGD recipe
    common.py            presets, seeding, CSV / JSON / PNG output
They train with ``minires.training.train_steps``, the loop of the train command, and look
inside a network only through its parts (``model.stem``, ``model.blocks``, ``model.head``;
each block's ``branch`` and ``shortcut``).
"""
from minires.experiments.degradation import degradation
from minires.experiments.gradient_norms import gradient_norms
from minires.experiments.identity_mapping import identity_mapping
from minires.experiments.lesion import lesion
from minires.experiments.shortcuts import shortcuts

# The command-line names (python -m minires gradflow NAME) and the functions they run.
EXPERIMENTS = {
    "norms": gradient_norms,
    "degradation": degradation,
    "identity": identity_mapping,
    "lesion": lesion,
    "shortcuts": shortcuts,
}

__all__ = ["gradient_norms", "degradation", "identity_mapping", "lesion", "shortcuts", "EXPERIMENTS"]
