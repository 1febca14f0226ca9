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
# # 9. Beyond the identity shortcut
#
# A residual block adds its input back: $x_{l+1} = \mathrm{ReLU}(x_l + F(x_l))$. Must the added term
# be $x_l$ itself? A scaled $x_l$, a gated one, a learned $1\times1$ projection of it, all look at
# least as expressive, and a gate even lets the network *choose*. He et al. (2016, "Identity
# Mappings in Deep Residual Networks") tried them all on CIFAR-10 with ResNet-110, one recipe for
# every network, and every one of them trained worse than the plain identity:
#
# | shortcut (Fig. 2) | on the shortcut | on $F$ | in the paper's Table 1 |
# | --- | --- | --- | --- |
# | (a) identity | 1 | 1 | the baseline (6.61% test error) |
# | (b) constant scaling | 0.5 | 1 | failed to train |
# | (b) constant scaling | 0.5 | 0.5 | clearly worse |
# | (c) exclusive gating, $b_g = -6$ | $1 - g(x)$ | $g(x)$ | worse |
# | (d) shortcut-only gating, $b_g = 0$ | $1 - g(x)$ | 1 | clearly worse |
# | (d) shortcut-only gating, $b_g = -6$ | $1 - g(x)$ | 1 | close to the baseline |
# | (e) $1\times1$ convolution | $W_s$ | 1 | clearly worse |
# | (f) dropout, $p = 0.5$ | random 0 or 1 | 1 | failed to train |
#
# (Read the paper's Table 1 for its numbers; "failed": the training did not converge.)
# The same paper then moved batch norm and ReLU around (Fig. 4) and found that the unit trains best
# when *nothing at all* sits on the shortcut path: the pre-activation ResNet.
#
# In this tutorial we
#
# 1. derive, for every shortcut of Fig. 2, what multiplies the gradient on its way back along the
#    shortcuts;
# 2. measure it: exactly, in a stack of units whose branches are switched off, and at
#    initialisation in whole networks, block by block;
# 3. look at the five placements of BN and ReLU (Fig. 4), and see why full pre-activation keeps the
#    path clean;
# 4. read a Highway network as a ResNet with gated shortcuts;
# 5. train a few of the variants with `minires.experiments.shortcuts`.
#
# All the units are in `minires/models/residual_variants.py`: `cifar_resnet(depth,
# shortcut_kind=..., activation=...)` builds a CIFAR ResNet of `VariantBlock`s.

# %%
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
from minires.experiments import shortcuts
from minires.experiments.recipe import BlockWatch
from minires.experiments.shortcuts import PRESETS as SHORTCUT_PRESETS
from minires.experiments.shortcuts import VARIANTS
from minires.models import CifarResNet, highway_net
from minires.models.residual_variants import ACTIVATIONS, SHORTCUT_KINDS, VariantBlock, cifar_resnet
from minires.nn import Sequential

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
WIDTH = 2 if SMOKE else 4            # channels of the first stage (the paper's CIFAR nets use 16)
DEPTH = 8 if SMOKE else 32           # the networks of sections 2 to 4: 6n + 2, n units per stage
BATCH_SIZE = 16 if SMOKE else 32
UNITS = 6 if SMOKE else 15           # units in the stacks whose branches we switch off
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True)
print("width", WIDTH, "| depth", DEPTH, "| batch", BATCH_SIZE, "| smoke test" if SMOKE else "")

