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
# # 6. Plain vs residual networks: how the gradient flows
#
# He et al. (2015) found something odd: make a plain convolutional network deeper, from 20 to 56
# layers, and it gets *worse*, not only on the test set but on its own **training** set. The deeper
# network could copy the shallow one and set its extra layers to the identity, yet SGD does not find
# that solution. With residual blocks, the deeper network trains at least as well as the shallow one.
#
# One way to see why is to follow the gradient backwards. Call $x_l$ the input of block $l$, so that
# $x_{l+1} = f_l(x_l)$, and $x_L$ the last block's output. The chain rule gives
#
# $$ \frac{\partial L}{\partial x_l} = \frac{\partial L}{\partial x_L}\,
#    \frac{\partial f_{L-1}}{\partial x_{L-1}} \cdots \frac{\partial f_{l}}{\partial x_{l}} , $$
#
# a product of $L - l$ Jacobians. If each one scales the gradient by a typical factor $g$, the
# product scales it by about $g^{\,L-l}$: for $g = 1.3$ and 27 blocks, that is a factor of 1,000.
# A residual block (tutorial 5) computes $f_l(x) = \mathrm{ReLU}(F_l(x) + x)$, whose Jacobian is
# $(\partial F_l/\partial x + I)$ through a ReLU mask: the $I$ passes the gradient on unchanged,
# and $g$ stays close to 1.
#
# In this tutorial we
#
# 1. measure $\lVert\partial L/\partial x_l\rVert$ block by block, by hand, in a plain and a residual
#    network of depth 56, and explain the shapes of the curves;
# 2. repeat it for depths 8 to 110, at initialisation and during the first SGD steps, with
#    `minires.experiments.gradient_norms`;
# 3. check the "identity mapping" equation of He et al. (2016) number by number;
# 4. see how to run the longer experiments (the degradation of Fig. 6, and a lesion study).

# %%
import inspect
import os
import shutil
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import minires
import minires.functional as F
from minires.data import MNISTSample, Normalize, mean_std
from minires.experiments import gradient_norms, identity_mapping
from minires.experiments.gradient_norms import PRESETS as NORMS_PRESETS
from minires.experiments.recipe import BlockWatch
from minires.models import CifarResNet

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
WIDTH = 2 if SMOKE else 4            # channels of the first stage (the paper's CIFAR nets use 16)
BATCH_SIZE = 16 if SMOKE else 32
np.set_printoptions(precision=2, suppress=True)
print("width", WIDTH, "| batch", BATCH_SIZE, "| smoke test" if SMOKE else "")

# %% [markdown]
# ## 1. Measuring the gradient at every block, by hand
#
# The networks are the CIFAR ResNets of He et al. 2015 (`CifarResNet`), shaped for 28x28 grey
# digits: a 3x3 convolution, BN and ReLU (the "stem"), then three stages of $n$ blocks each
# (the first block of stages 2 and 3 halves the resolution and doubles the channels), then global
# average pooling and a linear layer. Depth $56 = 6n + 2$ means $n = 9$: 27 blocks.
#
# * `CifarResNet(56, "A", ...)`: residual blocks; where the shape changes the shortcut subsamples
#   and pads with zero channels (option A, tutorial 5).
# * `CifarResNet(56, "none", ...)`: the **plain** network, the very same layers without any shortcut.
#
# Autograd keeps gradients only for leaves (the parameters). To see the gradient at the input of
# each block we hang **module hooks** on the blocks, exactly as one would in PyTorch: on block $l$
# a forward hook keeps its input $x_l$, and a full backward hook (`register_full_backward_hook`)
# receives `grad_input`, the gradient $\partial L/\partial x_l$ arriving at that input during
# `loss.backward()`. The model itself runs unchanged, `model(x)`.
#
# Every minires model is made of three parts, and `model(x)` is exactly
# `model.head(model.blocks(model.stem(x)))`: the **stem** (here conv, BN, ReLU), the **blocks**
# (a list you can index and loop over) and the **head** (here global average pooling and the
# linear layer). The experiments hook every block in one small class, which we use too; here it is:

# %%
print(inspect.getsource(BlockWatch))

# %%
train_set = MNISTSample(train=True)
normalize = Normalize(*mean_std(train_set))
images = normalize(train_set.images[:BATCH_SIZE].astype(np.float32) / 255)   # scale to [0, 1], then normalise
labels = train_set.labels[:BATCH_SIZE]
print("a batch of", images.shape, "labels", labels)


