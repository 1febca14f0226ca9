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
# # 10. DenseNet and SE: other ways to keep the gradient
#
# Tutorial 9 ended with a rule: leave the shortcut alone, an identity with nothing on it. Two later
# architectures keep that rule and change something else.
#
# * **DenseNet** (Huang et al., 2017) does not *add* the branch to the identity, it *keeps both*:
#   each layer appends its $k$ new feature maps to everything before it,
#   $x_{l+1} = [x_l, H_l(x_l)]$ (a concatenation along the channels). Every earlier feature map
#   reaches every later layer, and the loss, untouched; in backward the concatenation just hands each
#   input its slice of the gradient. The price is memory, which grows with the square of the depth.
# * **Squeeze-and-Excitation** (Hu et al., 2018) leaves the ResNet's shortcut as it is and re-weights
#   the *branch*, channel by channel: $s = \sigma(W_2\,\mathrm{ReLU}(W_1\,\mathrm{avgpool}(F(x))))$, and
#   the block computes $\mathrm{ReLU}(F(x) \odot s + x)$.
#
# In this tutorial we
#
# 1. look at the concatenation's forward and backward on a small example;
# 2. build a dense block by hand from `nn` layers, follow the gradient through it, and compare it with
#    minires' `DenseLayer`; then the whole `DenseNet`, and its parameter counts;
# 3. compare the gradient norms of a DenseNet and a plain network with as many convolutions;
# 4. count the bytes a dense block keeps for backward, by a formula and by measuring, with and without
#    the memory-efficient implementation;
# 5. write the SE block by hand, with its gradient, check both against `SqueezeExcitation`, and look at
#    what the excitations of a trained SE-ResNet have learned.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import minires
import minires.functional as F
from minires import nn, optim
from minires.data import DataLoader, MNISTSample, Normalize, mean_std
from minires.engine.checkpoint import graph_bytes
from minires.experiments import gradient_norms
from minires.models import (
    DenseNet, densenet40_k12, densenet_bc100_k12, resnet20, resnet56, resnet110, se_resnet20, se_resnet56,
)
from minires.models.densenet import DenseLayer
from minires.models.squeeze_excitation import SECifarResNet, SqueezeExcitation

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")   # CI runs every tutorial quickly with this set
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True)
print("smoke test" if SMOKE else "full sizes")


def max_diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


# %% [markdown]
# ## 1. The concatenation and its gradient
#
# `minires.cat([x_1, x_2, ...], dim=1)` stacks feature maps along the channels (PyTorch's
# `torch.cat`): for inputs with $C_1, C_2, \ldots$ channels, output channels $0 \ldots C_1 - 1$ are
# $x_1$, the next $C_2$ are $x_2$, and so on. Every output element is a *copy* of one input element,
# so the Jacobian is a selection, and its vector-Jacobian product is the split:
#
# $$ y = [x_1, x_2] \quad\Longrightarrow\quad
#    \frac{\partial L}{\partial x_1} = \frac{\partial L}{\partial y}\Big[:, 0:C_1\Big], \qquad
#    \frac{\partial L}{\partial x_2} = \frac{\partial L}{\partial y}\Big[:, C_1:C_1 + C_2\Big]. $$
#
# Compare the sum $y = x + F(x)$ of a ResNet: there *both* terms receive the whole $\partial L/\partial y$.
# Here each input receives its own part of it, nothing more, nothing less, and unchanged.

# %%
x1 = minires.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
x2 = minires.tensor(rng.standard_normal((2, 2, 2, 2)), requires_grad=True)
y = minires.cat([x1, x2], dim=1)
print("shapes:", x1.shape, "+", x2.shape, "->", y.shape)
print("y[:, :3] is x1:", np.array_equal(y.numpy()[:, :3], x1.numpy()),
      "| y[:, 3:] is x2:", np.array_equal(y.numpy()[:, 3:], x2.numpy()))

G = rng.standard_normal(y.shape)          # a random upstream gradient dL/dy
y.backward(G)
print("dL/dx1 == G[:, :3]:", np.array_equal(x1.grad.numpy(), G[:, :3]),
      "| dL/dx2 == G[:, 3:]:", np.array_equal(x2.grad.numpy(), G[:, 3:]))