# %% [markdown]
# ## 1. The general unit, and what the shortcut does to the gradient
#
# Write a residual unit as
#
# $$ x_{l+1} = f\bigl(h(x_l) + F(x_l)\bigr), $$
#
# with $h$ the shortcut, $F$ the branch and $f$ what follows the addition (a ReLU in the original
# ResNet). Take $f$ = identity for now, and the simplest shortcut that is not the identity, a
# constant: $h(x) = \lambda x$. Then $x_{l+1} = \lambda x_l + F(x_l)$, and unrolling from unit $l$ to
# any deeper unit $L$,
#
# $$ x_L = \lambda^{L-l}\, x_l + \sum_{i=l}^{L-1} \lambda^{L-1-i}\, F(x_i). $$
#
# (Check it for $L = l + 2$: $x_{l+2} = \lambda(\lambda x_l + F(x_l)) + F(x_{l+1})$.) The chain rule
# gives the gradient at unit $l$:
#
# $$ \frac{\partial L}{\partial x_l} = \frac{\partial L}{\partial x_L}
#    \Bigl(\lambda^{L-l} + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} \lambda^{L-1-i} F(x_i)\Bigr). $$
#
# With $\lambda = 1$ this is eq. 5 of tutorial 6: the gradient of the deep unit reaches unit $l$
# directly, unchanged. With $\lambda \neq 1$ the direct term is multiplied by $\lambda^{L-l}$, which
# **vanishes** for $\lambda < 1$ ($0.5^{54} \approx 5\cdot10^{-17}$ across the 54 units of a
# ResNet-110) and **explodes** for $\lambda > 1$. Whatever reaches the first units then has to come
# through the branches, as in a plain network.
#
# The same reasoning works for every shortcut of Fig. 2. For one unit, $x_{l+1} = h(x_l) + \tilde F(x_l)$
# (with $\tilde F$ the branch as the unit scales it), the Jacobian is
# $\partial h/\partial x + \partial \tilde F/\partial x$; multiplying these out over $L - l$ units, the
# one path that never enters a branch is the product of the $\partial h/\partial x$. In
# backpropagation each unit multiplies the gradient from the right, so along the shortcuts
# $\partial L/\partial x_l$ receives $\frac{\partial L}{\partial x_L}\,\frac{\partial h}{\partial x}\Big|_{x_{L-1}}
# \cdots \frac{\partial h}{\partial x}\Big|_{x_l}$. What multiplies the shortcut's gradient:
#
# * **(b) constant scaling**, $h(x) = \lambda x$ (with $F$ scaled by $1 - \lambda$ or not, the shortcut is
#   the same): $\partial h/\partial x = \lambda I$, so $\lambda^{L-l}$.
# * **(c) exclusive gating**, $x_{l+1} = g(x_l) \odot F(x_l) + (1 - g(x_l)) \odot x_l$ with the gate
#   $g(x) = \sigma(W_g x + b_g)$, one value in $(0, 1)$ per channel and pixel. Then
#   $$ \frac{\partial x_{l+1}}{\partial x_l} = \mathrm{diag}(1 - g) + \mathrm{diag}(g)\,\frac{\partial F}{\partial x}
#      + \mathrm{diag}(F - x)\,\frac{\partial g}{\partial x}, $$
#   and the shortcut term is $\mathrm{diag}(1 - g)$: elementwise, $\prod_i (1 - g(x_i))$. It is close to 1
#   only where $g \approx 0$, which also switches $F$ off. (The gate's own derivative, the last term, is
#   a third way back; it is small where $F - x$ or the gate's slope $g(1-g)$ is small.)
# * **(d) shortcut-only gating**, $x_{l+1} = F(x_l) + (1 - g(x_l)) \odot x_l$:
#   $\mathrm{diag}(1 - g) + \partial F/\partial x - \mathrm{diag}(x)\,\partial g/\partial x$; again
#   $\prod_i (1 - g(x_i))$ on the shortcut. With $b_g = 0$ the gate starts near $0.5$: constant scaling
#   in disguise. With $b_g = -6$, $1 - g \approx 0.9975$ and the unit starts as the identity's twin,
#   which is why that row of the table is almost as good as (a).
# * **(e) $1\times1$ convolution**, $h(x) = W_s x$ (in minires followed by batch norm, as in the paper's
#   projections): at every pixel the matrix $W_s$ mixes the channels, so the gradient is multiplied by
#   $W_{s,L-1} \cdots W_{s,l}$, a product of $L - l$ matrices: a deep *linear* network on the shortcut,
#   whose product can grow or shrink geometrically like any other.
# * **(f) dropout**, $h(x) = m \odot x / (1 - p)$, with $m$ a fresh 0/1 mask ($P(m = 1) = 1 - p$) each
#   step (minires scales by $1/(1-p)$ as PyTorch does): $\prod_i \mathrm{diag}(m_i) / (1 - p)^{L-l}$.
#   Its *expectation* is 1, but an element survives all $L - l$ masks only with probability
#   $(1 - p)^{L-l}$, and then it is multiplied by $(1 - p)^{-(L-l)}$: the expected squared norm grows
#   like $(1 - p)^{-(L-l)}$ while almost every element is zero.
#
# Only the identity puts a 1 there.

