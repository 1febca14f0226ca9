# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11. Pruning and fine-tuning
#
# A trained network has many more weights than it needs. Han et al. (2015, "Learning both Weights and
# Connections for Efficient Neural Networks") set the weights of smallest magnitude to zero, retrained
# the rest, and repeated: AlexNet kept its accuracy with 9 times fewer weights, VGG-16 with 13 times
# fewer. The zeros are scattered, though, and a dense matrix product multiplies a zero as fast as any
# other number, so without sparse kernels (or hardware made for them) the network is no faster.
# Liu et al. (2017, "Learning Efficient Convolutional Networks through Network Slimming") remove
# whole **channels** instead: every batch norm already scales each channel by its own $\gamma_c$, an
# L1 penalty on the $\gamma$s during training drives many of them to zero, and the channels with the
# smallest $\gamma$ go, with the filters that make them and the weights that read them. What is left
# is an ordinary, smaller network: fewer parameters, fewer multiply-adds, a faster step on any
# hardware.
#
# Both end with **fine-tuning**: a few more steps of training from the pruned weights, which
# recovers most of what pruning cost. Fine-tuning is also the usual way to reuse a trained network
# for a *new* task, with a new classifier on top (transfer learning): that is the last part.
#
# In this tutorial we
#
# 1. train a small MNIST ResNet, the starting point of everything that follows;
# 2. prune it by magnitude (`minires.prune`), globally and layer by layer, at 30% to 90% sparsity;
#    look at what pruning does to a module (masks, and a gradient that is exactly 0), fine-tune, and
#    time it;
# 3. train it again with the slimming penalty, compare the $\gamma$s, see which channels may go and
#    why, slim it by half, and measure what that buys; and check the condition under which removing
#    a channel changes nothing at all;
# 4. pretrain on digits 0-4 and fine-tune on 10% of the images of digits 5-9, against training from
#    scratch;
# 5. see the same steps on the command line.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import minires
from minires import nn, optim, prune
from minires.data import ArrayDataset, MNISTSample, keep_classes, take_fraction
from minires.experiments.recipe import endless_batches, held_out_batches
from minires.models import mnist_resnet
from minires.prune.measure import measure, step_times_ms
from minires.training import evaluate, train_steps
from minires.training.fine_tuning import freeze, load_initial_weights, parameter_groups

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
WIDTH = 4 if SMOKE else 16            # channels of the first stage (mnist_resnet's default is 16)
BATCH_SIZE = 16 if SMOKE else 64
STEPS = 8 if SMOKE else 300           # training from scratch (300 steps of 64: 2.4 passes over the data)
TUNE_STEPS = 5 if SMOKE else 100      # fine-tuning after pruning
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True)
print("width", WIDTH, "| batch", BATCH_SIZE, "| steps", STEPS, "| smoke test" if SMOKE else "")

train_set, test_set = MNISTSample(train=True), MNISTSample(train=False)
if SMOKE:   # a small test set, so that CI runs in seconds
    test_set = ArrayDataset(test_set.images[:256], test_set.labels[:256], test_set.classes)
test_batches = held_out_batches(test_set, train_set)   # normalised with the training set's mean and std
print(len(train_set), "training images,", len(test_set), "test images")

# %% [markdown]
# Four small helpers, used all the way through: a fresh model (the seed fixes its initial weights), a
# copy of a model (`prune.prepare_to_load` first gives the empty model the masks and the narrower
# layers that a pruned state dict has), its test accuracy, and a training run: SGD with momentum 0.9
# and weight decay $10^{-4}$ on shuffled batches, the learning rate divided by 10 after 75% of the
# steps. The optimiser gets `parameter_groups(model, lr, lr_backbone)` (section 4): all trainable
# parameters at one learning rate, or the classifier at `lr` and the rest at `lr_backbone`.

# %%
def new_model(num_classes=10, seed=0):
    minires.manual_seed(seed)
    return mnist_resnet(width=WIDTH, num_classes=num_classes)


def copy_of(model):
    """A new model holding ``model``'s state: its weights, and its masks or slimmed widths if it has any."""
    fresh = mnist_resnet(width=WIDTH, num_classes=model.head[1].out_features)
    state = model.state_dict()
    prune.prepare_to_load(fresh, state)
    fresh.load_state_dict(state)
    return fresh


def accuracy(model, batches=test_batches):
    return float(evaluate(model, batches, num_classes=len(batches.dataset.classes))[1])