def block_input_gradients(model, images, labels):
    """||dL/dx_l|| for x_0 (the stem's output) ... x_L (the last block's output), and the x_l themselves."""
    model.train()                                            # batch norm uses the batch's statistics
    with BlockWatch(model) as watch:
        F.cross_entropy(model(minires.tensor(images)), labels).backward()
    return np.array([np.linalg.norm(g.numpy()) for g in watch.grads]), watch.inputs


DEPTH = 56
minires.manual_seed(0)
plain = CifarResNet(DEPTH, "none", width=WIDTH, num_classes=10, in_channels=1)
minires.manual_seed(0)
resnet = CifarResNet(DEPTH, "A", width=WIDTH, num_classes=10, in_channels=1)
plain_norms, plain_xs = block_input_gradients(plain, images, labels)
resnet_norms, resnet_xs = block_input_gradients(resnet, images, labels)

# the blocks that halve the resolution and double the channels
downsampling = [i for i, block in enumerate(resnet.blocks) if block.changes_shape]
print("blocks:", len(resnet.blocks), "| downsampling blocks:", downsampling)
for name, norms in [("plain", plain_norms), ("residual", resnet_norms)]:
    print(f"{name:9s} ||dL/dx_0|| = {norms[0]:.3g}   ||dL/dx_L|| = {norms[-1]:.3g}   "
          f"first / last = {norms[0] / norms[-1]:.3g}")

# %% [markdown]
# On the left, the norm of the gradient at every block's input (log scale). On the right, what
# each block does to it on the way back: the **gain** $\lVert\partial L/\partial x_l\rVert /
# \lVert\partial L/\partial x_{l+1}\rVert$. Dotted lines mark the two downsampling blocks.

# %%
def gains(norms):
    return norms[:-1] / norms[1:]


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for name, norms, style in [("plain-56", plain_norms, "o--"), ("ResNet-56", resnet_norms, "s-")]:
    axes[0].plot(norms, style, ms=3, label=name)
    axes[1].plot(gains(norms), style, ms=3, label=name)
axes[0].set(yscale="log", xlabel="block index l  (the last point is x_L, the output)",
            ylabel="||dL/dx_l||", title="Gradient at each block's input")
axes[1].set(xlabel="block index l", ylabel="||dL/dx_l|| / ||dL/dx_(l+1)||",
            title="Gain of each block, on the way back")