# %% [markdown]
# ## 2. Measuring it
#
# ### With the branches switched off
#
# To see the shortcut's factor alone, we switch every branch off. The branch of the original unit
# ends in batch norm, $\gamma\,\hat x + \beta$; with $\gamma = \beta = 0$ it outputs zeros, whatever
# its input, and passes back no gradient. (For the two placements of section 3 whose branch ends in a
# convolution we zero that convolution's weight instead.) We stack `UNITS` units of 4 channels at
# stride 1 (no downsampling), in float64, feed them a positive input (so no ReLU after an addition
# masks anything: $\mathrm{ReLU}(\lambda x) = \lambda x$ for $x > 0$) and backpropagate a random
# upstream gradient $G = \partial L/\partial x_L$ from the last unit's output to the first unit's
# input.

# %%
def silence(block):
    """Make the branch output F(x) = 0: zero the last layer of the branch (BN's gamma and beta, or the
    last convolution's weight where the branch ends in a convolution)."""
    if getattr(block, "activation", "original") in ("bn_after_add", "full_preact"):
        block.conv2.weight.data = 0 * block.conv2.weight.data
    else:
        block.bn2.weight.data = 0 * block.bn2.weight.data
        block.bn2.bias.data = 0 * block.bn2.bias.data


def silenced_stack(kind="identity", activation="original", gate_bias=-6.0, units=UNITS, channels=4):
    """``units`` VariantBlocks at stride 1 with their branches switched off, in float64, training mode."""
    stack = Sequential(*[VariantBlock(channels, channels, 1, kind, activation, gate_bias)
                         for _ in range(units)]).double()
    for block in stack:
        silence(block)
    return stack.train()


def input_gradient(fn, x, G):
    """dL/dx for L = sum(G * fn(x)): the upstream gradient G carried back to x."""
    t = minires.tensor(x, requires_grad=True)
    fn(t).backward(G)
    return t.grad.numpy()


N, C, H = 4, 4, 8
x_pos = np.abs(rng.standard_normal((N, C, H, H))) + 0.1     # positive, like a ReLU's output
G = rng.standard_normal((N, C, H, H))

minires.manual_seed(0)
identity_grad = input_gradient(silenced_stack("identity"), x_pos, G)
minires.manual_seed(0)
scaling_grad = input_gradient(silenced_stack("constant_scaling"), x_pos, G)
print(f"{UNITS} units, F = 0:")
print("  identity:          dL/dx_0 == dL/dx_L exactly:", np.array_equal(identity_grad, G))
print(f"  constant scaling:  dL/dx_0 == 0.5^{UNITS} dL/dx_L:",
      np.allclose(scaling_grad, 0.5 ** UNITS * G, rtol=1e-12, atol=0), f"  (0.5^{UNITS} = {0.5 ** UNITS:.3g})")

# %% [markdown]
# Exactly as derived: along the identity the gradient arrives untouched, along the scaled shortcuts it
# arrives multiplied by $\lambda^{L}$ (and since multiplying by $0.5$ is exact in floating point, the
# agreement is to the last bit). Now every shortcut kind, with the gate biases the experiment of
# section 5 uses ($b_g = -6$ for exclusive gating, $b_g = 0$ for shortcut-only gating, the two rows of
# the table that train). For the gated kinds we also record every gate's output on the way forward and
# compute the predicted factor $\prod_i (1 - g(x_i))$.

# %%
def gate_product(stack, x):
    """prod over the units of (1 - g(x_i)), elementwise, on the forward pass through ``stack``."""
    product = np.ones_like(x)
    with minires.no_grad():
        t = minires.tensor(x)
        for block in stack:
            product = product * (1 - block.gate(t).numpy())
            t = block(t)
    return product


def norm_ratio(a, b):
    return float(np.linalg.norm(a) / np.linalg.norm(b))


print(f"{'shortcut':22s} {'||dL/dx_0|| / ||dL/dx_L||':>26s} {'nonzero':>8s}   predicted from the shortcut alone")
for kind in SHORTCUT_KINDS:
    gate_bias = 0.0 if kind == "shortcut_only_gating" else -6.0
    minires.manual_seed(0)
    stack = silenced_stack(kind, gate_bias=gate_bias)
    grad = input_gradient(stack, x_pos, G)
    if kind in ("constant_scaling", "constant_scaling_both"):
        predicted = f"0.5^{UNITS} = {0.5 ** UNITS:.3g}"
    elif kind.endswith("gating"):
        product = gate_product(stack, x_pos)
        predicted = (f"||G prod(1 - g)|| / ||G|| = {norm_ratio(G * product, G):.3g} "
                     f"(and the gates' slope adds {norm_ratio(grad - G * product, G):.2g})")
    elif kind == "dropout":
        predicted = f"each element survives with probability 0.5^{UNITS} = {0.5 ** UNITS:.3g}"
    elif kind == "conv1x1":
        predicted = "a product of BN(1x1 conv) Jacobians"
    else:
        predicted = "1"
    print(f"{kind:22s} {norm_ratio(grad, G):26.4g} {np.mean(grad != 0):8.3f}   {predicted}")