# %% [markdown]
# ## 2. A dense block, by hand
#
# In a dense block, layer $l$ computes $k$ new feature maps (the **growth rate**) from the concatenation
# of the block's input and all the maps the earlier layers made:
#
# $$ h_l = H_l\bigl([x_0, h_0, h_1, \ldots, h_{l-1}]\bigr), \qquad H_l = \text{BN} \to \text{ReLU} \to
#    \text{conv}\,3\times3\ (k \text{ maps}), $$
#
# and the block outputs $[x_0, h_0, \ldots, h_{L-1}]$, $C_0 + Lk$ channels. We build one from
# `nn.BatchNorm2d` and `nn.Conv2d`, in float64.

# %%
C0, k, L_hand = 4, 3, 4                   # input channels, growth rate, layers
minires.manual_seed(0)
hand_layers = [(nn.BatchNorm2d(C0 + l * k).double(), nn.Conv2d(C0 + l * k, k, 3, padding=1, bias=False).double())
               for l in range(L_hand)]


def dense_block_by_hand(x, keep=None):
    """[x_0, h_0, ..., h_{L-1}]; with ``keep`` a list, the new maps h_l are appended to it."""
    features = [x]
    for bn, conv in hand_layers:
        layer_input = minires.cat(features, dim=1)       # [x_0, h_0, ..., h_{l-1}]
        h = conv(F.relu(bn(layer_input)))
        features.append(h)
        if keep is not None:
            keep.append(h)
    return minires.cat(features, dim=1)


x0 = rng.standard_normal((4, C0, 6, 6))
with minires.no_grad():
    block_out = dense_block_by_hand(minires.tensor(x0))
print("block input", x0.shape, "-> output", block_out.shape, f"= C0 + L k = {C0} + {L_hand} x {k}")
print("the input is still in the output, untouched:", np.array_equal(block_out.numpy()[:, :C0], x0))

# %% [markdown]
# ### Where the gradient goes
#
# Backpropagate a random $G = \partial L/\partial(\text{output})$. Each new map $h_l$ gets its own slice of
# $G$ **directly**, from the final concatenation, plus what the later layers that read it send back.
# The block's input $x_0$ is read by every layer, and gets its slice $G[:, 0:C_0]$ plus a term from each
# of them. Switch every layer off (zero convolution weights) and only the direct slices are left:
# exactly the identity path of a ResNet, but per slice.

# %%
G_block = rng.standard_normal(block_out.shape)
x_t = minires.tensor(x0, requires_grad=True)
new_maps = []
out = dense_block_by_hand(x_t, keep=new_maps)
for h in new_maps:
    h.retain_grad()                        # keep dL/dh_l, which autograd would otherwise not store
out.backward(G_block)

print(f"{'map':>5s} {'||direct slice of G||':>22s} {'||dL/dh_l|| (all of it)':>24s}")
for l, h in enumerate(new_maps):
    direct = G_block[:, C0 + l * k:C0 + (l + 1) * k]
    print(f"  h_{l} {np.linalg.norm(direct):22.3f} {np.linalg.norm(h.grad.numpy()):24.3f}")
print(f"  x_0 {np.linalg.norm(G_block[:, :C0]):22.3f} {np.linalg.norm(x_t.grad.numpy()):24.3f}")

saved = [conv.weight.data.copy() for _, conv in hand_layers]
for _, conv in hand_layers:
    conv.weight.data = 0 * conv.weight.data
x_off = minires.tensor(x0, requires_grad=True)
dense_block_by_hand(x_off).backward(G_block)
for (_, conv), weight in zip(hand_layers, saved):
    conv.weight.data = weight                                  # put the layers back
print("every layer off: dL/dx_0 == G[:, :C0] exactly:", np.array_equal(x_off.grad.numpy(), G_block[:, :C0]))

# %% [markdown]
# The last map, $h_{L-1}$, is read by no later layer, so its gradient is exactly its slice of $G$; the
# earlier ones get more, because more layers read them. No map's gradient passes through a product of
# Jacobians to reach it: there is always the direct slice.
#
# ### The same block from `DenseLayer`
#
# minires' `DenseLayer(in_channels, growth_rate)` is one step of this: $y = [x, H(x)]$ with
# $H$ = `layer.branch` (BN `norm1`, ReLU, convolution `conv1`). A stack of them, each $k$ channels wider
# than the one before, is the dense block: $[x_0, h_0] \to [x_0, h_0, h_1] \to \cdots$. We copy our
# weights into one and compare.