axes[1].axhline(1.0, color="gray", lw=0.8)
for ax in axes:
    for d in downsampling:
        ax.axvline(d, color="gray", ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # blocks are numbered 0, 1, 2, ...
    ax.legend()
plt.show()

# %%
def geometric_mean(values):
    return float(np.exp(np.mean(np.log(values))))


keeps_shape = [i for i in range(len(resnet.blocks)) if i not in downsampling]
print("geometric mean gain of a block that keeps the shape:")
print(f"  plain    {geometric_mean(gains(plain_norms)[keeps_shape]):.3f}")
print(f"  residual {geometric_mean(gains(resnet_norms)[keeps_shape]):.3f}  "
      f"(first 4 blocks {geometric_mean(gains(resnet_norms)[:4]):.3f}, "
      f"last 4 {geometric_mean(gains(resnet_norms)[-4:]):.3f})")
rms = np.array([float(np.sqrt(np.mean(x.numpy().astype(np.float64) ** 2))) for x in resnet_xs])
print("ResNet: root-mean-square of x_l, blocks 0, 4, 8 (stage 1):", rms[[0, 4, 8]])

# %% [markdown]
# **Reading the curves.**
#
# * **Plain:** on a log scale the curve is close to a straight line: every block multiplies the
#   gradient by roughly the same factor, a little above 1, so the norm grows *geometrically* from
#   the output back to the input. With 27 blocks the first layers get a gradient thousands of times
#   larger than the last ones. (Without batch norm, say with sigmoids, the typical factor would be
#   below 1 and the gradient would **vanish** instead. With batch norm at initialisation it
#   **explodes** going backwards: Yang et al., 2019, show that in deep fully connected networks
#   with batch norm no choice of initialisation avoids it. Either way the culprit is the product of
#   many Jacobians.)
# * **Residual:** the gain is close to 1 all along. It is largest in the first blocks and
#   approaches 1 further on: the shortcut carries the stream $x_l$ forward and every block adds a
#   batch-normalised $F_l(x_l)$ to it, so the stream grows (see its root-mean-square above) while
#   each branch stays the same size. Relative to the stream each branch becomes a small correction,
#   and the block's Jacobian $(I + \partial F_l/\partial x)$ becomes close to $I$.
# * The jumps at the downsampling blocks are partly a matter of size: after a stride-2 block $x_l$
#   has a quarter of the pixels and twice the channels, so its gradient has half as many elements.
#
# He et al. (2015) note that their plain networks, thanks to batch norm, do **not** suffer from
# vanishing gradients, and conjecture that deep plain networks are simply very hard to optimise.
# The measurement agrees: nothing vanishes. But the layers of the plain network receive gradients
# of wildly different sizes, and one learning rate cannot suit them all.
#
# ## 2. Many depths, and the first SGD steps: `gradient_norms`
#
# `minires.experiments.gradient_norms` does the same measurement for plain and residual networks
# of several depths, and keeps measuring while it trains them with SGD. It takes a preset
# (`"tiny"` for tests, `"laptop"` for a CPU, `"gpu"` for CIFAR-10 at the paper's width), and any
# setting of the preset can be overridden by keyword. The full `"laptop"` preset trains 8
# networks (plain and residual, depths 8, 20, 56 and 110) for 100 iterations each, which takes
# several minutes on a laptop; here we keep its four depths but train for 12 iterations only,
# about a minute. With `out=` a folder, it also writes its numbers (CSV, JSON) and figures (PNG) there.

# %%
print("laptop preset:", NORMS_PRESETS["laptop"])
out_dir = tempfile.mkdtemp(prefix="minires-gradflow-")
started = time.perf_counter()
if SMOKE:
    norms_result = gradient_norms("tiny", out=out_dir, progress=False, seeds=1)   # depths 8 and 56, 2 steps
else:
    norms_result = gradient_norms("laptop", out=out_dir, progress=False, iterations=12, record_every=2, seeds=1)
print(f"took {time.perf_counter() - started:.0f} s; wrote {sorted(os.listdir(out_dir))}")
print("networks:", list(norms_result["networks"]))
first = next(iter(norms_result["networks"].values()))
print("keys of one network's record:", list(first))

# %% [markdown]
# The result is a plain dict. `norms_result["networks"][name]["block_input_norms"]` holds one list
# of $\lVert\partial L/\partial x_l\rVert$ per recorded iteration (the first, iteration 0, is the
# network at initialisation), and `"conv_weight_norms"` the same for the gradient of every
# convolution's weight. We plot the first of these ourselves: the same measurement as in section 1,
# for every depth.

# %%
def style(name):
    """One colour per depth (C0, C1, ...: matplotlib's tab10, dark enough on white); dashed: plain."""
    kind, depth = name.split("-")
    depths = sorted(norms_result["settings"]["depths"])
    return dict(color=f"C{depths.index(int(depth))}", ls="-" if kind == "resnet" else "--", lw=1.4)


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for name, record in norms_result["networks"].items():
    at_init = np.array(record["block_input_norms"][0])
    # block index scaled to [0, 1], so that networks of different depths can be compared
    axes[0].plot(np.linspace(0, 1, len(at_init)), at_init / at_init[-1], label=name, **style(name))
    ratios = [norms[0] / norms[-1] for norms in record["block_input_norms"]]
    axes[1].plot(record["iterations"], ratios, "o", ms=3, label=name, **style(name))
axes[0].set(yscale="log", xlabel="relative position of the block (0: first, 1: output)",
            ylabel="||dL/dx_l|| / ||dL/dx_L||", title="At initialisation")
axes[1].set(yscale="log", xlabel="SGD iteration", ylabel="||dL/dx_0|| / ||dL/dx_L||",
            title="First block over last, during training")
for ax in axes:
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.grid(alpha=0.3, which="both")
axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
axes[0].legend(fontsize=7, ncol=2)
fig.suptitle("dashed: plain, solid: residual")
plt.show()

print(f"{'network':>11s}  first/last at init  after {norms_result['settings']['iterations']} steps"
      "   (conv weights: at init, after)")
for name, summary in norms_result["summary"].items():
    print(f"{name:>11s}  {summary['block_input_first_to_last_at_init']:18.3g}  "
          f"{summary['block_input_first_to_last_at_end']:15.3g}"
          f"   ({summary['conv_weight_first_to_last_at_init']:.3g}, {summary['conv_weight_first_to_last_at_end']:.3g})")

# %% [markdown]
# At initialisation the plain network's ratio grows **exponentially with depth** (each added block
# multiplies it by about the same factor), while the residual network's grows slowly: a plain-110
# can be out by a factor of $10^7$ where a ResNet-110 is out by a few dozen.
#
# During training the picture moves fast. After a handful of SGD steps the deep plain networks
# swing from one extreme to the other: in our run the ratio of plain-110 went from about $10^7$ to
# below $10^{-3}$, and the gradient of its first convolutions' **weights** became tens of thousands
# of times *smaller* than that of its last ones (the last column). Now the early layers barely
# learn: the gradient has vanished. The residual networks stay within a modest factor of 1
# throughout. (This is 12 steps of one seed on a small model: run
# `python -m minires gradflow norms --preset laptop` for the 100 iterations of the full preset.)
#
# The experiment also drew these figures itself. Here is one of the PNG files it wrote:

# %%
picture = plt.imread(os.path.join(out_dir, "gradient_norms.png"))
fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
ax.imshow(picture)
ax.axis("off")
plt.show()
shutil.rmtree(out_dir)   # a demonstration only; pass your own folder as out= to keep the files

# %% [markdown]
# ## 3. The identity-mapping view (He et al. 2016, eq. 5)
#
# In the block of tutorial 5 a ReLU comes *after* the addition, $x_{l+1} = \mathrm{ReLU}(F_l(x_l) + x_l)$,
# so the shortcut is not quite the identity: the ReLU's mask sits on it. He et al. (2016) moved
# batch norm and ReLU into the branch, before each convolution (a **pre-activation** ResNet,
# `minires.models.PreActResNet`), so that within a stage
#
# $$ x_{l+1} = x_l + F_l(x_l) \quad\Longrightarrow\quad x_L = x_l + \sum_{i=l}^{L-1} F_i(x_i)
#    \qquad\text{(eq. 4)} $$
#
# for any deeper block $L$: the output is the input plus a **sum** of branches, not a product of
# layers. Differentiating,
#
# $$ \frac{\partial L}{\partial x_l} = \frac{\partial L}{\partial x_L}
#    \Bigl(1 + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} F_i(x_i)\Bigr) \qquad\text{(eq. 5)} $$
#
# The gradient at the deep block, $\partial L/\partial x_L$, reaches block $l$ **directly**, through
# the "1", plus whatever flows back through the branches. For the gradient to vanish, the branch
# term would have to cancel it exactly, for every example of a batch, which is very unlikely.
#
# `identity_mapping` checks eq. 5 in float64 on a real batch: the left side by autograd through
# the whole network, the right side as $\partial L/\partial x_L$ (from the same backward pass) plus
# a separate backward pass through the sum of the branches only. It does this for every block
# whose shortcut is the identity, with $L$ the last block of the same stage.

# %%
started = time.perf_counter()
identity_result = identity_mapping("tiny" if SMOKE else "laptop")   # pre-activation ResNet-14 / ResNet-56
rows = identity_result["rows"]
print(f"took {time.perf_counter() - started:.1f} s; depth {identity_result['settings']['depth']}, "
      f"{len(rows)} blocks checked")
print(f"eq. 5, max relative difference over all blocks: {identity_result['max_relative_difference']:.1e}")
print(f"the same, leaving out the '1' (branch term only): "
      f"{max(row['branch_only_max_relative_difference'] for row in rows):.2f}")

# %%
blocks = [row["block"] for row in rows]
fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
ax.plot(blocks, [row["autograd_norm"] for row in rows], "o", mfc="none", ms=8, label="dL/dx_l by autograd")
ax.plot(blocks, [row["eq5_norm"] for row in rows], "x", color="k", label="direct + branch term (eq. 5)")
ax.plot(blocks, [row["direct_term_norm"] for row in rows], "_", ms=12, mew=2, label="direct term dL/dx_L")
ax.plot(blocks, [row["branch_term_norm"] for row in rows], ".", label="branch term")
ax.set(yscale="log", xlabel="block l", ylabel="gradient norm",
       title="Eq. 5 in a pre-activation ResNet, stage by stage")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The two sides agree to about $10^{-15}$, float64 rounding. Within each stage the direct term is
# the same for every block (it is $\partial L/\partial x_L$ of that stage). Just below $L$ it is
# most of the gradient, and leaving out the "1" there is wrong by about 100%. Further back the
# branch term grows, as more branches add up, and takes over. Either way the direct term is always
# part of the sum.
#
# ## 4. The longer experiments, from the shell
#
# Two more experiments in `minires.experiments` need real training, so they take longer than a
# tutorial should. Run them from a terminal (they show progress bars and write CSV, JSON and PNG
# files into `--out`, by default `runs/gradflow-NAME-PRESET`):
#
# ```bash
# python -m minires gradflow degradation --preset laptop   # about a quarter of an hour on a 2-core CPU
# python -m minires gradflow lesion --preset laptop
# python -m minires gradflow --help                        # every preset and its settings
# ```
#
# * **degradation** repeats Fig. 6 of He et al. (2015) on the bundled MNIST sample: plain-20 and
#   plain-56, ResNet-20 and ResNet-56, one recipe, the same batches. What to look for is the
#   *training* error: the deeper plain net should end higher than the shallower one, and the deeper
#   ResNet at or below the shallower one. A single run is evidence, not proof: another seed, or
#   another machine's rounding, gives other numbers. So every network is trained with three seeds
#   (`--seeds`), and each comparison (under `"claims"` in the returned dict and `degradation.json`)
#   is judged on the seeds' ranges: "holds" when every seed of one network ends below every seed
#   of the other, "within noise" when the ranges overlap, "does not hold" when the order is the
#   other way round. On the MNIST sample both ResNets fit their training data almost perfectly, so
#   ResNet-56 against ResNet-20 is a toss-up: two of our runs, differing only in rounding, gave
#   "holds" by 0.2 points once and "within noise" once. The plain-56, meanwhile, ends 12-45% wrong
#   depending on the seed, and every seed of it far above every plain-20 seed.
# * **lesion** follows Veit et al. (2016): train a ResNet and a plain network, then delete one block
#   at test time and measure the accuracy, for every block in turn. Deleting a block of the plain
#   network breaks its only path, and the accuracy should collapse; the ResNet still has the
#   shortcut around the deleted block (exercise 1 of tutorial 5 counted the paths: $2^n$ of them) and
#   typically loses much less.
#
# From Python it is the same call, e.g. `degradation("laptop", out="runs/degradation")`.
#
# ## Summary
#
# * Backpropagation through a stack of blocks multiplies their Jacobians. In a plain network with
#   batch norm each block multiplies the gradient by a similar factor, so the gradient norm changes
#   geometrically with depth: by $10^4$ over 56 layers here, $10^7$ over 110.
# * A residual block's Jacobian is $I + \partial F/\partial x$ (through a ReLU mask); the gradient
#   norm then changes by a factor close to 1 per block, and only slowly with depth.
# * In a pre-activation ResNet the shortcut is exactly the identity, and eq. 5,
#   $\partial L/\partial x_l = \partial L/\partial x_L\,(1 + \partial_{x_l}\sum F_i)$, holds to rounding error.
#
# ## Exercises
#
# Each exercise has a check cell that prints ✓ or ✗ (and a hint, and stops). The file ships with
# one possible answer filled in, after a `# One possible answer` comment, so that it runs top to
# bottom; try your own first. While an answer is still `pass` or `...`, the check prints "not
# answered yet" and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells

# %% [markdown]
# ### Exercise 1: the first-to-last ratio, from the raw numbers
#
# Write `first_to_last(result, name)` that returns $\lVert\partial L/\partial x_0\rVert /
# \lVert\partial L/\partial x_L\rVert$ **at initialisation** for network `name` of `norms_result`,
# using only `result["networks"]` (not the ready-made `"summary"`). Then check the claim of this
# tutorial for the deepest pair: the plain ratio is farther from 1 than the residual one. ("Farther"
# on a log scale: 100 and 1/100 are equally far from 1.)

# %%
# One possible answer:
def first_to_last(result, name):
    at_init = result["networks"][name]["block_input_norms"][0]   # iteration 0 is the initialisation
    return at_init[0] / at_init[-1]


# %%
deepest = max(norms_result["settings"]["depths"])


def plain_and_residual_ratios():
    return (answered(first_to_last(norms_result, f"plain-{deepest}")),
            answered(first_to_last(norms_result, f"resnet-{deepest}")))


def first_to_last_agrees_with_summary():
    plain_ratio, resnet_ratio = plain_and_residual_ratios()
    print(f"depth {deepest}: plain {plain_ratio:.3g}, residual {resnet_ratio:.3g}")
    summary = norms_result["summary"]   # with one seed, the same measurement, ready-made
    return (np.isclose(plain_ratio, summary[f"plain-{deepest}"]["block_input_first_to_last_at_init"])
            and np.isclose(resnet_ratio, summary[f"resnet-{deepest}"]["block_input_first_to_last_at_init"]))


def plain_is_farther_from_1():
    plain_ratio, resnet_ratio = plain_and_residual_ratios()
    return abs(np.log(plain_ratio)) > abs(np.log(resnet_ratio))


check("Exercise 1: first_to_last agrees with the summary", first_to_last_agrees_with_summary,
      "use the norms of iteration 0: x_0 first, x_L last")
check("Exercise 1: the plain ratio is farther from 1", plain_is_farther_from_1)

# %% [markdown]
# ### Exercise 2: option B shortcuts
#
# Option B uses the identity where the shape is kept, and a $1\times1$ convolution followed by
# batch norm where it changes (tutorial 5). Predict, before measuring: is the first-to-last ratio
# of `CifarResNet(56, "B", ...)` closer to that of the option-A ResNet or to that of the plain
# network? Write your prediction as `"A"` or `"plain"`, then measure `ratio_b` with
# `block_input_gradients`, on the same batch as in section 1.

# %%
# One possible answer: 25 of the 27 blocks still have an identity shortcut, so most of the way the
# gradient flows as in the option-A network.
prediction = "A"
minires.manual_seed(0)
option_b = CifarResNet(DEPTH, "B", width=WIDTH, num_classes=10, in_channels=1)
b_norms, _ = block_input_gradients(option_b, images, labels)
ratio_b = b_norms[0] / b_norms[-1]

# %%
ratio_a, ratio_plain = resnet_norms[0] / resnet_norms[-1], plain_norms[0] / plain_norms[-1]
minires.manual_seed(0)
reference, _ = block_input_gradients(CifarResNet(DEPTH, "B", width=WIDTH, num_classes=10, in_channels=1),
                                     images, labels)
reference_b = reference[0] / reference[-1]
print(f"first / last: option A {ratio_a:.3g}, option B {reference_b:.3g}, plain {ratio_plain:.3g}")
closer = "A" if abs(np.log(reference_b / ratio_a)) < abs(np.log(reference_b / ratio_plain)) else "plain"
check("Exercise 2: ratio_b is the option-B network's ratio",
      lambda: np.isclose(answered(ratio_b), reference_b, rtol=1e-3),
      "seed with minires.manual_seed(0) before building the model, and use the same batch")
check("Exercise 2: the prediction is right", lambda: answered(prediction) == closer,
      "only two blocks differ between options A and B")

# %% [markdown]
# Option B's ratio is somewhat larger than option A's. One explanation to test yourself: the batch
# norm of each projection resets the stream to unit size at the start of stages 2 and 3, so the
# first blocks of those stages have the large gains of "early" blocks again (section 1).
#
# ### Exercise 3: extrapolate to 110 layers
#
# If every block of the plain network multiplied the gradient by the same factor $g$, the
# first-to-last ratio of a network with $B$ blocks would be $g^B$. Plain-56 has 27 blocks and
# plain-110 has 54. From the plain-56 ratio measured in section 1 alone, predict the ratio of
# plain-110 (`predicted_110`). The check cell measures it and accepts your prediction if it is
# within a factor of 10. Does the same extrapolation work for the ResNet?

# %%
# One possible answer: twice as many blocks, so the ratio is squared (g^54 = (g^27)^2).
predicted_110 = ratio_plain ** 2

# %%
measured = {}
for shortcut in ("none", "A"):
    minires.manual_seed(0)
    norms_110, _ = block_input_gradients(CifarResNet(110, shortcut, width=WIDTH, num_classes=10, in_channels=1),
                                         images, labels)
    measured[shortcut] = norms_110[0] / norms_110[-1]
print(f"plain-110: measured {measured['none']:.3g}")
print(f"ResNet-110: the same extrapolation predicts {ratio_a ** 2:.3g}, measured {measured['A']:.3g}")


def prediction_110_is_close():
    print(f"plain-110: predicted {answered(predicted_110):.3g}")
    return abs(np.log10(predicted_110 / measured["none"])) < 1


check("Exercise 3: the plain-110 prediction is within a factor of 10", prediction_110_is_close,
      "if each block multiplies by g, B blocks multiply by g**B")