# %% [markdown]
# * Exclusive gating with $b_g = -6$ passes the gradient almost unchanged, because its gates are
#   almost shut on $F$ ($g \approx 0.0025$). With $b_g = 0$ (shortcut-only gating here) the gates sit
#   around one half and the gradient shrinks like $0.5^L$, as with constant scaling.
# * The $1\times1$ shortcut multiplies the gradient by a product of BN-normalised projections, which
#   here grows it by orders of magnitude: no less damaging than shrinking it.
# * Dropout: with this many units, every element of the gradient was dropped somewhere along the way.
#   With fewer units some survive, each multiplied by $2^L$:

# %%
print(f"{'units':>5s} {'fraction nonzero':>17s} {'(expected 0.5^L)':>17s} "
      f"{'||dL/dx_0||^2 / ||G||^2':>24s} {'(expected 2^L)':>15s}")
for units in range(1, 7):
    minires.manual_seed(units)
    grad = input_gradient(silenced_stack("dropout", units=units), x_pos, G)
    print(f"{units:5d} {np.mean(grad != 0):17.4f} {0.5 ** units:17.4f} "
          f"{norm_ratio(grad, G) ** 2:24.3g} {2.0 ** units:15.0f}")

# %% [markdown]
# ### In whole networks, at initialisation
#
# With the branches on, the gradient also flows through them, and their Jacobians are not small:
# the direct term is one term of the sum, not the whole gradient. So what does a real network look
# like? We build every variant of the experiment of section 5 (`VARIANTS`: name -> shortcut kind,
# activation, gate bias) at depth `DEPTH` on 28x28 MNIST digits, run one batch forward and back, and
# read $\lVert\partial L/\partial x_l\rVert$ at every block's input with `BlockWatch`, as in tutorial 6.

# %%
train_set = MNISTSample(train=True)
normalize = Normalize(*mean_std(train_set))
images = normalize(train_set.images[:BATCH_SIZE].astype(np.float32) / 255)
labels = train_set.labels[:BATCH_SIZE]


def build(name, depth=DEPTH, gate_bias=None):
    """The network of experiment variant ``name`` (seeded, so every variant starts from the same weights)."""
    kind, activation, default_bias = VARIANTS[name]
    bias = gate_bias if gate_bias is not None else (-6.0 if default_bias is None else default_bias)
    minires.manual_seed(0)
    return cifar_resnet(depth, width=WIDTH, num_classes=10, in_channels=1, shortcut_kind=kind,
                        activation=activation, gate_bias=bias)


def block_input_norms(model):
    """||dL/dx_l|| for x_0 (the first block's input) ... x_L (the last block's output), one batch."""
    model.train()
    with BlockWatch(model) as watch:
        F.cross_entropy(model(minires.tensor(images)), labels).backward()
    return np.array([np.linalg.norm(g.numpy()) for g in watch.grads])


norms = {name: block_input_norms(build(name)) for name in VARIANTS}
print(f"depth {DEPTH}: {(DEPTH - 2) // 2} units")
print(f"{'variant':22s} {'||dL/dx_0||':>12s} {'||dL/dx_L||':>12s} {'first / last':>13s}")
for name, n in norms.items():
    print(f"{name:22s} {n[0]:12.3g} {n[-1]:12.3g} {n[0] / n[-1]:13.3g}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained", sharey=True)
for name, n in norms.items():
    kind, activation, _ = VARIANTS[name]
    if activation == "original":
        axes[0].plot(n, "-" if name == "identity" else "--", lw=2.2 if name == "identity" else 1.3, label=name)
    if kind == "identity":
        axes[1].plot(n, "-" if name == "identity" else "--", lw=2.2 if name == "identity" else 1.3, label=name)
