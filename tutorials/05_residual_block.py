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
# # 5. The residual block, and why its gradient cannot vanish
#
# A residual block (He et al., 2015) does not learn a mapping $H(x)$ directly.
# It learns a *residual* $F(x)$ and adds the input back:
#
# $$ z = F(x) + x, \qquad y = \mathrm{ReLU}(z). $$
#
# In minires' `BasicBlock` the branch $F$ is
# `conv3x3 -> BN -> ReLU -> conv3x3 -> BN` (the method `block.branch(x)`), and the
# added term is `block.shortcut(x)`.
#
# Differentiate the sum $z = F(x) + x$ with the chain rule. For any scalar loss $L$,
#
# $$ \frac{\partial L}{\partial x} = \frac{\partial L}{\partial z}\left(\frac{\partial F}{\partial x} + I\right)
#    = \underbrace{\frac{\partial L}{\partial z}\frac{\partial F}{\partial x}}_{\text{through } F}
#    + \underbrace{\frac{\partial L}{\partial z}}_{\text{through the shortcut}} . $$
#
# The second term is the upstream gradient itself, passed on untouched. However small
# or badly behaved $\partial F/\partial x$ is, the gradient reaching $x$ still contains
# $\partial L/\partial z$. Stack many blocks and the gradient has a direct path from the
# loss to the first layer: this is why very deep residual networks train.
#
# In this tutorial we check that formula **numerically**, term by term, in float64:
#
# 1. build a `BasicBlock` and look at $y = \mathrm{ReLU}(F(x) + x)$;
# 2. compute $\partial L/\partial x$ by autograd, and separately the two terms
#    (a vector-Jacobian product through $F$ alone, plus the identity term);
# 3. do the same for the two shortcuts used where a block changes shape:
#    option B, a $1\times1$ projection $W_s$, where
#    $\partial L/\partial x = \partial L/\partial z\,(\partial F/\partial x + W_s)$,
#    and option A, subsample and zero-pad;
# 4. confirm everything against finite differences with `minires.gradcheck`;
# 5. look at the gradient magnitudes through $F$ alone and through the whole block.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

import minires
from minires.models import BasicBlock

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
minires.manual_seed(0)                             # the block's weights are drawn from minires' generator
rng = np.random.default_rng(0)                     # our inputs and upstream gradients
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## Two small helpers
#
# **Float64.** Layers create float32 parameters, which is right for training but too
# coarse for finite differences (float32 has about 7 significant digits; a difference
# quotient with a step of $10^{-5}$ would keep only two of them). So we convert every
# parameter and buffer of a block to float64 once.
#
# **Vector-Jacobian products.** Reverse-mode autograd never forms a Jacobian. Given an
# upstream gradient $G = \partial L/\partial(\text{output})$, one backward pass computes
# $G\,\frac{\partial\,\text{output}}{\partial x}$, the gradient of the scalar
# $L = \sum G \odot \text{output}$. Choosing $G$ at **random** weights every output element
# differently, so no wrong term can hide (with $G = 1$ everywhere, for instance, the
# gradient of a batch-norm output is exactly zero and a broken backward would pass).

# %%
def vjp(fn, x, G):
    """G times d fn / dx at x: the gradient of L = sum(G * fn(x)), by one backward pass."""
    t = minires.tensor(x, requires_grad=True)    # a fresh leaf, so no gradient accumulates
    out = fn(t)
    assert out.shape == G.shape, (out.shape, G.shape)
    out.backward(G)
    return t.grad.numpy()


def max_diff(a, b):
    return float(np.abs(a - b).max())


# %% [markdown]
# ## 1. A block with an identity shortcut
#
# Input and output have the same shape (4 channels, stride 1), so the shortcut is the
# identity. We keep batch norm in **training mode**: it normalises with the statistics of
# the batch, so $F$ mixes all images of the batch together. That makes $\partial F/\partial x$
# a dense, complicated Jacobian, and the test stronger.

# %%
N, C, H, W = 4, 4, 6, 6        # 4 images, 4 channels, 6x6 pixels: small enough for finite differences
block = BasicBlock(C, C, stride=1, shortcut="A").double()  # every parameter and buffer in float64, as in PyTorch
block.train()
print(block)
print("shortcut is", type(block.shortcut).__name__)

