"""The identity-mapping view of He et al. 2016 (eq. 4 and 5), checked number by number.

In a pre-activation ResNet a block adds its branch to an untouched input,
x_{i+1} = x_i + F(x_i), so for any deeper block L of the same stage

    x_L = x_l + sum_{i=l}^{L-1} F(x_i)                                    (eq. 4)
    dL/dx_l = dL/dx_L (1 + d/dx_l sum_{i=l}^{L-1} F(x_i))                  (eq. 5)

The gradient at block l is the gradient at block L, passed on *unchanged*
(the "1"), plus what flows back through the branches. This experiment takes a
real loss on a real batch, in float64, and computes both sides separately:

  left   dL/dx_l by autograd through the whole network (caught by a full backward
         hook on block l, ``BlockWatch``);
  right  g_L = dL/dx_L from the same backward pass, plus the branch term
         g_L d/dx_l sum F_i, obtained by replaying blocks l..L-1 from a fresh copy
         of x_l and back-propagating g_L through the sum of their branches only
         (each block's ``block.branch``, F).

They agree to rounding error (a relative difference near 1e-15 in float64).

Stage boundaries. The first block of stages 2 and 3 halves the resolution and
doubles the channels, so its shortcut is a 1x1 convolution of the activated
input (``block.projection``), not the identity, and eq. 4 does not cross it. The
check therefore runs inside each stage: l goes over every block whose shortcut is
the identity, and L is the output of the last block of that stage.
"""
import numpy

import minires
import minires.functional as F
from minires.experiments.common import (
    choose_settings, l2_norm, new_figure, save_figure, start, write_csv, write_json,
)
from minires.experiments.recipe import BlockWatch, endless_batches, load_data
from minires.models import PreActResNet

PRESETS = {
    "tiny": dict(dataset="mnist_sample", train_size=64, depth=14, width=2, batch_size=8),
    "laptop": dict(dataset="mnist_sample", train_size=None, depth=56, width=8, batch_size=32),
    "gpu": dict(dataset="cifar10", train_size=None, depth=110, width=16, batch_size=128),
}


def identity_stretches(blocks):
    """(first, end) for each run of consecutive blocks with an identity shortcut (no projection):
    within one run, x_end = x_l + sum_{i=l}^{end-1} F(x_i) for every l in [first, end)."""
    stretches, first = [], None
    for index, block in enumerate(blocks + [None]):
        is_identity = block is not None and block.projection is None
        if is_identity and first is None:
            first = index
        elif not is_identity and first is not None:
            stretches.append((first, index))
            first = None
    return stretches


def replay_branches(blocks, x_l, l, end):
    """Run blocks l..end-1 from a fresh leaf copy of x_l. Returns (leaf, x_end, sum of the branches F_i):
    x_end as the blocks themselves compute it, the branches F(x_i) computed alongside."""
    leaf = minires.tensor(x_l.data, device=x_l.device, requires_grad=True)
    x, branch_sum = leaf, None
    for block in blocks[l:end]:
        branch = block.branch(x)  # F(x_i)
        x = block(x)  # x_{i+1} = F(x_i) + x_i
        branch_sum = branch if branch_sum is None else branch_sum + branch
    return leaf, x, branch_sum


def max_relative_difference(actual, expected):
    """max |actual - expected| / max |actual|, over all elements (NumPy or CuPy arrays)."""
    return float(abs(actual - expected).max()) / float(abs(actual).max())