# %%
dense_layers = nn.Sequential(*[DenseLayer(C0 + l * k, k).double() for l in range(L_hand)])
for layer, (bn, conv) in zip(dense_layers, hand_layers):
    layer.norm1.weight.data, layer.norm1.bias.data = bn.weight.data.copy(), bn.bias.data.copy()
    layer.conv1.weight.data = conv.weight.data.copy()
print(dense_layers[1])
with minires.no_grad():
    print("DenseLayer stack vs by hand, max difference:",
          max_diff(dense_layers(minires.tensor(x0)).numpy(), dense_block_by_hand(minires.tensor(x0)).numpy()))

# %% [markdown]
# ### The model
#
# `DenseNet(depth, growth_rate, bottleneck=False, compression=1.0, ...)` is the CIFAR network of the
# paper: a 3x3 convolution (16 channels), three dense blocks with a **transition** between them
# (BN-ReLU-conv1x1, then 2x2 average pooling: it halves the resolution, and with `compression` < 1 the
# channels too), and a head of BN, ReLU, global average pooling and the classifier. With `depth` = $3n + 4$
# each block has $n$ layers. `DenseNet-BC` adds a **bottleneck** (a 1x1 convolution to $4k$ maps before
# the 3x3 one, so depth = $6n + 4$) and compression 0.5. As in every minires model, `model.blocks` is a
# flat list: the dense layers and transitions, in order.

# %%
small = DenseNet(13, growth_rate=4, num_classes=10, in_channels=1)     # 3 layers per block
print("stem:", small.stem)
for i, block in enumerate(small.blocks):
    print(f"blocks[{i:2d}]: {type(block).__name__:10s} {block.in_channels:3d} -> {block.out_channels:3d} channels")
print("head:", small.head)
with minires.no_grad():
    print("output:", small(minires.tensor(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))).shape)

# %% [markdown]
# The paper's parameter counts (Table 2: DenseNet $L = 40$, $k = 12$: 1.0M; DenseNet-BC $L = 100$,
# $k = 12$: 0.8M) next to the ResNets of tutorial 6:

# %%
for name, build in [("DenseNet-40 (k=12)", densenet40_k12), ("DenseNet-BC-100 (k=12)", densenet_bc100_k12),
                    ("ResNet-56", resnet56), ("ResNet-110", resnet110)]:
    model = build()
    convolutions = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    print(f"{name:24s} {model.num_parameters():>10,d} parameters, {convolutions:3d} convolutions")

# %% [markdown]
# DenseNet-BC-100 has fewer parameters than ResNet-56 with almost twice as many convolutions: each layer
# adds only $k = 12$ maps, because it can read all the others instead of recomputing them.
#
# ## 3. The gradient of a DenseNet against a plain network
#
# `gradient_norms` (tutorial 6) measures $\lVert\partial L/\partial x_l\rVert$ at the input of every
# "block" of a network. Its `kinds` are `plain`, `resnet`, `highway` and `densenet`; depths are those of
# the CIFAR ResNets, $6n + 2$, and the `densenet` of depth $6n + 2$ has $2n$ dense layers per block: as
# many 3x3 convolutions as the plain net (its depth, counted the paper's way, is $6n + 4$), with growth
# rate = `width`. Its blocks are its dense layers and transitions, so its curve has more points.

# %%
started = time.perf_counter()
if SMOKE:
    norms = gradient_norms("tiny", kinds=("plain", "resnet", "densenet"), seeds=1, progress=False)
else:
    norms = gradient_norms("laptop", kinds=("plain", "resnet", "densenet"), depths=(20, 56), iterations=10,
                           record_every=5, seeds=1, progress=False)
print(f"took {time.perf_counter() - started:.0f} s")
print(f"{'network':>12s}  first/last at init  after {norms['settings']['iterations']} steps")
for name, summary in norms["summary"].items():
    print(f"{name:>12s}  {summary['block_input_first_to_last_at_init']:18.3g}  "
          f"{summary['block_input_first_to_last_at_end']:14.3g}")

# %%
depths = sorted(norms["settings"]["depths"])
fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
for name, record in norms["networks"].items():
    at_init = np.array(record["block_input_norms"][0])
    style = {"plain": "--", "resnet": "-", "densenet": "-."}[record["kind"]]
    ax.plot(np.linspace(0, 1, len(at_init)), at_init / at_init[-1], style, color=f"C{depths.index(record['depth'])}",
            label=name)