def train(model, data, steps, lr, lr_backbone=None, seed=0, before_step=None, test=None, every=None):
    """``steps`` SGD steps on shuffled batches of ``data``; with ``test``, the accuracy on it every
    ``every`` steps, returned as [(step, accuracy)]."""
    optimizer = optim.SGD(parameter_groups(model, lr, lr_backbone), lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = optim.MultiStepLR(optimizer, milestones=[max(1, int(0.75 * steps))], gamma=0.1)
    curve = [(0, accuracy(model, test))] if test is not None else []

    def on_step(step, metrics):
        if test is not None and (step % every == 0 or step == steps):
            curve.append((step, accuracy(model, test)))

    train_steps(model, endless_batches(data, BATCH_SIZE, seed), optimizer, steps, scheduler=scheduler,
                before_step=before_step, on_step=on_step)
    return curve


# %% [markdown]
# ## 1. The network to prune
#
# `mnist_resnet` of tutorial 7: a 3x3 convolution, three stages of one `BasicBlock` each and a
# linear classifier. We train it briefly; this is the dense **baseline**.

# %%
started = time.perf_counter()
baseline = new_model()
train(baseline, train_set, STEPS, lr=0.1)
baseline_accuracy = accuracy(baseline)
print(f"{STEPS} steps in {time.perf_counter() - started:.0f} s: test accuracy {baseline_accuracy:.4f}, "
      f"{baseline.num_parameters():,} parameters")

# %% [markdown]
# ## 2. Magnitude pruning
#
# The weights a pruning may zero are those of every convolution and of the classifier
# (`prune.prunable_weights`); batch norm's few parameters stay. Here are their magnitudes, all layers
# together, and the thresholds below which 30%, 50%, 70% and 90% of them lie:

# %%
SPARSITIES = (0.3, 0.5, 0.7, 0.9)
layers = prune.prunable_weights(baseline)
magnitudes = np.concatenate([np.abs(module.weight.data).ravel() for _, module, _ in layers])
thresholds = np.quantile(magnitudes, SPARSITIES)
for name, module, _ in layers:
    w = module.weight.data
    print(f"{name:16s} {str(w.shape):16s} {w.size:7,d} weights, median |w| {np.median(np.abs(w)):.4f}")
print("global thresholds:", ", ".join(f"{s:.0%} below {t:.4f}" for s, t in zip(SPARSITIES, thresholds)))

# %%
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ax.hist(magnitudes, bins=100, color="C0")
for s, t in zip(SPARSITIES, thresholds):
    ax.axvline(t, color="C3", ls=":", lw=1)
    ax.text(t, ax.get_ylim()[1] * 0.9, f" {s:.0%}", color="C3", fontsize=8)
ax.set(xlabel="|w|", ylabel="number of weights", title="Magnitudes of all conv and linear weights (dotted: "
       "global thresholds)")
plt.show()

# %% [markdown]
# Most weights are small. Layers with more inputs per output have smaller weights (He initialisation
# starts them at a standard deviation of $\sqrt{2/\text{fan-in}}$, and training keeps the scale), so
# one **global** threshold (`scope="global"`, as Han et al.) takes more from the wide layers than from
# the stem; `scope="layer"` gives every layer the same sparsity. We prune a copy of the baseline at
# each sparsity, in both ways, and measure it *without* any retraining:

# %%
sweep = {"global": [], "layer": []}
per_layer = {}                                          # sparsity -> fraction of each layer pruned (global)
for scope in sweep:
    for s in SPARSITIES:
        pruned = prune.magnitude_prune(copy_of(baseline), s, scope)
        sweep[scope].append(accuracy(pruned))
        if scope == "global":
            per_layer[s] = [float(np.mean(m.weight.data == 0)) for _, m, _ in prune.prunable_weights(pruned)]
print(f"{'sparsity':>8s} {'global':>8s} {'layer':>8s}    (dense: {baseline_accuracy:.4f})")
for i, s in enumerate(SPARSITIES):
    print(f"{s:8.0%} {sweep['global'][i]:8.4f} {sweep['layer'][i]:8.4f}")
print("global 50%, fraction pruned per layer:",
      ", ".join(f"{name} {f:.0%}" for (name, _, _), f in zip(layers, per_layer[0.5])))

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
for scope, style in (("global", "o-"), ("layer", "s--")):
    axes[0].plot(SPARSITIES, sweep[scope], style, label=f"scope={scope!r}")
axes[0].axhline(baseline_accuracy, color="gray", ls=":", label="dense")
axes[0].axhline(0.1, color="gray", lw=0.8, label="chance")
axes[0].set(xlabel="sparsity (fraction of weights set to 0)", ylabel="test accuracy", ylim=(0, 1.02),
            title="Pruned, not fine-tuned")
axes[0].legend(fontsize=8)
names = [name for name, _, _ in layers]
for s in SPARSITIES:
    axes[1].plot(range(len(names)), per_layer[s], "o-", label=f"{s:.0%} overall")
axes[1].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
axes[1].set(ylabel="fraction of the layer pruned", ylim=(0, 1), title="Where one global threshold prunes")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# In our run, one global threshold took 30% of the weights for free and 50% for about three points of
# accuracy (97.4% and 94.5%, against 97.8% dense); at 70% the accuracy fell to 40%, at 90% to chance.
# The right panel shows why it does better than the same sparsity in every layer, which had already
# fallen to about 53% at 50%: the global threshold spares the stem (144 weights) and the classifier
# (640), whose few weights are large and each carry much, and takes more from the wide last stage.
#
# ### What pruning does to a module
#
# `minires.prune` works as PyTorch's `torch.nn.utils.prune` does. Pruning `conv.weight` with a 0/1
# mask renames the parameter to `weight_orig`, stores the mask as a buffer `weight_mask`, and
# recomputes `weight` before every forward pass (a forward pre-hook) as
#
# $$ w = w_\text{orig} \odot m, \qquad\text{so}\qquad
#    \frac{\partial L}{\partial w_\text{orig}} = \frac{\partial L}{\partial w} \odot m . $$
#
# Because the product is part of the graph, the gradient of a pruned entry is exactly 0, and an SGD
# step (without weight decay) leaves it where it was; the weight the layer *uses* is 0 either way.
# Here it is on one small convolution, in float64:

# %%
minires.manual_seed(0)
conv = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
print("state dict before:", list(conv.state_dict()))
prune.l1_unstructured(conv, "weight", amount=0.5)
mask = conv.weight_mask.data
print("state dict after: ", list(conv.state_dict()),
      "| parameters:", [n for n, _ in conv.named_parameters()], "| buffers:", [n for n, _ in conv.named_buffers()])
print(f"mask keeps {int(mask.sum())} of {mask.size}; weight == weight_orig * weight_mask:",
      np.array_equal(conv.weight.data, conv.weight_orig.data * mask))

x_small = minires.tensor(rng.standard_normal((2, 2, 5, 5)))
conv(x_small).backward(rng.standard_normal((2, 3, 5, 5)))        # a random upstream gradient
grad = conv.weight_orig.grad.numpy()
print("dL/dweight_orig at the pruned entries: all exactly 0:", bool(np.all(grad[mask == 0] == 0)),
      f"| nonzero at {np.count_nonzero(grad[mask == 1])} of the {int(mask.sum())} kept")
optim.SGD(conv.parameters(), lr=0.5, momentum=0.9).step()
conv(x_small)                                                     # the pre-hook recomputes weight
print("after an SGD step, the pruned entries of weight are still 0:", bool(np.all(conv.weight.data[mask == 0] == 0)))
prune.remove(conv, "weight")                                      # make it permanent: a plain Parameter again
print("after prune.remove:", list(conv.state_dict()), "| zeros:", int(np.sum(conv.weight.data == 0)))

# %% [markdown]
# ### Fine-tuning
#
# Now the 90% model, which pruning alone ruined. We fine-tune it for a few steps at a tenth of the
# training learning rate. The masks stay on, so it stays exactly 90% sparse.

# %%
TUNED_SPARSITY = 0.9
started = time.perf_counter()
tuned = prune.magnitude_prune(copy_of(baseline), TUNED_SPARSITY)
tune_curve = train(tuned, train_set, TUNE_STEPS, lr=0.01, seed=1, test=test_batches, every=max(1, TUNE_STEPS // 5))
print(f"fine-tuned {TUNE_STEPS} steps in {time.perf_counter() - started:.0f} s: accuracy "
      f"{tune_curve[0][1]:.4f} -> {tune_curve[-1][1]:.4f} (dense {baseline_accuracy:.4f}); "
      f"sparsity still {prune.sparsity(tuned):.4f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(*zip(*tune_curve), "o-", label=f"{TUNED_SPARSITY:.0%} sparse, fine-tuning")
ax.axhline(baseline_accuracy, color="gray", ls=":", label="dense")
ax.set(xlabel="fine-tuning step", ylabel="test accuracy", ylim=(0, 1.02), title="Recovery after pruning")
ax.legend()
plt.show()

# %% [markdown]
# A hundred steps bring most of the accuracy back (in our run from chance to 95.6%, the dense network
# has 97.8%): the remaining 10% of the weights adapt to the missing 90%. Pruning in several rounds,
# each followed by fine-tuning, goes further still (exercise 3 computes the schedule).
#
# ### And the speed?
#
# `prune.measure.measure` gives one row of what `python -m minires prune` reports: parameters and
# multiply-adds as the dense arrays compute them, the nonzero ones (what a sparse kernel would
# compute), and the median time of a training step and of an inference step on one batch.

# %%
timing_batch = next(endless_batches(train_set, BATCH_SIZE, seed=2))
rows = {"dense": measure(baseline, test_batches, 10, "cpu", timing_batch, lambda: mnist_resnet(width=WIDTH)),
        f"{TUNED_SPARSITY:.0%} sparse": measure(tuned, test_batches, 10, "cpu", timing_batch,
                                                lambda: mnist_resnet(width=WIDTH))}
print(f"{'':11s} {'params':>8s} {'nonzero':>8s} {'MACs':>10s} {'nonzero MACs':>12s} {'train ms':>9s} "
      f"{'infer ms':>9s} {'accuracy':>8s}")
for name, row in rows.items():
    print(f"{name:11s} {row['params']:8,d} {row['nonzero_params']:8,d} {row['macs']:10,d} {row['nonzero_macs']:12,d} "
          f"{row['train_step_ms']:9.1f} {row['inference_step_ms']:9.1f} {row['accuracy']:8.4f}")

# %% [markdown]
# The nonzero multiply-adds fall about five-fold, the time does not: NumPy's matrix products (and
# cuBLAS on a GPU) do every multiply-add of the dense arrays, zeros included, and the mask adds one
# elementwise product per pruned layer. Magnitude pruning saves storage (a sparse format) and could
# save time with sparse kernels; in dense code it saves nothing. (Step times on a shared machine
# jump around by 10% or more; compare them only when they differ by much more.)
#
# ## 3. Network slimming
#
# ### Which channels may go
#
# A `BasicBlock` computes $y = \mathrm{ReLU}\bigl(\mathrm{bn_2}(\mathrm{conv_2}(\mathrm{ReLU}(
# \mathrm{bn_1}(\mathrm{conv_1}(x))))) + \mathrm{shortcut}(x)\bigr)$. The channels between `conv1` and
# `conv2` exist only inside the branch: channel $c$ is made by filter $c$ of `conv1`, scaled by
# $\gamma_c$ of `bn1` and read by the input slice $c$ of `conv2`. Removing all three removes the
# channel, and nothing else needs to know. The channels of `bn2`'s output are different: they are
# *added* to the shortcut, which carries the same channels from block to block through the whole stage
# (and, zero-padded, into the next). Removing one there would misalign the addition unless it were
# removed from every block and the shortcut together. So the stem, every branch's last batch norm
# and the classifier keep their channels; each block class names its prunable channels in
# `internal_channels`, and `prune.internal_channel_groups` lists them:

# %%
for name, producer, bn, consumer in prune.internal_channel_groups(baseline):
    print(f"{name:14s} {bn.num_features:3d} channels: made by a {producer.weight.shape} conv, "
          f"read by a {consumer.weight.shape} conv")

# %% [markdown]
# ### Training with the penalty
#
# Network slimming adds $\lambda \sum_c |\gamma_c|$ over those batch norms to the loss. Its
# subgradient, $\lambda\,\mathrm{sign}(\gamma_c)$, is added to the $\gamma$s' gradients after
# `backward()` and before the update: `prune.add_l1_subgradient_(gammas, lam)` with the $\gamma$s of
# `prune.slimmable_gammas(model)` (found once, not on every step), passed to `train_steps` as `before_step`. Liu et al. use $\lambda = 10^{-4}$ to $10^{-5}$ over a long training;
# our 300 steps need a much stronger one. Same initial weights, same batches as the baseline; only the
# penalty differs.

# %%
LAMBDA = 0.02
started = time.perf_counter()
slimmable = new_model()
gammas = prune.slimmable_gammas(slimmable)
train(slimmable, train_set, STEPS, lr=0.1, before_step=lambda: prune.add_l1_subgradient_(gammas, LAMBDA))
slimmable_accuracy = accuracy(slimmable)
print(f"with the penalty (lambda {LAMBDA}): {time.perf_counter() - started:.0f} s, accuracy {slimmable_accuracy:.4f} "
      f"(without: {baseline_accuracy:.4f})")


def gammas_and_betas(model):
    groups = prune.internal_channel_groups(model)
    return (np.concatenate([bn.weight.data for _, _, bn, _ in groups]),
            np.concatenate([bn.bias.data for _, _, bn, _ in groups]))


gamma_plain, _ = gammas_and_betas(baseline)
gamma_l1, beta_l1 = gammas_and_betas(slimmable)
small = np.abs(gamma_l1) < 1e-2
print(f"|gamma| < 0.01: {np.mean(np.abs(gamma_plain) < 1e-2):.0%} of the channels without the penalty, "
      f"{small.mean():.0%} with it" + (f"; of those, {np.mean(beta_l1[small] <= 0):.0%} have beta <= 0"
                                       if small.any() else ""))

# %%
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
bins = np.linspace(0, max(np.abs(gamma_plain).max(), np.abs(gamma_l1).max()), 50)
ax.hist(np.abs(gamma_plain), bins=bins, alpha=0.6, label="trained without the penalty")
ax.hist(np.abs(gamma_l1), bins=bins, alpha=0.6, label=f"with the L1 penalty, lambda = {LAMBDA}")
ax.set(xlabel="|gamma| of a channel inside a branch", ylabel="number of channels",
       title="Batch-norm scales of the slimmable channels")
ax.legend()
plt.show()

# %% [markdown]
# Without the penalty the $\gamma$s stay near their initial value 1: no channel stands out as
# unneeded. With it, most sit at (almost) zero (70% in our run): the penalty pushed every $\gamma$
# down by the same amount each step, and only the channels the loss needed were pushed back up. The
# penalty cost a little accuracy (96.2% against 97.8% in our run); a weaker one trained longer costs
# less.
#
# ### Slimming by half
#
# `prune.slim(model, 0.5)` removes, in place, the half of the slimmable channels with the smallest
# $|\gamma|$ over the whole network (one global threshold, as in the paper), and returns a report.
# We slim a copy of both models and measure parameters and multiply-adds with `minires.summary`, a
# training step with `step_times_ms`, and the accuracy; then fine-tune the penalised one.

# %%
AMOUNT = 0.5
slimmed_plain, slimmed = copy_of(baseline), copy_of(slimmable)
report_plain = prune.slim(slimmed_plain, AMOUNT)
report = prune.slim(slimmed, AMOUNT)
print("channels before, after:", report["channels"], "| per layer:", report["layers"],
      f"| largest |gamma| removed: {report['threshold']:.2g} (without the penalty: {report_plain['threshold']:.2g})")
print(slimmed.blocks[2])

slimmed_accuracy = accuracy(slimmed)
slimmed_tuned = copy_of(slimmed)
train(slimmed_tuned, train_set, TUNE_STEPS, lr=0.01, seed=1)


def row(model, accuracy_now):
    table = minires.summary(model, (1, 1, 28, 28))
    train_ms, _ = step_times_ms(lambda: copy_of(model), *timing_batch, "cpu")
    return table.total_params, table.total_macs, train_ms, accuracy_now


rows = {"dense, with penalty": row(slimmable, slimmable_accuracy),
        f"slimmed {AMOUNT:.0%}": row(slimmed, slimmed_accuracy),
        "slimmed, fine-tuned": row(slimmed_tuned, accuracy(slimmed_tuned)),
        f"no penalty, slimmed {AMOUNT:.0%}": row(slimmed_plain, accuracy(slimmed_plain))}
print(f"{'':24s} {'params':>8s} {'MACs':>11s} {'train step ms':>14s} {'accuracy':>9s}")
for name, (params, macs, ms, acc) in rows.items():
    print(f"{name:24s} {params:8,d} {macs:11,d} {ms:14.1f} {acc:9.4f}")

# %% [markdown]
# This time the network is physically smaller: the arrays have fewer channels, so the parameters
# (75,002 to 35,722 in our run), the multiply-adds (9.1M to 5.0M) and the step time all fall, the
# step time less than the multiply-adds (about 20%): the stem, batch norm, the ReLUs and the additions
# on the shortcut channels are not slimmed. The penalised network lost half a point when slimmed
# (96.2% to 95.7%), and a short fine-tuning more than made up for it (96.9%); the network trained
# without the penalty had no unneeded channels to give, and slimming it by half left it at chance.
#
# ### When removing a channel changes nothing
#
# A removed channel $c$ fed $\mathrm{ReLU}(\gamma_c \hat x_c + \beta_c)$ to `conv2`. With $\gamma_c = 0$
# that is the constant $\mathrm{ReLU}(\beta_c)$, and with $\beta_c \le 0$ it is 0 at every pixel, in
# training mode and in eval mode alike (batch norm normalises each channel on its own, so the other
# channels do not notice either). Removing a channel that contributes 0 changes nothing: the outputs
# are identical. With $\beta_c > 0$ it removes a constant input, which changes the output (and which
# fine-tuning absorbs). The penalised network found this itself: most of its near-zero $\gamma$s have
# $\beta \le 0$ (printed above). We check it exactly, in float64, on a fresh network: zero the $\gamma$
# of a third of each block's internal channels, set their $\beta$ to $-0.3$ or to $+0.3$, and slim
# exactly those channels away (all other $\gamma$s are 1, so they are the smallest).

# %%
def network_with_dead_channels(beta):
    minires.manual_seed(1)
    model = mnist_resnet(width=WIDTH).double()
    for _, _, bn, _ in prune.internal_channel_groups(model):
        dead = np.arange(0, bn.num_features, 3)                 # channels 0, 3, 6, ...
        bn.weight.data[dead], bn.bias.data[dead] = 0.0, beta
    return model


images = minires.tensor(rng.standard_normal((4, 1, 28, 28)))
for beta in (-0.3, 0.3):
    reference, slimmed_net = network_with_dead_channels(beta), network_with_dead_channels(beta)
    groups = prune.internal_channel_groups(slimmed_net)
    dead = sum(int(np.sum(bn.weight.data == 0)) for _, _, bn, _ in groups)
    report_dead = prune.slim(slimmed_net, dead / sum(bn.num_features for _, _, bn, _ in groups))
    differences = []
    with minires.no_grad():
        for mode in ("train", "eval"):       # batch statistics, then the running ones (updated by the first)
            training = mode == "train"
            difference = reference.train(training)(images).numpy() - slimmed_net.train(training)(images).numpy()
            differences.append(f"{mode} mode max |difference| {np.abs(difference).max():.2g}")
    print(f"beta = {beta:+.1f}: channels {report_dead['channels'][0]} -> {report_dead['channels'][1]}; "
          + ", ".join(differences))


# %% [markdown]
# With $\beta \le 0$ the difference is zero up to float64 rounding (the products are summed over
# fewer channels, in another order); with $\beta > 0$ it is far from zero.
#
# ## 4. Transfer: a head start from another task
#
# Fine-tuning also reuses a network trained on one task for another. We pretrain on the digits 0-4,
# then learn the digits 5-9 from only 10% of their training images, two ways, for the same number of
# steps on the same batches:
#
# * (a) **fine-tuned**: start from the pretrained weights with a new classifier (5 outputs, freshly
#   initialised: `load_initial_weights(model, state, reset_head=True)`), the stem frozen
#   (`freeze(model, ["stem"])`), the classifier at learning rate 0.1 and the rest at 0.01
#   (`parameter_groups(model, 0.1, lr_backbone=0.01)`): the features are kept, only nudged;
# * (b) **from scratch**: the same network from random weights, learning rate 0.1.
#
# `keep_classes(dataset, classes)` keeps the images of some classes and relabels them $0 \ldots k-1$
# (digit 5 becomes class 0); `take_fraction(dataset, fraction, seed)` keeps a fraction of every
# class (stratified), the same subset for the same seed.

# %%
SOURCE, TARGET = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]
PRETRAIN_STEPS = 8 if SMOKE else 200
TARGET_STEPS = 6 if SMOKE else 60          # 60 steps of 64: ten passes over the 389 images
source_train, source_test = keep_classes(train_set, SOURCE), keep_classes(test_set, SOURCE)
target_train = take_fraction(keep_classes(train_set, TARGET), 0.1, seed=0)
target_test = keep_classes(test_set, TARGET)
print(f"source: {len(source_train)} training images of digits {SOURCE}")
print(f"target: {len(target_train)} training images of digits {TARGET}, per class {np.bincount(target_train.labels)}; "
      f"labels now {sorted(set(target_train.labels.tolist()))}; {len(target_test)} test images")

started = time.perf_counter()
pretrained = new_model(num_classes=5)
train(pretrained, source_train, PRETRAIN_STEPS, lr=0.1)
print(f"pretrained {PRETRAIN_STEPS} steps in {time.perf_counter() - started:.0f} s: accuracy on digits 0-4 "
      f"{accuracy(pretrained, held_out_batches(source_test, source_train)):.4f}")

# %%
target_batches = held_out_batches(target_test, target_train)
every = max(1, TARGET_STEPS // 5)

finetuned = new_model(num_classes=5, seed=1)
load_initial_weights(finetuned, pretrained.state_dict(), reset_head=True)
print("parameters frozen:", freeze(finetuned, ["stem"]), "| groups:",
      [(g["name"], g["lr"], len(g["params"])) for g in parameter_groups(finetuned, 0.1, lr_backbone=0.01)])
stem_before = [p.data.copy() for p in finetuned.stem.parameters()]
stem_mean_before = finetuned.stem[1].running_mean.data.copy()
started = time.perf_counter()
curve_finetuned = train(finetuned, target_train, TARGET_STEPS, lr=0.1, lr_backbone=0.01, seed=1,
                        test=target_batches, every=every)

scratch = new_model(num_classes=5, seed=1)
curve_scratch = train(scratch, target_train, TARGET_STEPS, lr=0.1, seed=1, test=target_batches, every=every)
print(f"both trained in {time.perf_counter() - started:.0f} s")
print(f"test accuracy on digits 5-9 after {TARGET_STEPS} steps: fine-tuned {curve_finetuned[-1][1]:.4f}, "
      f"from scratch {curve_scratch[-1][1]:.4f}")
print("stem weights unchanged by fine-tuning:",
      all(np.array_equal(a, p.data) for a, p in zip(stem_before, finetuned.stem.parameters())),
      "| its batch norm's running mean changed:",
      not np.array_equal(stem_mean_before, finetuned.stem[1].running_mean.data))

# %%
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ax.plot(*zip(*curve_finetuned), "o-", label="fine-tuned from digits 0-4 (stem frozen)")
ax.plot(*zip(*curve_scratch), "s--", label="from scratch")
ax.axhline(0.2, color="gray", lw=0.8, label="chance (5 classes)")
ax.set(xlabel="step", ylabel="test accuracy on digits 5-9", ylim=(0, 1.02),
       title=f"Learning digits 5-9 from {len(target_train)} images")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The pretrained features (strokes, curves, their positions) serve the new digits too: as soon as
# its new classifier has had a few steps the fine-tuned network is far above chance, and after 60
# steps it was clearly ahead in our run (88% against 70%). The head start is not forever on a
# task as easy as MNIST: in a run of 100 steps, the network trained from scratch caught up and passed
# it (95% against 90%): seven more passes over the same 389 images were enough. Freezing
# the stem kept its weights exactly; its batch norm still updated its running statistics in training
# mode, as in PyTorch (`requires_grad_(False)` does not touch buffers). `python -m minires transfer`
# runs this comparison with several seeds and judges the claim on their spread; one seed, as here,
# can only suggest it.
#
# ## 5. The same on the command line
#
# `python -m minires` does each step of this tutorial as an ordinary, resumable run with its metrics
# and checkpoints (not run here):
#
# ```bash
# # train with the slimming penalty (lambda on the gammas inside the residual branches)
# python -m minires train --bn-l1 1e-4 --out runs/slimmable
# # slim half of those channels, fine-tune 2 epochs, measure before / after / fine-tuned: prune.json
# python -m minires prune runs/slimmable/checkpoint.npz --method slimming --amount 0.5 --finetune-epochs 2
# # magnitude pruning at several sparsities (a plot of accuracy against the amount), in 3 rounds each
# python -m minires prune runs/slimmable/checkpoint.npz --method magnitude --amount 0.5 0.7 0.9 --rounds 3 \
#     --finetune-epochs 1
# # transfer: start from weights trained on digits 0-4, new head, stem frozen, 10% of digits 5-9
# python -m minires train --classes 0-4 --out runs/digits-0-4
# python -m minires train --init-from runs/digits-0-4/checkpoint.npz --reset-head --freeze stem \
#     --lr-backbone 0.01 --classes 5-9 --train-fraction 0.1
# # the whole comparison, fine-tuned against from scratch, over several seeds
# python -m minires transfer
# ```
#
# ## Summary
#
# * Magnitude pruning sets the smallest $|w|$ to zero through a mask: $w = w_\text{orig} \odot m$ in
#   the graph, so a pruned entry's gradient is exactly 0 and it stays 0 while the rest is fine-tuned.
#   Half the weights of our network go almost for free, 90% only with fine-tuning. The zeros make
#   dense code no faster.
# * Network slimming removes whole channels, those inside residual branches with the smallest batch
#   norm $\gamma$ after training with an L1 penalty on the $\gamma$s: a smaller dense network, with
#   fewer parameters, fewer multiply-adds and a faster step. The channels carried by the shortcuts
#   stay, so that the additions stay aligned. A channel with $\gamma = 0$ and $\beta \le 0$ contributes
#   exactly nothing, and removing it changes nothing.
# * Fine-tuning from pretrained weights, with a new head and a frozen stem, learns a new task from few
#   images faster and better than training from scratch.
#
# ## Exercises
#
# Each exercise has a check cell that prints ✓ or ✗ (and a hint, and stops). The file ships with one
# possible answer filled in, after a `# One possible answer` comment, so that it runs top to bottom;
# try your own first. While an answer is still `pass` or `...`, the check prints "not answered yet"
# and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells

# %% [markdown]
# ### Exercise 1: magnitude pruning of one layer, by hand
#
# Write `magnitude_mask(weight, amount)`: the 0/1 mask (an array of `weight`'s shape) that prunes the
# fraction `amount` of the entries of smallest $|w|$, what `prune.l1_unstructured(conv, "weight",
# amount)` puts in `conv.weight_mask` for a layer not pruned before. It prunes $k = \mathrm{round}(
# \text{amount} \cdot n)$ of the $n$ entries: everything up to the amount-quantile of $|w|$.

# %%
# One possible answer: the k-th smallest |w| is the threshold; keep what lies above it.
def magnitude_mask(weight, amount):
    magnitude = np.abs(weight)
    k = int(round(amount * magnitude.size))
    if k == 0:
        return np.ones_like(weight)
    threshold = np.sort(magnitude, axis=None)[k - 1]
    return (magnitude > threshold).astype(weight.dtype)


# %%
def masks_agree():
    trained = baseline.blocks[1].conv1
    for amount in (0.25, 0.6, 0.9):
        conv = nn.Conv2d(trained.in_channels, trained.out_channels, 3, padding=1, bias=False)
        conv.weight.data = trained.weight.data.copy()
        prune.l1_unstructured(conv, "weight", amount)
        mine = answered(magnitude_mask(trained.weight.data.copy(), amount))
        print(f"amount {amount}: yours prunes {int(np.sum(np.asarray(mine) == 0))}, "
              f"l1_unstructured {int(np.sum(conv.weight_mask.data == 0))} of {conv.weight_mask.data.size}")
        if not np.array_equal(mine, conv.weight_mask.data):
            return False
    return True


check("Exercise 1: your mask is l1_unstructured's", masks_agree,
      "k = round(amount * n) entries go: those with |w| up to the k-th smallest |w| (np.sort(..., axis=None))")

# %% [markdown]
# ### Exercise 2: what a slimmed block keeps
#
# A `BasicBlock` with option-A shortcuts reads $c_\text{in}$ channels and writes $c_\text{out}$; after
# slimming, $c_\text{mid}$ channels are left between its convolutions (`block.bn1.num_features`).
# Write `slimmed_block_parameters(c_in, c_mid, c_out)`: how many parameters it has. The check
# compares with every block of the network slimmed in section 3.

# %%
# One possible answer: conv1 (c_mid filters of c_in x 3 x 3), bn1 (gamma and beta), conv2 (c_out filters
# of c_mid x 3 x 3), bn2; an option-A shortcut has no parameters, and the convolutions no bias.
def slimmed_block_parameters(c_in, c_mid, c_out):
    return 9 * c_in * c_mid + 2 * c_mid + 9 * c_mid * c_out + 2 * c_out


# %%
def block_counts_agree():
    ok = True
    for l, block in enumerate(slimmed.blocks):
        widths = (block.in_channels, block.bn1.num_features, block.out_channels)
        mine, actual = answered(slimmed_block_parameters(*widths)), block.num_parameters()
        print(f"block {l}: (c_in, c_mid, c_out) = {widths}: yours {mine:,}, the block {actual:,}")
        ok = ok and mine == actual
    return ok


check("Exercise 2: parameters of the slimmed blocks", block_counts_agree,
      "two 3x3 convolutions without bias (c_in -> c_mid, c_mid -> c_out) and two batch norms (2 per channel)")

# %% [markdown]
# ### Exercise 3: an iterative schedule
#
# Han et al. reach a high sparsity in rounds: prune, fine-tune, prune more. If every round removes the
# same fraction $q$ of the weights still there, what is the sparsity after each of `rounds` rounds, if
# the last one ends at `target`? Write `schedule(target, rounds)`, the list of the sparsities after
# rounds $1, 2, \ldots,$ `rounds` (what `prune.iterative_sparsities` returns, and `python -m minires
# prune --rounds` follows).

# %%
# One possible answer: after r rounds (1 - q)^r of the weights remain, and (1 - q)^rounds = 1 - target,
# so the sparsity after round r is 1 - (1 - target)^(r / rounds).
def schedule(target, rounds):
    return [1 - (1 - target) ** (r / rounds) for r in range(1, rounds + 1)]


# %%
def schedules_agree():
    for target, rounds in [(0.9, 3), (0.5, 1), (0.99, 4), (0.75, 2)]:
        mine, expected = answered(schedule(target, rounds)), prune.iterative_sparsities(target, rounds)
        print(f"target {target}, {rounds} rounds: yours {np.round(mine, 4)}, "
              f"iterative_sparsities {np.round(expected, 4)}")
        if len(mine) != len(expected) or not np.allclose(mine, expected):
            return False
    return True


check("Exercise 3: the iterative schedule", schedules_agree,
      "the fraction left after r rounds is (1 - q)^r, and after all rounds it must be 1 - target")