def check_stretch(blocks, xs, grads, first, end, stage):
    """One row per block l of the stretch: the norms of both sides of eq. 5 and how far apart they are.
    ``xs`` and ``grads`` are x_0 ... x_L and dL/dx_0 ... dL/dx_L from one forward and backward pass."""
    gradient_at_L = grads[end].data  # g_L = dL/dx_L, from the full backward pass
    rows = []
    for l in range(first, end):
        leaf, x_L, branch_sum = replay_branches(blocks, xs[l], l, end)
        branch_sum.backward(gradient_at_L)  # leaf.grad = g_L d/dx_l sum F_i
        by_autograd = grads[l].data
        by_eq5 = gradient_at_L + leaf.grad.data
        rows.append({
            "stage": stage, "block": l, "L": end,
            "autograd_norm": l2_norm(by_autograd), "direct_term_norm": l2_norm(gradient_at_L),
            "branch_term_norm": l2_norm(leaf.grad), "eq5_norm": l2_norm(by_eq5),
            "eq5_max_relative_difference": max_relative_difference(by_autograd, by_eq5),
            "eq4_max_relative_difference": max_relative_difference(x_L.data, (leaf + branch_sum).data),
            # Without the "1" of eq. 5 the branches alone are far from the true gradient:
            "branch_only_max_relative_difference": max_relative_difference(by_autograd, leaf.grad.data),
        })
    return rows


def plot_check(rows, settings, worst, out):
    figure, (axis,) = new_figure(1, width_per_column=7.0)
    blocks = [row["block"] for row in rows]
    axis.plot(blocks, [row["autograd_norm"] for row in rows], "o", color="tab:blue", label="dL/dx_l by autograd")
    axis.plot(blocks, [row["eq5_norm"] for row in rows], "x", color="black", label="dL/dx_L + branch term (eq. 5)")
    axis.plot(blocks, [row["direct_term_norm"] for row in rows], "_", markersize=12, color="tab:green",
              label="direct term dL/dx_L")
    axis.plot(blocks, [row["branch_term_norm"] for row in rows], ".", color="tab:orange",
              label="branch term dL/dx_L d/dx_l sum F_i")
    axis.set(xlabel="block l (L: the last block's output in the same stage)", ylabel="gradient norm", yscale="log",
             title=f"max relative difference {worst:.1e} (float64)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    return save_figure(figure, out, "identity_mapping.png",
                       f"eq. 5 in a pre-activation ResNet-{settings['depth']} (width {settings['width']})")


def identity_mapping(preset="laptop", out=None, seed=0, device="cpu", data_root=None, download=False,
                     progress=None, **overrides):
    """Check dL/dx_l = dL/dx_L (1 + d/dx_l sum F_i) numerically in a pre-activation ResNet at initialisation.

    Writes identity_mapping.csv / .json / .png into ``out`` (unless None). Returns a dict
    with "rows" (one per checked block: its stage, l, L, the norms of both sides and of the
    direct and branch terms, and the relative differences) and "max_relative_difference"
    (the worst over all rows of eq. 5). ``progress`` is accepted for a uniform interface;
    the check is one forward and a few backward passes.
    """
    settings = choose_settings(PRESETS, preset, overrides)
    device = start(seed, device)
    train_set, _ = load_data(settings["dataset"], data_root, download, settings["train_size"], None, seed)
    images, labels = next(endless_batches(train_set, settings["batch_size"], seed))
    model = PreActResNet(settings["depth"], bottleneck=False, width=settings["width"],
                         num_classes=len(train_set.classes), in_channels=images.shape[1])
    model.to(device).double().train()  # float64, for checks down to rounding error
    with BlockWatch(model) as watch:  # off again before check_stretch replays blocks
        F.cross_entropy(model(minires.tensor(images, dtype=numpy.float64, device=device)), labels).backward()
    blocks = list(model.blocks)
    rows = []
    for stage, (first, end) in enumerate(identity_stretches(blocks), start=1):
        rows += check_stretch(blocks, watch.inputs, watch.grads, first, end, stage)
    worst = max(row["eq5_max_relative_difference"] for row in rows)
    result = {"experiment": "identity_mapping", "preset": preset, "seed": seed, "device": device,
              "settings": settings, "max_relative_difference": worst, "rows": rows}
    write_csv(out, "identity_mapping.csv", rows)
    write_json(out, "identity_mapping.json", result)
    plot_check(rows, settings, worst, out)
    return result