axes[0].set(title="shortcut kinds (Fig. 2), original placement", ylabel="||dL/dx_l||")
axes[1].set(title="activation placements (Fig. 4), identity shortcut")
for ax in axes:
    ax.set(yscale="log", xlabel="block index l  (the last point is x_L)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Reading the figure.** No curve collapses to $0.5^L$: at initialisation the branches carry plenty
# of gradient. What the shortcut changes is *how* it gets there. The identity network's curve is the
# flat-ish residual curve of tutorial 6. Constant scaling, shortcut-only gating at $b_g = 0$, the
# $1\times1$ shortcut and dropout take the direct term away (or scramble it), and what is left is a
# product of branch Jacobians, the plain network's mechanism (tutorial 6): their first-to-last ratios
# are several times the identity's. Exclusive gating at
# $b_g = -6$ is the opposite extreme: with $F$ multiplied by $g \approx 0.0025$ the network is almost a
# stack of identities (its ratio is below 1 partly because at each downsampling block the gradient of
# the zero-padded channels goes nowhere), and its branches hardly learn, which is why it trains worse.
#
# The activation placements all keep an identity shortcut, and their curves stay together. Their
# differences show in training (section 5), and in the shortcut path itself, next.
#
# ## 3. Where BN and ReLU go (Fig. 4)
#
# With $h$ = identity, the five units of the paper's Fig. 4 differ in what surrounds the addition:
#
# | activation | unit | in the paper's Table 2 |
# | --- | --- | --- |
# | (a) original | $x_{l+1} = \mathrm{ReLU}\bigl(x_l + \mathrm{BN}(W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1 x_l)))\bigr)$ | the baseline (6.61%) |
# | (b) BN after addition | $x_{l+1} = \mathrm{ReLU}\bigl(\mathrm{BN}(x_l + W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1 x_l)))\bigr)$ | worse |
# | (c) ReLU before addition | $x_{l+1} = x_l + \mathrm{ReLU}\bigl(\mathrm{BN}(W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1 x_l)))\bigr)$ | worse |
# | (d) ReLU-only pre-activation | $x_{l+1} = x_l + \mathrm{BN}(W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1\,\mathrm{ReLU}(x_l))))$ | about the baseline |
# | (e) full pre-activation | $x_{l+1} = x_l + W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1\,\mathrm{ReLU}(\mathrm{BN}(x_l))))$ | the best (6.37%) |
#
# (ResNet-110 on CIFAR-10, He et al. 2016, Table 2.) In (a) the function after the addition is
# $f = \mathrm{ReLU}$, so the path from one addition to the next goes through a ReLU: along the
# shortcuts the gradient is multiplied by the ReLU masks. In (b) it goes through a batch norm and a
# ReLU, whose Jacobians mix every element of the batch. In (c), (d) and (e) $f$ is the identity:
# $x_{l+1} = x_l + F(x_l)$ exactly, the unrolled sum $x_L = x_l + \sum_i F(x_i)$ holds, and nothing
# stands between one unit's addition and the next unit's addition. (c) pays for it differently: its
# branch ends in a ReLU, so $F \geq 0$ and the stream $x_l$ can only grow. (d) and (e) move the
# activations into the branch, *before* the convolutions; (e), with BN first, also normalises the
# input of every convolution.
#
# The same switched-off stacks show the shortcut path of each placement. This time the input has both
# signs, as the stream has in a pre-activation network:

# %%
x_mixed = rng.standard_normal((N, C, H, H))
print(f"{UNITS} units, F = 0, input of both signs:")
for activation in ACTIVATIONS:
    minires.manual_seed(0)
    grad = input_gradient(silenced_stack("identity", activation), x_mixed, G)
    if np.array_equal(grad, G):
        verdict = "dL/dx_0 == dL/dx_L exactly: a clean path"
    elif np.array_equal(grad, G * (x_mixed > 0)):
        verdict = "dL/dx_0 == dL/dx_L * [x_0 > 0]: the ReLU's mask on the path"
    else:
        verdict = "neither: batch norm's Jacobian on the path"
    print(f"  {activation:17s} ||dL/dx_0|| / ||dL/dx_L|| = {norm_ratio(grad, G):.3f}   {verdict}")

# %% [markdown]
# In (a) the mask of the first ReLU kills the gradient of every element that was negative (after that,
# the stream is non-negative and the later masks let everything through). In (b) each unit's batch
# norm rescales the gradient and couples it across the batch, unit after unit. In (c), (d) and (e) the
# path is the identity. The pre-activation unit (e) is what `minires.models.PreActResNet` builds, and
# what tutorial 6 checked eq. 5 on. Because its last unit's output is never activated, the head of a
# pre-activation network begins with BN and ReLU (`cifar_resnet(..., activation="full_preact").head`):

# %%
print(build("full_preact").head)

# %% [markdown]
# ## 4. Highway networks: shortcuts with learned gates
#
# Highway networks (Srivastava, Greff & Schmidhuber, 2015) came a few months before ResNets, and
# trained networks of up to a hundred layers. A highway layer mixes a transform $H(x)$
# with its input, through a learned **transform gate** $T(x) = \sigma(W_T x + b_T)$:
#
# $$ y = H(x)\, T(x) + x\,\bigl(1 - T(x)\bigr), \qquad
#    \frac{\partial y}{\partial x} = \mathrm{diag}(T)\,\frac{\partial H}{\partial x} + \mathrm{diag}(1 - T)
#    + \mathrm{diag}(H - x)\,\frac{\partial T}{\partial x}. $$
#
# It is exclusive gating (2c) under another name, with the gate on the carry path tied to the gate on
# the transform. Its carry path multiplies the gradient by $\prod_l (1 - T_l)$. The paper initialises
# the bias $b_T$ negative (here $-2$, so $T \approx 0.12$): every layer starts mostly carrying its
# input, which is what lets a deep highway network start training. But $1 - T \approx 0.88$ per layer
# is a constant scaling with $\lambda < 1$: over 15 layers it is $0.88^{15} \approx 0.15$, over 54
# layers $0.001$. A ResNet is the highway layer with both gates fixed open, $y = H(x) + x$: nothing to
# learn, and a factor of exactly 1.
#
# `highway_net(depth)` (`minires/models/highway.py`) is a convolutional highway network in the CIFAR
# ResNet's layout: $H$ is the two convolutions of a ResNet block (with a ReLU after the second BN), and
# $T$ has a 3x3 convolution of its own.

# %%
def plain_resnet_highway(depth):
    minires.manual_seed(0)
    plain = CifarResNet(depth, "none", WIDTH, 10, 1)
    minires.manual_seed(0)
    resnet = CifarResNet(depth, "A", WIDTH, 10, 1)
    minires.manual_seed(0)
    highway = highway_net(depth, WIDTH, 10, 1)
    return {"plain": plain, "resnet": resnet, "highway": highway}


networks = plain_resnet_highway(DEPTH)
network_norms = {}
for name, model in networks.items():
    network_norms[name] = block_input_norms(model)
    print(f"{name + '-' + str(DEPTH):11s} {model.num_parameters():7d} parameters   ||dL/dx_0|| / ||dL/dx_L|| = "
          f"{network_norms[name][0] / network_norms[name][-1]:.3g}")

highway = networks["highway"]
with BlockWatch(highway) as watch, minires.no_grad():     # the gate values of every block, on the batch
    highway(minires.tensor(images))
    mean_T = np.array([float(block.gate(watch.inputs[l]).numpy().mean()) for l, block in enumerate(highway.blocks)])
print(f"mean transform gate per block: {mean_T}")
print(f"carry factor prod(1 - mean T) over {len(mean_T)} blocks: {np.prod(1 - mean_T):.3g}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for (name, n), style in zip(network_norms.items(), ["o--", "s-", "^:"]):
    axes[0].plot(n, style, ms=3, label=f"{name}-{DEPTH}")
axes[0].set(yscale="log", xlabel="block index l", ylabel="||dL/dx_l||", title="Gradient at each block's input")
axes[0].legend()
axes[1].plot(mean_T, "^-", ms=4, label="mean T(x_l)")
axes[1].plot(np.cumprod((1 - mean_T)[::-1])[::-1], "v--", ms=4, label="carry factor from block l to the end")
axes[1].set(xlabel="block index l", ylim=(0, 1.05), title="Highway gates at initialisation")
axes[1].legend()
for ax in axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# At initialisation the highway network's gradient is well behaved too: its blocks are mostly carry,
# so the product of block Jacobians stays close to 1, much like the ResNet's. The difference is what the
# carry factor shows: the clean path shrinks geometrically with depth, and the gates have to learn to
# open it ($T \to 0$) wherever the gradient must get through, at the price of switching the transform
# off there. A ResNet never has to choose. (And the gates cost parameters: half as many again here.)
#
# ## 5. Training the variants
#
# `minires.experiments.shortcuts` trains the units with one recipe, on the same batches in the same
# order, and compares their final **training** loss (an optimisation question, not a generalisation
# one). Its `"laptop"` preset trains all 11 variants at depth 32, 600 iterations, 2 seeds (about
# 12 minutes on 2 cores); here we train six of them, at the same depth, for 200 iterations and one
# seed, which takes about two minutes. Any setting of a preset can be overridden by keyword.

# %%
TRAINED = ("identity", "constant_scaling", "shortcut_only_gating", "dropout", "bn_after_add", "full_preact")
print("laptop preset:", SHORTCUT_PRESETS["laptop"])
out_dir = tempfile.mkdtemp(prefix="minires-shortcuts-")
started = time.perf_counter()
if SMOKE:
    trained = shortcuts("tiny", out=out_dir, progress=False, seeds=1, variants=TRAINED)   # depth 8, 6 steps
else:
    trained = shortcuts("laptop", out=out_dir, progress=False, seeds=1, variants=TRAINED,
                        iterations=200, report_every=25, test_size=500)
print(f"took {time.perf_counter() - started:.0f} s; wrote {sorted(os.listdir(out_dir))}")
print(f"{'variant':22s} {'train loss':>10s} {'train error':>12s} {'test error':>11s}")
for name, final in trained["final"].items():
    print(f"{name:22s} {final['train_loss']['mean']:10.3g} {final['train_error']['mean']:12.3f} "
          f"{final['test_error']['mean']:11.3f}")
for claim in trained["claims"].values():
    print(f"{claim['verdict']:>14s}: {claim['statement']}")

# %%
seed = trained["seeds"][0]
fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
for name, curve in trained["runs"][seed]["curves"].items():
    ax.plot([p["iteration"] for p in curve], [p["train_loss"] for p in curve], "o-" if name == "identity" else "o--",
            ms=3, lw=2.2 if name == "identity" else 1.2, label=name)
ax.set(yscale="log", xlabel="iteration", ylabel="training loss (since the previous point)",
       title=f"Residual units, depth {trained['settings']['depth']}, one seed")
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
plt.show()
shutil.rmtree(out_dir)   # a demonstration only; pass your own folder as out= to keep the CSV, JSON and PNG

# %% [markdown]
# In our run the identity shortcut ended with the lowest training loss, constant scaling and
# shortcut-only gating ($b_g = 0$) about three times higher, and the loss of the dropout shortcut
# diverged: the paper's ordering, on a much smaller problem. Full pre-activation ended below BN after
# the addition, but above the original unit: in a run this short the original unit can win, and the
# paper's gains from pre-activation show at 110 and 1001 layers. Each claim is one seed here, so the
# verdicts are evidence, not proof; the full experiment trains every variant with several seeds and
# judges each claim on their ranges (tutorial 6, section 4). From a terminal:
#
# ```bash
# python -m minires gradflow shortcuts --preset laptop     # all 11 variants, 2 seeds, about 12 minutes on 2 cores
# python -m minires gradflow shortcuts --preset gpu        # the paper's ResNet-110 on CIFAR-10
# python -m minires gradflow --help                        # every preset and its settings
# ```
#
# ## Summary
#
# * In $x_{l+1} = h(x_l) + F(x_l)$ the gradient along the shortcuts is multiplied by the product of the
#   $\partial h/\partial x$: $\lambda^{L-l}$ for constant scaling, $\prod (1 - g)$ for gates, a product of
#   matrices for $1\times1$ convolutions, a product of random masks for dropout. Only the identity
#   gives exactly 1; we measured each, exactly where the formula is exact.
# * With the direct term gone, the gradient has to come through the branches, as in a plain network;
#   at initialisation that shows as plain-like growth of $\lVert\partial L/\partial x_l\rVert$, and in
#   training as a higher loss.
# * Full pre-activation puts nothing between one addition and the next ($f$ = identity), so the
#   shortcut path is exactly the identity; after-addition ReLUs and BNs sit on it.
# * A highway layer is a gated shortcut, $y = HT + x(1 - T)$: its carry path shrinks by $1 - T$ per
#   layer unless the gates learn to open it. A ResNet fixes the gates open.
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
# ### Exercise 1: $\lambda^L$ in a whole network
#
# Take a CIFAR ResNet of depth `DEPTH_1` built of constant-scaling units ($\lambda = 0.5$), switch every
# branch off, and carry the same upstream gradient $G$ from the last block's output back to the first
# block's input, once through it and once through the identity network. The downsampling blocks do the
# same thing to both (their option-A shortcut is followed by the scaling), so the ratio of the two
# gradients' norms is the shortcut factor $\lambda^L$ alone. Compute it without running anything: how many
# units $L$ does a depth-$(6n+2)$ network have? Store it in `predicted_factor`.

# %%
DEPTH_1 = 14 if SMOKE else 44

# One possible answer: three stages of n = (depth - 2) / 6 units, so L = (depth - 2) / 2 units.
units_1 = (DEPTH_1 - 2) // 2
predicted_factor = 0.5 ** units_1

# %%
def silenced_blocks(kind):
    minires.manual_seed(0)
    model = cifar_resnet(DEPTH_1, width=WIDTH, num_classes=10, in_channels=1, shortcut_kind=kind).double().train()
    for block in model.blocks:
        silence(block)
    return model.blocks


x_first = np.abs(rng.standard_normal((2, WIDTH, 8, 8))) + 0.1    # the first block's input, positive
G_last = rng.standard_normal((2, 4 * WIDTH, 2, 2))                # dL/dx_L at the last block's output
measured_factor = norm_ratio(input_gradient(silenced_blocks("constant_scaling"), x_first, G_last),
                             input_gradient(silenced_blocks("identity"), x_first, G_last))


def factor_is_right():
    print(f"depth {DEPTH_1}: predicted {answered(predicted_factor):.4g}, measured {measured_factor:.4g}")
    return np.isclose(predicted_factor, measured_factor, rtol=1e-9)


check("Exercise 1: the measured ratio is lambda^L", factor_is_right,
      "count the units: three stages, each with n = (depth - 2) / 6 of them")

# %% [markdown]
# ### Exercise 2: which gate bias lets more gradient reach the first block?
#
# Build exclusive-gating networks of depth 20 with two initial gate biases, $b_g = -6$ and $b_g = 0$.
# Predict, before measuring: which of the two has the larger $\lVert\partial L/\partial x_0\rVert /
# \lVert\partial L/\partial x_L\rVert$ at initialisation, on the batch of section 2? Write the bias,
# `-6.0` or `0.0`, in `larger_ratio_bias`. (Think about what $g$ does to $F$ in each case, and what
# tutorial 6 found for networks whose gradient must go through the branches.)

# %%
# One possible answer: at b_g = -6, g ~ 0.0025 switches the branches off and the network is almost a
# stack of identities (ratio near 1); at b_g = 0 the shortcut is halved and F only halved, so the
# gradient goes through the branches' Jacobians, which with batch norm grow it block after block.
larger_ratio_bias = 0.0

# %%
ratio_by_bias = {}
for bias in (-6.0, 0.0):
    n = block_input_norms(build("exclusive_gating", depth=20, gate_bias=bias))
    ratio_by_bias[bias] = n[0] / n[-1]


def bias_prediction_is_right():
    prediction = answered(larger_ratio_bias)
    print("first / last:", {f"b_g = {b}": round(float(r), 3) for b, r in ratio_by_bias.items()})
    return prediction == max(ratio_by_bias, key=ratio_by_bias.get)


check("Exercise 2: the prediction is right", bias_prediction_is_right,
      "with b_g = -6 the unit is nearly x + 0.0025 F(x); with b_g = 0 it is about 0.5 x + 0.5 F(x)")

# %% [markdown]
# ### Exercise 3: the exclusive-gating unit from its parts
#
# A `VariantBlock` with `shortcut="exclusive_gating"` has a branch `block.branch(x)` ($F$), a
# shortcut module `block.shortcut(x)` (here the option-A shortcut, since the block halves the
# resolution) and a gate `block.gate(x)` ($g$). Write `exclusive_gating_output(block, x)` that computes
# the unit's output from these parts (original placement: a ReLU after the addition), without calling
# `block(x)`.

# %%
# One possible answer:
def exclusive_gating_output(block, x):
    g = block.gate(x)
    return F.relu(block.branch(x) * g + block.shortcut(x) * (1 - g))


# %%
minires.manual_seed(1)
gated_block = VariantBlock(4, 8, stride=2, shortcut="exclusive_gating", gate_bias=-1.0).double().train()
x_gated = minires.tensor(rng.standard_normal((2, 4, 8, 8)))


def parts_make_the_block():
    with minires.no_grad():
        by_hand = answered(exclusive_gating_output(gated_block, x_gated))
        return np.allclose(by_hand.numpy(), gated_block(x_gated).numpy(), rtol=1e-12, atol=1e-12)


check("Exercise 3: the unit's output from its parts", parts_make_the_block,
      "y = ReLU(g * F(x) + (1 - g) * h(x)), with g = block.gate(x) and h(x) = block.shortcut(x)")