ax.set(yscale="log", xlabel="relative position of the block (0: first, 1: output)",
       ylabel="||dL/dx_l|| / ||dL/dx_L||", title="At initialisation (dashed: plain, dash-dotted: DenseNet)")
ax.axhline(1.0, color="gray", lw=0.8)
ax.grid(alpha=0.3, which="both")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The plain network's ratio grows geometrically with depth, as in tutorial 6. The DenseNet's stays
# within a small factor of 1 at every depth: even the first layer's maps reach the end of their dense
# block unchanged, and each transition is only one BN-ReLU-conv1x1 deep. (The two networks do not have
# the same widths, so this is a comparison of shapes, not of absolute sizes.)
#
# ## 4. Memory: the square of the depth
#
# Training keeps, until backward reaches it, everything the backward of each op needs. In a dense layer
# (`norm1`, ReLU, `conv1`) with an input of $c_l = C_0 + lk$ channels, that is three maps as wide as the
# input (the concatenation $x_l$, which batch norm needs; batch norm's output, the ReLU's input; the
# ReLU's output, which the convolution needs) plus the $k$ new maps. For $N$ images of $H \times W$ in
# float32 (4 bytes), a block of $L$ layers keeps
#
# $$ 4NHW\Bigl(3\sum_{l=0}^{L-1}(C_0 + lk) + Lk\Bigr) = 4NHW\Bigl(3LC_0 + 3k\,\tfrac{L(L-1)}{2} + Lk\Bigr)
#    \text{ bytes}: $$
#
# **quadratic** in $L$, where a ResNet stage of $L$ blocks of constant width is linear. The wide
# concatenations are the problem, and they are cheap to recompute. `DenseLayer(...,
# memory_efficient=True)` (Pleiss et al., 2017) does two things: all the concatenations of a block share
# one buffer, so $x_{l+1}$ is $x_l$ plus $k$ channels written after it (a view, not a copy), and the
# BN-ReLU-conv of each layer runs under `checkpoint`, which keeps only its input and recomputes BN and
# ReLU in backward. What is kept is then the block's input, the buffer and the new maps,
# $4NHW\,\bigl(C_0 + (C_0 + Lk) + Lk\bigr)$: linear in $L$.
#
# `graph_bytes(output)` (`minires/engine/checkpoint.py`) walks the graph behind a tensor and adds up
# the bytes of every array it keeps alive (each block of memory once; parameters and the input images
# not counted). That is our measurement. The block's input comes out of a convolution, as it does in a
# network, so that it is one of the kept arrays (and has the memory layout a convolution gives it).

# %%
def dense_block(C_in, growth, layers, memory_efficient=False):
    minires.manual_seed(0)
    return nn.Sequential(*[DenseLayer(C_in + l * growth, growth, memory_efficient=memory_efficient,
                                      block_width=C_in + layers * growth) for l in range(layers)])


def kept_bytes(block, x):
    """The bytes the graph of block(x_0) keeps for backward, where x_0 comes out of a 1x1 convolution of x
    (in a network the block's input is the output of a layer, and part of the graph too)."""
    C_in = x.shape[1]
    x0 = nn.Conv2d(C_in, C_in, 1, bias=False)(minires.tensor(x))
    return graph_bytes(block(x0))


def formula_bytes(N, H, W, C_in, growth, layers):
    return 4 * N * H * W * (3 * sum(C_in + l * growth for l in range(layers)) + layers * growth)


N_mem, C_mem, k_mem, H_mem = (2, 4, 4, 8) if SMOKE else (8, 16, 12, 16)
x_mem = rng.standard_normal((N_mem, C_mem, H_mem, H_mem)).astype(np.float32)
layer_counts = list(range(2, 6 if SMOKE else 17))   # (a one-layer block has no buffer to share)
kept = {False: [], True: []}
for layers in layer_counts:
    for efficient in (False, True):
        kept[efficient].append(kept_bytes(dense_block(C_mem, k_mem, layers, efficient), x_mem))