x = rng.standard_normal((N, C, H, W))
with minires.no_grad():
    xt = minires.tensor(x)
    Fx = block.branch(xt).numpy()                   # F(x), the branch
    z = Fx + x                                        # the sum, before the final ReLU
    y = block(xt).numpy()                             # what the block returns
print("y == ReLU(F(x) + x):", np.allclose(y, np.maximum(z, 0)), " max difference", max_diff(y, np.maximum(z, 0)))

# %% [markdown]
# ### The identity, term by term
#
# Draw a random upstream gradient $G = \partial L/\partial z$ and compute three things:
#
# * `total`: autograd through the whole sum $z = F(x) + x$;
# * `through_F`: the vector-Jacobian product $G\,\partial F/\partial x$, backpropagating $G$
#   through the branch **alone**;
# * `through_shortcut`: $G \cdot I = G$.

# %%
G = rng.standard_normal((N, C, H, W))                 # dL/dz, the same shape as z and x


def residual_sum(t):
    return block.branch(t) + block.shortcut(t)      # z = F(x) + x


total = vjp(residual_sum, x, G)
through_F = vjp(block.branch, x, G)
through_shortcut = G

print("autograd dL/dx vs (G dF/dx + G):  max difference", max_diff(total, through_F + through_shortcut))
print("without the identity term:        max difference", max_diff(total, through_F))

# %% [markdown]
# The two agree to rounding error (often to the last bit), and leaving out the identity term
# is clearly wrong. Autograd did nothing magic here: when a tensor is used twice, its
# gradients from both uses are *added*, which is exactly the "$+\,I$".
#
# ### The final ReLU
#
# The block returns $y = \mathrm{ReLU}(z)$. The ReLU's backward multiplies the gradient by a
# mask: $\partial L/\partial z = \partial L/\partial y \odot [z > 0]$. Then the identity above
# applies to that masked gradient. Let us check the whole block too:

# %%
G_y = rng.standard_normal((N, C, H, W))               # dL/dy
G_z = G_y * (z > 0)                                   # through the ReLU: dL/dz
whole_block = vjp(block, x, G_y)
print("block: autograd vs (G_z dF/dx + G_z): max difference",
      max_diff(whole_block, vjp(block.branch, x, G_z) + G_z))

# %% [markdown]
# ### Checked against finite differences, by hand
#
# Autograd agreeing with autograd proves the *decomposition*; it does not prove either
# number right. For that we need calculus without backward: the **central difference**.
# For the scalar $L(x) = \sum G \odot z(x)$ and any direction $v$,
#
# $$ \frac{L(x + \varepsilon v) - L(x - \varepsilon v)}{2\varepsilon} \approx \frac{\partial L}{\partial x}\cdot v, $$
#
# with an error of order $\varepsilon^2$. We try a few random directions $v$, for the branch
# alone and for the whole sum.

# %%
def L_of(fn, G):
    """The scalar L(x) = sum(G * fn(x)), evaluated without building a graph."""
    def L(x_value):
        with minires.no_grad():
            return float((G * fn(minires.tensor(x_value)).numpy()).sum())
    return L


eps = 1e-6
for name, fn, analytic in [("through F alone", block.branch, through_F), ("whole sum", residual_sum, total)]:
    L = L_of(fn, G)
    worst = 0.0
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        numeric = (L(x + eps * v) - L(x - eps * v)) / (2 * eps)
        exact = float((analytic * v).sum())
        worst = max(worst, abs(numeric - exact) / abs(exact))
    print(f"{name:16s}: worst relative error over 3 directions {worst:.1e}")

# %% [markdown]
# Relative errors around $10^{-8}$ or below: the gradients are right. (In float32 the same check
# gives errors of several percent with this $\varepsilon$, and at best about $10^{-3}$ with a larger
# one, which is why we converted the block to float64.)
#
# ## 2. What the identity does for the gradient
#
# A figure makes the point. We scale the weight $\gamma$ of the branch's last batch norm,
# which scales $F$'s output and so its Jacobian, from 0 (the branch is switched off) up
# to 3, and measure how much gradient reaches $x$, relative to what arrived:
# $\lVert\partial L/\partial x\rVert / \lVert G\rVert$, through $F$ alone and through the
# block's sum.

# %%
gamma_saved = block.bn2.weight.data.copy()
scales = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0]
ratio_F, ratio_block = [], []
for s in scales:
    block.bn2.weight.data = s * gamma_saved
    ratio_F.append(np.linalg.norm(vjp(block.branch, x, G)) / np.linalg.norm(G))
    ratio_block.append(np.linalg.norm(vjp(residual_sum, x, G)) / np.linalg.norm(G))