predicted = [formula_bytes(N_mem, H_mem, H_mem, C_mem, k_mem, layers) for layers in layer_counts]
predicted_efficient = [4 * N_mem * H_mem * H_mem * (2 * C_mem + 2 * layers * k_mem) for layers in layer_counts]
print(f"{'layers':>6s} {'kept (MB)':>10s} {'formula':>9s} {'memory-efficient':>17s} {'formula':>9s}")
for row in zip(layer_counts, kept[False], predicted, kept[True], predicted_efficient):
    print(f"{row[0]:6d} {row[1] / 1e6:10.3f} {row[2] / 1e6:9.3f} {row[3] / 1e6:17.3f} {row[4] / 1e6:9.3f}")
for name, formulas, measured in [("standard", predicted, kept[False]),
                                 ("memory-efficient", predicted_efficient, kept[True])]:
    print(f"{name}: formula vs measured, largest relative difference "
          f"{max(abs(p - m) / m for p, m in zip(formulas, measured)):.1e}")

# %%
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.plot(layer_counts, np.array(kept[False]) / 1e6, "o", label="kept by the graph (graph_bytes)")
ax.plot(layer_counts, np.array(predicted) / 1e6, "-", color="C0", lw=0.8, label="formula: 3 sum c_l + L k maps")
ax.plot(layer_counts, np.array(kept[True]) / 1e6, "s", label="memory_efficient=True")
ax.plot(layer_counts, np.array(predicted_efficient) / 1e6, "-", color="C1", lw=0.8, label="formula: 2 C0 + 2 L k maps")
ax.set(xlabel="layers in the dense block, L", ylabel="MB kept for backward",
       title=f"A dense block: N={N_mem}, C0={C_mem}, k={k_mem}, {H_mem}x{H_mem}")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# The measurement matches the formula to within the few bytes of batch norm's per-channel statistics
# (two numbers per input channel and layer, whatever the image size).
# The memory-efficient block computes the same numbers (it only stores and recomputes differently):

# %%
G_mem = rng.standard_normal((N_mem, C_mem + layer_counts[-1] * k_mem, H_mem, H_mem)).astype(np.float32)
results = []
for efficient in (False, True):
    x_req = minires.tensor(x_mem, requires_grad=True)
    block = dense_block(C_mem, k_mem, layer_counts[-1], efficient)
    y_mem = block(x_req)
    y_mem.backward(G_mem)
    results.append((y_mem.numpy(), x_req.grad.numpy(), block[0].conv1.weight.grad.numpy()))
print("memory-efficient vs standard: output", max_diff(results[0][0], results[1][0]),
      "| dL/dx_0", max_diff(results[0][1], results[1][1]),
      "| dL/dW of the first conv", max_diff(results[0][2], results[1][2]))

# %% [markdown]
# Recomputing costs time: one more BN-ReLU-conv per layer in backward. For the memory of whole training
# steps, measured as the process's resident memory in a fresh process per model, run
# `python benchmarks/bench_memory.py`.
#
# ## 5. Squeeze-and-Excitation
#
# A convolution sees a 3x3 window; it cannot tell whether a feature is useful *for this image*. An SE
# module asks the whole image, channel by channel:
#
# $$ z_c = \frac{1}{HW}\sum_{h,w} u_{c,h,w} \quad\text{(squeeze)}, \qquad
#    s = \sigma\bigl(W_2\,\mathrm{ReLU}(W_1 z + b_1) + b_2\bigr) \quad\text{(excitation)}, \qquad
#    y_{c,h,w} = s_c\, u_{c,h,w} \quad\text{(scale)}, $$
#
# with $W_1$ of shape $(C/r) \times C$ and $W_2$ of shape $C \times (C/r)$, $r$ the **reduction** (16 in
# the paper), so the module costs $2C^2/r + C/r + C$ parameters. In an SE-ResNet it sits at the end of
# every branch: $\mathrm{ReLU}(\mathrm{SE}(F(x)) + x)$. The shortcut stays the identity; SE is a gate on
# $F$ alone, which tutorial 9's derivation says leaves the shortcut's factor of 1 alone.
#
# **Its gradient.** With $G = \partial L/\partial y$, the scale $y = u \odot s$ sends
#
# $$ \frac{\partial L}{\partial s_c} = \sum_{h,w} G_{c,h,w}\, u_{c,h,w}, \qquad
#    \frac{\partial L}{\partial u_{c,h,w}} = G_{c,h,w}\, s_c + \frac{1}{HW}\frac{\partial L}{\partial z_c}, $$
#
# the second term because $u$ also made $z$, and so $s$. Back through the excitation:
# $\partial L/\partial a = \partial L/\partial s \odot s(1 - s)$ for the sigmoid's input $a$, then
# $\partial L/\partial r = (\partial L/\partial a) W_2$, the ReLU's mask, and
# $\partial L/\partial z = (\partial L/\partial r \odot [W_1 z + b_1 > 0])\,W_1$.
# The scale step is `F.channel_scale(u, s)` ($= u \cdot s[:, :, \text{None}, \text{None}]$), an op with
# these two gradients written out.
#
# Here is all of it in NumPy, checked against `SqueezeExcitation` in float64:

# %%
def se_by_hand(se, u, G):
    """The SE module's output for input u, dL/du for the upstream gradient G, and s, in NumPy."""
    W1, b1, W2, b2 = se.fc1.weight.data, se.fc1.bias.data, se.fc2.weight.data, se.fc2.bias.data
    Hu, Wu = u.shape[2:]
    z = u.mean(axis=(2, 3))                                   # squeeze: (N, C)
    pre = z @ W1.T + b1                                       # (N, C / r)
    r = np.maximum(pre, 0)
    s = 1 / (1 + np.exp(-(r @ W2.T + b2)))                    # excitation: (N, C), each in (0, 1)
    y = u * s[:, :, None, None]                               # scale
    grad_s = (G * u).sum(axis=(2, 3))                         # dL/ds
    grad_a = grad_s * s * (1 - s)                             # through the sigmoid
    grad_z = ((grad_a @ W2) * (pre > 0)) @ W1                 # through fc2, the ReLU, fc1
    grad_u = G * s[:, :, None, None] + grad_z[:, :, None, None] / (Hu * Wu)
    return y, grad_u, s


minires.manual_seed(0)
se = SqueezeExcitation(8, reduction=4).double()
print(se, "|", se.num_parameters(), "parameters = 2 C^2 / r + C / r + C =", 2 * 8 * 8 // 4 + 8 // 4 + 8)
u = rng.standard_normal((3, 8, 5, 5))
G_se = rng.standard_normal(u.shape)
u_t = minires.tensor(u, requires_grad=True)
y_se = se(u_t)
y_se.backward(G_se)
y_hand, grad_hand, s_hand = se_by_hand(se, u, G_se)
print("output: by hand vs SqueezeExcitation, max difference", max_diff(y_hand, y_se.numpy()))
print("dL/du:  by hand vs autograd,          max difference", max_diff(grad_hand, u_t.grad.numpy()))
print("dL/du without the term through s:     max difference",
      max_diff(G_se * s_hand[:, :, None, None], u_t.grad.numpy()))

# %% [markdown]
# SE is cheap in parameters (and in multiply-adds: two tiny fully connected layers per block):

# %%
for name, build in [("ResNet-20", resnet20), ("SE-ResNet-20", se_resnet20), ("ResNet-56", resnet56),
                    ("SE-ResNet-56", se_resnet56)]:
    print(f"{name:13s} {build().num_parameters():>9,d} parameters")

# %% [markdown]
# ### What the excitation learns
#
# Hu et al. found that in a trained network the excitations of the early blocks hardly depend on the
# class of the image, while those of the later blocks become class-specific. We train a small SE-ResNet
# on MNIST for a couple of hundred steps and look: for every block, the excitation $s$ of 1,000
# held-out images, averaged per class. If $s$ depends on the class, the class averages differ by more
# than the images of one class do.

# %%
ITERATIONS = 5 if SMOKE else 200
train_set, test_set = MNISTSample(train=True), MNISTSample(train=False)
normalize = Normalize(*mean_std(train_set))
loader = DataLoader(train_set, batch_size=32, shuffle=True, transform=normalize, seed=0)
minires.manual_seed(0)
se_net = SECifarResNet(8 if SMOKE else 14, reduction=4, width=4 if SMOKE else 8, num_classes=10, in_channels=1)
optimizer = optim.SGD(se_net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
started = time.perf_counter()
se_net.train()
for step, (images, labels) in enumerate(loader, start=1):
    loss = F.cross_entropy(se_net(minires.tensor(images)), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step == ITERATIONS:
        break
print(f"{ITERATIONS} steps in {time.perf_counter() - started:.0f} s, last loss {loss.item():.3f}")


def excitation(se, u):
    """s = sigmoid(fc2(relu(fc1(avgpool(u))))): the weights SE gives u's channels, (N, C)."""
    return F.sigmoid(se.fc2(F.relu(se.fc1(F.global_avg_pool2d(u)))))


se_inputs = {}                                                    # block index -> the input of its SE
hooks = [block.se.register_forward_hook(lambda module, args, output, l=l: se_inputs.__setitem__(l, args[0]))
         for l, block in enumerate(se_net.blocks)]
n_test = 200 if SMOKE else 1000
test_images = normalize(test_set.images[:n_test].astype(np.float32) / 255)
test_labels = test_set.labels[:n_test]
se_net.eval()
with minires.no_grad():
    accuracy = float((se_net(minires.tensor(test_images)).numpy().argmax(axis=1) == test_labels).mean())
    excitations = [excitation(block.se, se_inputs[l]).numpy() for l, block in enumerate(se_net.blocks)]
for hook in hooks:
    hook.remove()
print(f"held-out accuracy {accuracy:.3f}")

classes = [c for c in range(10) if np.any(test_labels == c)]
class_means = [np.array([s[test_labels == c].mean(axis=0) for c in classes]) for s in excitations]
between = [float(m.std(axis=0).mean()) for m in class_means]          # spread of the class averages
within = [float(np.mean([s[test_labels == c].std(axis=0).mean() for c in classes])) for s in excitations]
print(f"{'block':>5s} {'channels':>8s} {'mean s':>7s} {'between classes':>16s} {'within a class':>15s}")
for l, s in enumerate(excitations):
    print(f"{l:5d} {s.shape[1]:8d} {s.mean():7.3f} {between[l]:16.3f} {within[l]:15.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained", width_ratios=(1, 1.6))
blocks_index = np.arange(len(excitations))
axes[0].bar(blocks_index - 0.2, between, 0.4, label="std of the class averages")
axes[0].bar(blocks_index + 0.2, within, 0.4, label="std within a class")
axes[0].set(xlabel="block", ylabel="std of s (mean over channels)", title="How much s depends on the class")
axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
axes[0].legend(fontsize=8)
deviation = class_means[-1] - class_means[-1].mean(axis=0)             # each class against the channel's mean
limit = float(np.abs(deviation).max()) or 1.0
picture = axes[1].imshow(deviation, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit)
axes[1].set(xlabel="channel", ylabel="class", yticks=range(len(classes)), yticklabels=classes,
            title="Last block: each class's average s, minus the channel's average")
fig.colorbar(picture, ax=axes[1])
plt.show()

# %% [markdown]
# In our run, after 200 steps, the excitations of the early blocks stay close to one value for every
# image (a block whose bottleneck ReLU units are all inactive even gives every image the very same $s$),
# and the last block's class averages differ clearly, by about twice the spread within a class: the
# pattern the paper describes, in a much smaller network trained very briefly. The heat map shows the
# last block weighting its channels differently for each digit: red where a class gets more of a
# channel than the average image, blue where it gets less.
#
# ## Summary
#
# * A concatenation's backward is a split: each input gets its slice of the output gradient, unchanged.
#   In a dense block every map is part of the block's output, so it gets its slice directly, plus what
#   the later layers that read it send back.
# * A DenseNet's gradient stays within a small factor of 1 from the last layer to the first, where a
#   plain network's grows geometrically; with few maps per layer it needs few parameters.
# * The price is memory: a dense block keeps about $3\sum_l (C_0 + lk) + Lk$ maps for backward, quadratic
#   in the number of layers. Sharing one buffer for the concatenations and recomputing BN-ReLU makes it
#   linear, for the same numbers.
# * SE re-weights the branch's channels with $s = \sigma(W_2\,\mathrm{ReLU}(W_1\,\mathrm{avgpool}(u)))$ and
#   leaves the shortcut alone; its gradient reaches $u$ both through the scale and through $s$.
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
# ### Exercise 1: one input, used twice
#
# `y = minires.cat([a, b, a], dim=1)` uses `a` twice. Write `grad_of_a(G, Ca, Cb)` that returns
# $\partial L/\partial a$ for the upstream gradient `G` (a NumPy array of `y`'s shape), without autograd.

# %%
# One possible answer: each use gets its own slice, and the gradients of two uses add up.
def grad_of_a(G, Ca, Cb):
    return G[:, :Ca] + G[:, Ca + Cb:]


# %%
a = minires.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
b = minires.tensor(rng.standard_normal((2, 2, 2, 2)), requires_grad=True)
y_twice = minires.cat([a, b, a], dim=1)
G_twice = rng.standard_normal(y_twice.shape)
y_twice.backward(G_twice)
check("Exercise 1: dL/da for a used twice",
      lambda: np.allclose(answered(grad_of_a(G_twice, 3, 2)), a.grad.numpy()),
      "a's channels are 0:Ca and Ca+Cb:end of y; gradients of two uses are summed")

# %% [markdown]
# ### Exercise 2: the memory of a dense block, by formula
#
# Write `dense_block_bytes(N, H, W, C_in, growth, layers)`, the bytes the graph of a block of `layers`
# `DenseLayer`s (float32, not memory-efficient) keeps for backward, from what section 4 says each layer
# keeps (leave out batch norm's per-channel statistics: the check allows 1% for them). The check measures
# two other blocks with `graph_bytes`.

# %%
# One possible answer: layer l reads c_l = C_in + l * growth channels and keeps three maps that wide
# (its input, batch norm's output, the ReLU's output) plus its `growth` new maps; 4 bytes per number.
def dense_block_bytes(N, H, W, C_in, growth, layers):
    per_image_pixel = sum(3 * (C_in + l * growth) + growth for l in range(layers))
    return 4 * N * H * W * per_image_pixel


# %%
def memory_formula_is_right():
    for N_, C_, k_, H_, L_ in [(2, 3, 2, 8, 3), (1, 5, 4, 10, 6)]:
        x_ = rng.standard_normal((N_, C_, H_, H_)).astype(np.float32)
        measured_bytes = kept_bytes(dense_block(C_, k_, L_), x_)
        predicted_bytes = answered(dense_block_bytes(N_, H_, H_, C_, k_, L_))
        print(f"N={N_} C0={C_} k={k_} {H_}x{H_} L={L_}: predicted {predicted_bytes} bytes, measured {measured_bytes}")
        if abs(predicted_bytes - measured_bytes) > 0.01 * measured_bytes:   # BN's statistics: a few more bytes
            return False
    return True


check("Exercise 2: the formula matches graph_bytes", memory_formula_is_right,
      "sum over the layers l = 0 ... L-1 of 3 (C_in + l k) + k maps, each N H W float32 numbers")

# %% [markdown]
# ### Exercise 3: the gradient of the excitation
#
# For $y = $ `F.channel_scale(u, s)`, write `grad_of_scale(u, G)` returning $\partial L/\partial s$, of shape
# $(N, C)$, for the upstream gradient `G`. The check compares it with autograd, for an `s` that is a leaf.

# %%
# One possible answer: s[n, c] multiplies every pixel of channel c of image n.
def grad_of_scale(u, G):
    return (G * u).sum(axis=(2, 3))


# %%
u3 = rng.standard_normal((2, 4, 3, 3))
s3 = minires.tensor(rng.uniform(0.1, 0.9, (2, 4)), requires_grad=True)
G3 = rng.standard_normal(u3.shape)
F.channel_scale(minires.tensor(u3), s3).backward(G3)
check("Exercise 3: dL/ds of the channel scale",
      lambda: np.allclose(answered(grad_of_scale(u3, G3)), s3.grad.numpy()),
      "y[n,c,h,w] = u[n,c,h,w] s[n,c]: sum G * u over the pixels")

# %% [markdown]
# ### Exercise 4: the parameters of an SE module
#
# Write `se_parameters(C, r)`: the number of parameters of `SqueezeExcitation(C, reduction=r)`. Read its
# `__init__` first: the hidden width is not always $C/r$.

# %%
# One possible answer: fc1 (C -> hidden) and fc2 (hidden -> C), each with a weight and a bias.
def se_parameters(C, r):
    hidden = max(1, C // r)
    return C * hidden + hidden + hidden * C + C


# %%
def se_count_is_right():
    cases = [(64, 16), (16, 16), (8, 16), (30, 4)]
    return all(answered(se_parameters(C, r)) == SqueezeExcitation(C, r).num_parameters() for C, r in cases)


check("Exercise 4: SE parameter counts", se_count_is_right,
      "hidden = max(1, C // r); two Linear layers with biases")