block.bn2.weight.data = gamma_saved                    # put the block back as it was

block.bn2.weight.data = 0 * gamma_saved
dead_total = vjp(residual_sum, x, G)
block.bn2.weight.data = gamma_saved
print("gamma = 0: the branch passes no gradient, and dL/dx == G exactly:", np.array_equal(dead_total, G))

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
ax = axes[0]
ax.plot(scales, ratio_F, "o-", label="through F alone:  |G dF/dx| / |G|")
ax.plot(scales, ratio_block, "s-", label="through the block:  |G (dF/dx + I)| / |G|")
ax.axhline(1.0, color="gray", lw=0.8, ls=":")
ax.set_xscale("symlog", linthresh=0.03)
ax.set_xlim(0, 3.5)
ax.set_xticks(scales, [str(s) for s in scales])
ax.set_xlabel("scale of the last BN's gamma in F")
ax.set_ylabel("gradient norm reaching x / upstream norm")
ax.set_title("Shrinking F: its gradient vanishes, the block's does not")
ax.legend(fontsize=8)

ax = axes[1]
bins = np.logspace(-5, 1, 50)
ax.hist(np.abs(through_F).ravel(), bins=bins, alpha=0.6, label="|G dF/dx|  (through F)")
ax.hist(np.abs(G).ravel(), bins=bins, alpha=0.6, label="|G|  (through the shortcut)")
ax.hist(np.abs(total).ravel(), bins=bins, histtype="step", lw=2, color="k", label="|dL/dx|  (the sum)")
ax.set_xscale("log")
ax.set_xlabel("gradient magnitude per element")
ax.set_ylabel("count")
ax.set_title("The two terms of dL/dx (gamma as initialised)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# With $\gamma = 0$ the branch is a constant and passes back nothing, yet the block hands
# $G$ to $x$ unchanged. A plain layer with a dying Jacobian would starve everything below
# it of gradient; a residual block cannot. (Tutorial 6 stacks many layers and watches this
# happen across a whole network.)
#
# Here is the block as a diagram: the gradient flows back along both arrows into $x$
# and the two contributions are added.

# %%
def draw_block(ax, shortcut_label="identity: x"):
    """The BasicBlock as boxes and arrows; red arrows show where the gradient flows back."""
    stages = ["conv 3x3", "BN", "ReLU", "conv 3x3", "BN"]
    xs = np.linspace(1.6, 7.6, len(stages))
    ax.text(0.4, 0, "x", ha="center", va="center", fontsize=14)
    for xi, label in zip(xs, stages):
        ax.add_patch(FancyBboxPatch((xi - 0.5, -0.3), 1.0, 0.6, boxstyle="round,pad=0.05",
                                    fc="#dce9f7", ec="#3b6ea5"))
        ax.text(xi, 0, label, ha="center", va="center", fontsize=9)
    plus_x = 8.9
    ax.add_patch(plt.Circle((plus_x, 0), 0.25, fc="white", ec="k"))
    ax.text(plus_x, 0, "+", ha="center", va="center", fontsize=14)
    ax.add_patch(FancyBboxPatch((9.7, -0.3), 1.0, 0.6, boxstyle="round,pad=0.05", fc="#f3e3c3", ec="#a5783b"))
    ax.text(10.2, 0, "ReLU", ha="center", va="center", fontsize=9)
    ax.text(11.4, 0, "y", ha="center", va="center", fontsize=14)
    arrow = dict(arrowstyle="-|>", mutation_scale=12, color="k")
    points = [0.6] + [p for xi in xs for p in (xi - 0.55, xi + 0.55)] + [plus_x - 0.25]
    for a, b in zip(points[0::2], points[1::2]):
        ax.add_patch(FancyArrowPatch((a, 0), (b, 0), **arrow))
    ax.add_patch(FancyArrowPatch((plus_x + 0.25, 0), (9.65, 0), **arrow))
    ax.add_patch(FancyArrowPatch((10.75, 0), (11.25, 0), **arrow))
    # the shortcut, drawn above
    ax.add_patch(FancyArrowPatch((0.5, 0.2), (plus_x, 0.25), connectionstyle="arc3,rad=-0.25", **arrow))
    ax.text(4.7, 1.45, shortcut_label, ha="center", fontsize=10)
    ax.text(4.6, 0.5, "F(x) = block.branch(x)", ha="center", fontsize=10, color="#3b6ea5")
    # the gradient, flowing back below: once through F, once along the shortcut
    red = dict(arrowstyle="-|>", mutation_scale=12, color="tab:red", lw=1.5)
    ax.add_patch(FancyArrowPatch((plus_x - 0.1, -0.45), (0.5, -0.45), **red))
    ax.text(4.6, -0.75, "dL/dz dF/dx   (back through F)", ha="center", fontsize=9, color="tab:red")
    ax.add_patch(FancyArrowPatch((plus_x, -0.3), (0.4, -0.3), connectionstyle="arc3,rad=-0.3", **red))
    ax.text(4.6, -1.95, "dL/dz   (back along the shortcut, unchanged)", ha="center", fontsize=9, color="tab:red")
    ax.set_xlim(0, 11.8)
    ax.set_ylim(-2.2, 1.8)
    ax.axis("off")


fig, ax = plt.subplots(figsize=(10, 3.4), layout="constrained")
draw_block(ax)
ax.set_title("BasicBlock: y = ReLU(F(x) + x);  in red, the gradient: dL/dx = dL/dz dF/dx + dL/dz")
plt.show()

# %% [markdown]
# ## 3. When the shape changes: projection (option B)
#
# The first block of a stage halves the resolution (stride 2) and doubles the channels,
# so $x$ cannot be added to $F(x)$ as it is. Option B projects it with a $1\times1$
# convolution of stride 2, $W_s$ (followed by batch norm in minires, as in the paper's code):
#
# $$ z = F(x) + W_s x, \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial z}\left(\frac{\partial F}{\partial x} + W_s\right). $$
#
# To see $W_s$ as a plain matrix we put the block in **evaluation mode**, after a few
# training-mode passes so the running statistics are not trivial. In evaluation mode batch
# norm is a fixed per-channel affine map $\hat{u}_o = a_o u_o + b_o$ with
# $a_o = \gamma_o/\sqrt{\sigma^2_o + \epsilon}$, so the shortcut is exactly
# $z^{\text{short}}_{n,o,h,w} = \sum_c a_o W_{o,c}\, x_{n,c,2h,2w} + b_o$: a linear map with
# matrix $W_s[o, c] = a_o W_{o,c}$.
#
# Its vector-Jacobian product sends output pixel $(h, w)$ back to input pixel $(2h, 2w)$:
# $\big(G\,W_s\big)_{n,c,2h,2w} = \sum_o G_{n,o,h,w}\,W_s[o,c]$, and the pixels at odd
# rows or columns, which the stride skips, receive nothing from the shortcut.

# %%
C_in, C_out, stride = 4, 8, 2
block_b = BasicBlock(C_in, C_out, stride=stride, shortcut="B").double()
print(block_b.shortcut)

with minires.no_grad():                               # fill the running statistics
    for _ in range(5):
        block_b(minires.tensor(rng.standard_normal((N, C_in, H, W)) * 2 + 0.5))
block_b.eval()

conv_s, bn_s = block_b.shortcut[0], block_b.shortcut[1]
a = bn_s.weight.data / np.sqrt(bn_s.running_var.data + bn_s.eps)
W_s = a[:, None] * conv_s.weight.data[:, :, 0, 0]     # (C_out, C_in): the shortcut as a matrix
print("W_s has shape", W_s.shape)

x_b = rng.standard_normal((N, C_in, H, W))
G_b = rng.standard_normal((N, C_out, H // stride, W // stride))   # dL/dz has the output's shape

shortcut_by_hand = np.zeros_like(x_b)
shortcut_by_hand[:, :, ::stride, ::stride] = np.einsum("nohw,oc->nchw", G_b, W_s)

total_b = vjp(lambda t: block_b.branch(t) + block_b.shortcut(t), x_b, G_b)
through_F_b = vjp(block_b.branch, x_b, G_b)
print("shortcut term: by hand vs autograd through the shortcut alone:",
      max_diff(shortcut_by_hand, vjp(block_b.shortcut, x_b, G_b)))
print("autograd dL/dx vs (G dF/dx + G W_s):                       ",
      max_diff(total_b, through_F_b + shortcut_by_hand))

# %% [markdown]
# In training mode the projection's batch norm uses batch statistics, so the shortcut is no
# longer a fixed matrix, but the sum rule still holds, term by term, with each term computed
# by backpropagating through its own path:

# %%
block_b.train()
total_b_train = vjp(lambda t: block_b.branch(t) + block_b.shortcut(t), x_b, G_b)
print("training mode: max difference",
      max_diff(total_b_train, vjp(block_b.branch, x_b, G_b) + vjp(block_b.shortcut, x_b, G_b)))

# %% [markdown]
# ## 4. Option A: subsample and zero-pad
#
# The CIFAR ResNets of the paper use option A, which has no parameters: keep every second
# pixel, and append zero channels:
# $z^{\text{short}}_{n,c,h,w} = x_{n,c,2h,2w}$ for $c < C_\text{in}$, and $0$ for the new channels.
# It is linear, and its transpose is easy to write: input pixel $(2h, 2w)$ of channel
# $c$ receives $G_{n,c,h,w}$; the gradients of the zero channels go nowhere.

# %%
block_a = BasicBlock(C_in, C_out, stride=stride, shortcut="A").double()
block_a.train()
print(block_a.shortcut)

shortcut_a_by_hand = np.zeros_like(x_b)
shortcut_a_by_hand[:, :, ::stride, ::stride] = G_b[:, :C_in]

total_a = vjp(lambda t: block_a.branch(t) + block_a.shortcut(t), x_b, G_b)
print("shortcut term: by hand vs autograd:", max_diff(shortcut_a_by_hand, vjp(block_a.shortcut, x_b, G_b)))
print("autograd dL/dx vs (G dF/dx + shortcut term):", max_diff(total_a, vjp(block_a.branch, x_b, G_b) + shortcut_a_by_hand))

# %% [markdown]
# ## 5. `minires.gradcheck`: the whole block against finite differences
#
# `minires.gradcheck(fn, inputs, params)` does what we did by hand in section 1, thoroughly:
# it draws a random upstream gradient, and compares autograd with central differences for
# a sample of elements of every input and parameter, plus random directions. Here it checks
# the gradients of the three complete blocks (final ReLU included) with respect to the input
# **and** every weight, batch-norm scales and shifts included.
#
# (One caveat: finite differences are wrong where a ReLU input sits within $\varepsilon$ of
# zero, since the function has a kink there. With random inputs that is very unlikely;
# if it ever happens, a different seed fixes it.)

# %%
max_elements = 8 if SMOKE else 48
for name, blk, x_in in [("identity", block, x), ("option B", block_b, x_b), ("option A", block_a, x_b)]:
    x_t = minires.tensor(x_in, requires_grad=True)
    result = minires.gradcheck(blk, (x_t,), params=list(blk.parameters()), max_elements=max_elements,
                               raise_exception=False)
    print(f"{name:9s} {result}")

# %% [markdown]
# ## Summary
#
# * A residual block adds its input to its branch: $z = F(x) + S(x)$, with $S$ the identity,
#   a $1\times1$ projection (option B), or subsample-and-zero-pad (option A).
# * By the chain rule, $\partial L/\partial x = \partial L/\partial z\,(\partial F/\partial x + \partial S/\partial x)$;
#   with the identity, the second term is $\partial L/\partial z$ itself. We computed each term
#   separately and found that they add up to autograd's answer to within $10^{-15}$, and
#   that autograd agrees with finite differences.
# * Even when $F$ passes back no gradient at all, the identity term does: the shortcut is a
#   gradient highway.
#
# ## Exercises
#
# The file ships with one possible answer to each exercise filled in, after a
# `# One possible answer` comment, so that it runs top to bottom; try to write your own before
# reading it. The check cell under each answer prints ✓ when it is right, and stops with ✗ and
# a hint when it is not. While an answer is still `pass` or `...`, it prints "not answered yet"
# and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells

# %% [markdown]
# ### Exercise 1: two blocks, four paths
#
# Stack two identity-shortcut sums, $z_1 = F_1(x) + x$ and $z_2 = F_2(z_1) + z_1$. Expanding
# $\partial L/\partial x = G\,(I + J_2)(I + J_1)$ (with $J_1 = \partial F_1/\partial x$,
# $J_2 = \partial F_2/\partial z_1$) gives **four** paths from the loss to $x$:
#
# $$ G \;+\; G J_1 \;+\; G J_2 \;+\; G J_2 J_1 . $$
#
# Write `four_paths(x, G)` returning the four terms as a list, each computed with `vjp`
# through the branches only (no autograd through a sum), and check that they add up to
# autograd's gradient of $z_2$. (With $n$ blocks there are $2^n$ paths: Veit et al., 2016,
# read residual networks as ensembles of shallower networks this way.)

# %%
block1 = BasicBlock(C, C, stride=1).double()
block2 = BasicBlock(C, C, stride=1).double()


def two_blocks(t):
    z1 = block1.branch(t) + t
    return block2.branch(z1) + z1


# One possible answer:
def four_paths(x, G):
    with minires.no_grad():
        z1 = (block1.branch(minires.tensor(x)) + minires.tensor(x)).numpy()
    GJ2 = vjp(block2.branch, z1, G)           # through F2, then along the identity of block 1
    return [G, vjp(block1.branch, x, G), GJ2, vjp(block1.branch, x, GJ2)]


# %%
def four_paths_add_up():
    paths = answered(four_paths(x, G))
    print("norms of the four paths:", [round(float(np.linalg.norm(p)), 3) for p in paths])
    return np.allclose(sum(paths), vjp(two_blocks, x, G), rtol=1e-10, atol=1e-10)


check("Exercise 1: the four paths add up to autograd's dL/dx", four_paths_add_up,
      "G J2 is a vjp through F2 evaluated at z1 (not at x); G J2 J1 feeds that result through F1")

# %% [markdown]
# ### Exercise 2: option C in evaluation mode
#
# Option C uses a $1\times1$ projection in *every* block, even when the shape does not change
# (stride 1, same channels). Build `BasicBlock(4, 4, stride=1, shortcut="C")`, put it in
# evaluation mode, and compute the shortcut term $G\,W_s$ **by hand** from the weights of
# `block_c.shortcut` (remember the batch norm that follows the $1\times1$ convolution).
# Store it in `shortcut_c`.

# %%
block_c = BasicBlock(C, C, stride=1, shortcut="C").double().eval()
conv_c, bn_c = block_c.shortcut[0], block_c.shortcut[1]

# One possible answer:
W_c = (bn_c.weight.data / np.sqrt(bn_c.running_var.data + bn_c.eps))[:, None] * conv_c.weight.data[:, :, 0, 0]
shortcut_c = np.einsum("nohw,oc->nchw", G, W_c)

# %%
total_c = vjp(lambda t: block_c.branch(t) + block_c.shortcut(t), x, G)
check("Exercise 2: G dF/dx + G W_s equals autograd's dL/dx for option C",
      lambda: np.allclose(vjp(block_c.branch, x, G) + answered(shortcut_c), total_c, rtol=1e-10, atol=1e-10),
      "fold the batch norm's gamma / sqrt(running_var + eps) into the rows of the 1x1 weight; "
      "with stride 1 every pixel receives a gradient")

# %% [markdown]
# ### Exercise 3: a block that starts as the identity
#
# Some training recipes (Goyal et al., 2017) initialise the weight $\gamma$ of the **last**
# batch norm of every branch to zero. Set `block.bn2.weight` to zero and predict, without
# running the block: what is its output $y$ for the input `x` (its `bn2.bias` is zero at
# initialisation), and what is the gradient $\partial L/\partial x$ for an upstream gradient
# `G_y`? Write your predictions as NumPy expressions in `predicted_y` and `predicted_grad`.

# %%
block_zero = BasicBlock(C, C, stride=1).double()
block_zero.bn2.weight.data = np.zeros(C)

# One possible answer: F(x) = 0 * normalised + 0 = 0, so y = ReLU(x), and the gradient is the
# upstream gradient through the final ReLU's mask, then along the identity (F passes back nothing).
predicted_y = np.maximum(x, 0)
predicted_grad = G_y * (x > 0)

# %%
with minires.no_grad():
    actual_y = block_zero(minires.tensor(x)).numpy()
check("Exercise 3: the output is as predicted", lambda: np.allclose(actual_y, answered(predicted_y), atol=1e-12),
      "with gamma = 0 and beta = 0 the branch outputs zeros; what is left of ReLU(F(x) + x)?")
check("Exercise 3: the gradient is as predicted",
      lambda: np.allclose(vjp(block_zero, x, G_y), answered(predicted_grad), atol=1e-12),
      "the final ReLU masks G_y where its input is negative; F passes back nothing")
