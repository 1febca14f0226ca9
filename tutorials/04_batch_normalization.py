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
# # 4. Batch normalization, forward and backward
#
# Every convolution in a ResNet is followed by **batch normalization** (Ioffe &
# Szegedy, 2015). It rescales each channel to zero mean and unit variance over
# the current batch, then lets the network learn the scale and shift it
# actually wants. Deep plain networks are hard to train without it, and the
# ResNet paper uses it after every convolution.
#
# In this tutorial you will:
#
# 1. write the forward pass and compare it with minires;
# 2. see the difference between **training** mode (batch statistics) and
#    **evaluation** mode (running averages), and how the running averages are kept;
# 3. **derive the backward pass** by hand, implement it, and check it;
# 4. watch batch norm rescue a sigmoid network on MNIST.
#
# `MINIRES_SMOKE=1` makes every size tiny.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import minires
import minires.engine.autograd
import minires.functional as F
from minires import Function, nn
from minires.data import MNISTSample
from minires.optim import SGD

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
rng = np.random.default_rng(0)
minires.manual_seed(0)
print("smoke run" if SMOKE else "full run")

# %% [markdown]
# ## 1. The forward pass
#
# For an input of shape (N, C, H, W), batch norm treats each channel $c$
# separately and pools the $m = N H W$ values it has in the batch:
#
# $$ \mu = \frac1m \sum_i x_i, \qquad \sigma^2 = \frac1m \sum_i (x_i - \mu)^2, \qquad
#    \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y_i = \gamma\, \hat x_i + \beta. $$
#
# $\epsilon = 10^{-5}$ keeps the division safe. $\gamma$ and $\beta$ (one per
# channel) are learned; with $\gamma = \sqrt{\sigma^2+\epsilon}$, $\beta = \mu$ the
# layer could even undo itself, so normalizing costs the network no expressive power.

# %%
AXES, SHAPE = (0, 2, 3), (1, -1, 1, 1)  # reduce over batch and pixels; per-channel values broadcast


def bn_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=AXES)
    var = x.var(axis=AXES)  # the biased variance, 1/m
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean.reshape(SHAPE)) * inv_std.reshape(SHAPE)
    y = gamma.reshape(SHAPE) * x_hat + beta.reshape(SHAPE)
    return y, (x_hat, inv_std, gamma)  # what backward will need


C = 3
x = rng.standard_normal((8, C, 5, 5)) * np.array([0.5, 1.0, 3.0]).reshape(SHAPE) + np.array([-2, 0, 4]).reshape(SHAPE)
gamma, beta = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
y, cache = bn_forward(x, gamma, beta)
y_minires = F.batch_norm(minires.tensor(x), None, None, minires.tensor(gamma), minires.tensor(beta), training=True)
print("same as F.batch_norm:", np.allclose(y, y_minires.numpy()))
print("per-channel mean of x_hat:", cache[0].mean(axis=AXES).round(12), " variance:", cache[0].var(axis=AXES).round(6))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True, layout="constrained")
for c in range(C):
    axes[0].hist(x[:, c].ravel(), bins=30, alpha=0.6, label=f"channel {c}")
    axes[1].hist(cache[0][:, c].ravel(), bins=30, alpha=0.6, label=f"channel {c}")
axes[0].set_title("x: each channel has its own mean and spread")
axes[1].set_title("x_hat: every channel at mean 0, variance 1")
axes[0].set_xlabel("value of x")
axes[1].set_xlabel("value of x_hat")
for ax in axes:
    ax.set_ylabel("count")
axes[0].legend()
plt.show()

# %% [markdown]
# ## 2. Training mode, evaluation mode, running statistics
#
# In training, $\mu$ and $\sigma^2$ come from the batch, so one image's output
# depends on the other images in its batch. At test time we want a
# deterministic function of one image, so batch norm uses **running averages**
# collected during training instead:
#
# $$ \mu_{run} \leftarrow (1 - \alpha)\,\mu_{run} + \alpha\,\mu, \qquad
#    \sigma^2_{run} \leftarrow (1 - \alpha)\,\sigma^2_{run} + \alpha\,\frac{m}{m-1}\,\sigma^2 $$
#
# with momentum $\alpha = 0.1$ (PyTorch's convention, which minires follows; the
# $\frac{m}{m-1}$ makes the variance estimate unbiased). They start at 0 and 1.
# `nn.BatchNorm2d` keeps them as **buffers**: saved in the `state_dict`, not learned.
#
# Feed a layer batches whose channels have means (-1, 0, 3) and variances
# (0.25, 1, 4), and watch the running averages find them:

# %%
true_mean, true_std = np.array([-1.0, 0.0, 3.0]), np.array([0.5, 1.0, 2.0])
layer = nn.BatchNorm2d(3)
print("buffers:", [name for name, _ in layer.named_buffers()])
STEPS = 15 if SMOKE else 60
history_mean, history_var = [], []
for step in range(STEPS):
    batch = rng.standard_normal((16, 3, 4, 4)) * true_std.reshape(SHAPE) + true_mean.reshape(SHAPE)
    layer(minires.tensor(batch.astype(np.float32)))
    history_mean.append(layer.running_mean.numpy().copy())
    history_var.append(layer.running_var.numpy().copy())
print(f"after {STEPS} batches: running_mean {history_mean[-1].round(3)}, running_var {history_var[-1].round(3)}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
seen = np.arange(1, STEPS + 1)   # after the first batch, after the second, ...
for c in range(3):
    axes[0].plot(seen, [h[c] for h in history_mean], f"C{c}")
    axes[0].axhline(true_mean[c], color=f"C{c}", ls=":")
    axes[1].plot(seen, [h[c] for h in history_var], f"C{c}", label=f"channel {c}")
    axes[1].axhline(true_std[c] ** 2, color=f"C{c}", ls=":")
axes[0].set_title("running_mean (dotted: true mean)")
axes[1].set_title("running_var (dotted: true variance)")
axes[0].set_ylabel("running_mean")
axes[1].set_ylabel("running_var")
axes[1].legend()
for ax in axes:
    ax.set_xlabel("training batches seen")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # a count of batches: no 2.5
plt.show()

# %% [markdown]
# The averages forget old batches geometrically: after $k$ batches the
# starting value still has weight $0.9^k$ (35% after 10 batches, 0.2% after 60).
#
# Now the practical difference. Put the same image into two different batches:

# %%
image = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
batch_a = np.concatenate([image, rng.standard_normal((7, 3, 4, 4)).astype(np.float32)])
batch_b = np.concatenate([image, 5 + rng.standard_normal((7, 3, 4, 4)).astype(np.float32)])
for mode in ("train", "eval"):
    getattr(layer, mode)()
    with minires.no_grad():
        out_a = layer(minires.tensor(batch_a)).numpy()[0]
        out_b = layer(minires.tensor(batch_b)).numpy()[0]
    print(f"{mode:5s} mode: the image's output differs between the batches by up to {np.abs(out_a - out_b).max():.3f}")
layer.train()

# %% [markdown]
# In training mode the answer depends on the batch-mates; in evaluation mode it
# does not. Forgetting `model.eval()` before testing is a classic bug: the
# accuracy then depends on how the test set is batched.

# %% [markdown]
# ## 3. Deriving the backward pass
#
# Take one channel and drop the channel index. We receive $g_i = \partial L/\partial y_i$
# and want $\partial L/\partial \gamma$, $\partial L/\partial \beta$, $\partial L/\partial x_i$.
#
# **$\gamma$ and $\beta$** touch every $y_i$ directly:
#
# $$ \frac{\partial L}{\partial \beta} = \sum_i g_i, \qquad \frac{\partial L}{\partial \gamma} = \sum_i g_i \hat x_i . $$
#
# **$x$** is harder, because $x_i$ reaches the loss three ways: through its own
# $\hat x_i$, through the mean $\mu$ and through the variance $\sigma^2$ (which
# every $\hat x_j$ uses). Write $s = (\sigma^2 + \epsilon)^{-1/2}$ and start from
# $\partial L/\partial \hat x_j = \gamma g_j$. The pieces:
#
# $$ \frac{\partial \mu}{\partial x_i} = \frac1m, \qquad
#    \frac{\partial \sigma^2}{\partial x_i} = \frac2m (x_i - \mu)
#    \quad\text{(the path through } \mu \text{ vanishes because } \textstyle\sum_j (x_j - \mu) = 0), $$
#
# $$ \frac{\partial s}{\partial x_i} = -\tfrac12 s^3 \frac{\partial \sigma^2}{\partial x_i} = -\frac{s^2}{m}\,\hat x_i, $$
#
# and, from $\hat x_j = (x_j - \mu)\, s$ by the product rule,
#
# $$ \frac{\partial \hat x_j}{\partial x_i} = s\left(\delta_{ij} - \frac1m\right) + (x_j - \mu)\frac{\partial s}{\partial x_i}
#    = s\left(\delta_{ij} - \frac1m - \frac{\hat x_j \hat x_i}{m}\right). $$
#
# Sum over $j$ with weights $\gamma g_j$:
#
# $$ \boxed{\frac{\partial L}{\partial x_i} = \gamma s \left( g_i - \frac1m \sum_j g_j - \hat x_i \, \frac1m \sum_j g_j \hat x_j \right)
#    = \gamma s \left( g_i - \frac{1}{m}\frac{\partial L}{\partial \beta} - \hat x_i \frac{1}{m}\frac{\partial L}{\partial \gamma} \right)} $$
#
# Read it as: take the upstream gradient, remove its mean, remove its component
# along $\hat x$, and scale. That makes sense. Adding a constant to $x$, or
# scaling $x$, does not change $\hat x$ at all, so the gradient must have no
# component in those two directions: $\sum_i \partial L/\partial x_i = 0$ and
# $\sum_i \hat x_i\, \partial L/\partial x_i = 0$. (The second holds exactly only for
# $\epsilon = 0$; with $\epsilon = 10^{-5}$ scaling $x$ changes $\hat x$ a tiny bit.)
#
# In **evaluation** mode $\mu$ and $\sigma^2$ are constants (the running
# averages), only the first path remains, and $\partial L/\partial x_i = \gamma s\, g_i$.

# %%
def bn_backward(g, cache):
    x_hat, inv_std, gamma = cache
    m = g.size // g.shape[1]
    grad_beta = g.sum(axis=AXES)
    grad_gamma = (g * x_hat).sum(axis=AXES)
    grad_x = (gamma * inv_std).reshape(SHAPE) * (
        g - grad_beta.reshape(SHAPE) / m - x_hat * grad_gamma.reshape(SHAPE) / m)
    return grad_x, grad_gamma, grad_beta


G = rng.standard_normal(x.shape)
grad_x, grad_gamma, grad_beta = bn_backward(G, cache)

xt = minires.tensor(x, requires_grad=True)
gt = minires.tensor(gamma, requires_grad=True)
bt = minires.tensor(beta, requires_grad=True)
F.batch_norm(xt, None, None, gt, bt, training=True).backward(G)
print("matches minires: dx", np.allclose(grad_x, xt.grad), " dgamma", np.allclose(grad_gamma, gt.grad),
      " dbeta", np.allclose(grad_beta, bt.grad))
x_hat = cache[0]
print("sum of dL/dx per channel:", grad_x.sum(axis=AXES).round(12))
cosine = (x_hat * grad_x).sum(axis=AXES) / np.sqrt((x_hat ** 2).sum(axis=AXES) * (grad_x ** 2).sum(axis=AXES))
print("cosine between dL/dx and x_hat per channel:", cosine.round(6))

# %% [markdown]
# ### Checking it
#
# Wrap forward and backward in a minires `Function` and let `minires.gradcheck`
# compare with central differences (float64, random upstream gradient; tutorial 2
# explains why the randomness matters for exactly this layer).

# %%
class MyBatchNorm(Function):
    def forward(self, x, gamma, beta):
        y, self.cache = bn_forward(x, gamma, beta)
        return y

    def backward(self, grad):
        return bn_backward(grad, self.cache)


small = [minires.tensor(rng.standard_normal((4, 2, 3, 3)) * 2 + 1, requires_grad=True),
         minires.tensor(rng.uniform(0.5, 1.5, 2), requires_grad=True),
         minires.tensor(rng.standard_normal(2), requires_grad=True)]
print("my batch norm, training:", minires.gradcheck(lambda *t: MyBatchNorm()(*t), small))
running_mean, running_var = minires.tensor(np.array([0.3, -0.2])), minires.tensor(np.array([1.5, 0.7]))
print("F.batch_norm, evaluation:", minires.gradcheck(
    lambda x, g, b: F.batch_norm(x, running_mean, running_var, g, b, training=False), small))

# %% [markdown]
# ### Why write a backward at all?
#
# minires could differentiate batch norm built from its primitive operations
# (mean, subtract, multiply, power), and the gradient would be the same. But the
# graph would have a dozen nodes, each keeping its own intermediate arrays;
# the hand-derived formula is one node that keeps $\hat x$ and $s$.

# %%
def bn_from_primitives(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=AXES, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=AXES, keepdims=True)
    x_hat = centered * (var + eps) ** -0.5
    return x_hat * gamma.reshape(SHAPE) + beta.reshape(SHAPE)


size = (8, 16, 8, 8) if SMOKE else (64, 16, 32, 32)
xs = rng.standard_normal(size).astype(np.float32)
Gs = rng.standard_normal(size).astype(np.float32)
results = {}
for name, fn in (("hand-written backward", lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True)),
                 ("from primitives", bn_from_primitives)):
    times = []
    for _ in range(3 if SMOKE else 5):
        inputs = [minires.tensor(xs, requires_grad=True), minires.tensor(np.ones(16, np.float32), requires_grad=True),
                  minires.tensor(np.zeros(16, np.float32), requires_grad=True)]
        start = time.perf_counter()
        out = fn(*inputs)
        nodes = len(minires.engine.autograd.topological_order(out.grad_fn))
        out.backward(Gs)
        times.append(time.perf_counter() - start)
    results[name] = inputs[0].grad
    print(f"{name:22s} {nodes:2d} graph nodes   forward+backward {min(times) * 1000:6.1f} ms")
print("same gradient:", np.allclose(*results.values(), atol=1e-4))

# %% [markdown]
# ## 4. What batch norm buys: a sigmoid network on MNIST
#
# The original paper's first experiment: a network with three hidden layers of
# 100 **sigmoid** units on MNIST, trained by plain SGD, with and without batch
# norm before each sigmoid. Sigmoids saturate when their inputs drift far from
# zero, and gradients then vanish; batch norm keeps every unit's input centred.
# We use the MNIST sample bundled with minires (8,000 training and 2,000
# held-out images), batches of 60 as in the paper, and 2,000 steps instead of
# the paper's 50,000.

# %%
train_set, test_set = MNISTSample(train=True), MNISTSample(train=False)
X_train = train_set.images.reshape(len(train_set), -1).astype(np.float32) / 255
X_test = test_set.images.reshape(len(test_set), -1).astype(np.float32) / 255
y_train, y_test = train_set.labels, test_set.labels
if SMOKE:
    X_test, y_test = X_test[:200], y_test[:200]


def sigmoid(h):
    return 1.0 / (1.0 + (-h).exp())


class SigmoidMLP(nn.Module):
    def __init__(self, batch_norm):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(784, 100), nn.Linear(100, 100), nn.Linear(100, 100))
        self.norms = nn.Sequential(*[nn.BatchNorm1d(100) if batch_norm else nn.Identity() for _ in range(3)])
        self.head = nn.Linear(100, 10)

    def forward(self, x, record=None):
        for linear, norm in zip(self.hidden.children(), self.norms.children()):
            h = norm(linear(x))
            if record is not None:
                record.append(h.numpy())  # the sigmoid's input
            x = sigmoid(h)
        return self.head(x)


TRAIN_STEPS = 30 if SMOKE else 2000
EVAL_EVERY = 10 if SMOKE else 100
curves, unit_inputs = {}, {}
for use_bn in (False, True):
    name = "with batch norm" if use_bn else "without"
    minires.manual_seed(0)
    batches = np.random.default_rng(1)
    model = SigmoidMLP(use_bn)
    optimizer = SGD(model.parameters(), lr=0.5)
    curves[name], unit_inputs[name] = [], []
    start = time.perf_counter()
    for step in range(1, TRAIN_STEPS + 1):
        index = batches.integers(0, len(y_train), 60)
        loss = F.cross_entropy(model(minires.tensor(X_train[index])), y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % EVAL_EVERY == 0:
            model.eval()
            record = []
            with minires.no_grad():
                accuracy = (model(minires.tensor(X_test), record).numpy().argmax(axis=1) == y_test).mean()
            model.train()
            curves[name].append((step, accuracy))
            unit_inputs[name].append(np.percentile(record[-1][:, 0], [15, 50, 85]))
    print(f"{name:16s} held-out accuracy {accuracy:.1%} after {TRAIN_STEPS} steps "
          f"({time.perf_counter() - start:.1f} s)")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
for name, curve in curves.items():
    steps, accuracy = zip(*curve)
    axes[0].plot(steps, accuracy, "o-", label=name)
axes[0].set_xlabel("training step")
axes[0].set_ylabel("held-out accuracy")
axes[0].legend()
axes[0].set_title("three sigmoid layers, SGD lr 0.5")
for ax, (name, percentiles) in zip(axes[1:], unit_inputs.items()):
    percentiles = np.array(percentiles)
    ax.plot(steps, percentiles[:, 1], "k")
    ax.fill_between(steps, percentiles[:, 0], percentiles[:, 2], alpha=0.3)
    ax.set_title(f"input of one last-layer sigmoid,\n{name}")
    ax.set_ylabel("15th, 50th, 85th percentile")
for ax in axes:
    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
plt.show()

# %% [markdown]
# With the same learning rate and the same number of steps, the network with
# batch norm learns much faster. Without it, the distribution of a unit's input
# wanders during training; with it, the distribution stays put.

# %% [markdown]
# ## Exercises
#
# One possible answer is filled in for each, after a `# one possible answer`
# comment, so the file runs top to bottom. Replace it with your own and run the
# checking cell below it: ✓ when it is right, ✗ and a hint when it is not. While
# an answer is still `pass`, the check prints "not answered yet" and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells


# %% [markdown]
# ### Exercise 1: batch norm of a (N, C) input
#
# After a fully connected layer the input is (N, C): statistics run over the
# batch axis only. Write the training-mode forward.

# %%
def bn_forward_1d(x, gamma, beta, eps=1e-5):
    # one possible answer
    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return gamma * x_hat + beta


# %%
x1 = rng.standard_normal((10, 4)) * 3 + 2
g1, b1 = rng.uniform(0.5, 2, 4), rng.standard_normal(4)
expected = F.batch_norm(minires.tensor(x1), None, None, minires.tensor(g1), minires.tensor(b1), training=True).numpy()
check("Exercise 1: (N, C) batch norm forward", lambda: np.allclose(answered(bn_forward_1d(x1, g1, b1)), expected),
      "mean and (biased) variance over axis 0, per column")


# %% [markdown]
# ### Exercise 2: the running averages by hand
#
# Starting from running mean 0 and running variance 1, compute both after a
# layer in training mode has seen `batches` (a list of (N, C) arrays), with
# momentum 0.1. Remember the unbiased variance.

# %%
def running_statistics(batches, momentum=0.1):
    # one possible answer
    C = batches[0].shape[1]
    mean, var = np.zeros(C), np.ones(C)
    for batch in batches:
        m = batch.shape[0]
        mean = (1 - momentum) * mean + momentum * batch.mean(axis=0)
        var = (1 - momentum) * var + momentum * batch.var(axis=0) * m / (m - 1)
    return mean, var


# %%
seen = [rng.standard_normal((6, 3)) * 2 + 1 for _ in range(4)]
bn1 = nn.BatchNorm1d(3)
for batch in seen:
    bn1(minires.tensor(batch.astype(np.float32)))


def running_statistics_match():
    mine_mean, mine_var = answered(running_statistics(seen))
    return (np.allclose(mine_mean, bn1.running_mean.numpy(), atol=1e-5)
            and np.allclose(mine_var, bn1.running_var.numpy(), atol=1e-5))


check("Exercise 2: running_mean and running_var", running_statistics_match,
      "mix with weight 0.1 per batch; the variance uses m / (m - 1)")


# %% [markdown]
# ### Exercise 3: fold batch norm into the convolution
#
# In evaluation mode batch norm is a fixed per-channel affine map, so a
# convolution followed by it is again a convolution. Given the convolution's
# weight $W$ (OC, C, kh, kw) and bias $b$ and the batch norm's $\gamma$, $\beta$,
# running mean and variance, return $W'$, $b'$ with
# `conv2d(x, W', b') == batch_norm_eval(conv2d(x, W, b))`. (Inference engines do
# this to save a layer.)

# %%
def fold_batch_norm(W, b, gamma, beta, mean, var, eps=1e-5):
    # one possible answer: y = gamma * (conv + b - mean) / sqrt(var + eps) + beta
    scale = gamma / np.sqrt(var + eps)
    return W * scale.reshape(-1, 1, 1, 1), (b - mean) * scale + beta


# %%
OC = 5
W3, b3 = rng.standard_normal((OC, 3, 3, 3)), rng.standard_normal(OC)
g3, be3 = rng.uniform(0.5, 2, OC), rng.standard_normal(OC)
mean3, var3 = rng.standard_normal(OC), rng.uniform(0.5, 3, OC)
x3 = minires.tensor(rng.standard_normal((2, 3, 6, 6)))
two_layers = F.batch_norm(F.conv2d(x3, minires.tensor(W3), minires.tensor(b3), padding=1),
                          minires.tensor(mean3), minires.tensor(var3), minires.tensor(g3), minires.tensor(be3),
                          training=False).numpy()


def folded_conv_matches():
    W_folded, b_folded = answered(fold_batch_norm(W3, b3, g3, be3, mean3, var3))
    one_layer = F.conv2d(x3, minires.tensor(W_folded), minires.tensor(b_folded), padding=1).numpy()
    return np.allclose(one_layer, two_layers)


check("Exercise 3: conv + batch norm folded into one conv", folded_conv_matches,
      "scale each output channel's filter by gamma/sqrt(var+eps); fold mean, beta and b into the bias")

# %% [markdown]
# ## What to remember
#
# * Training: normalize with the batch's mean and variance, then $\gamma \hat x + \beta$.
#   Evaluation: the running averages instead, so the output depends on one image only.
# * Backward: $\partial L/\partial x = \gamma s\,(g - \overline{g} - \hat x\, \overline{g \hat x})$,
#   the upstream gradient with its mean and its $\hat x$ component removed.
# * Because $\sum_i \hat x_i = 0$, an all-ones upstream gradient cannot test this
#   backward (tutorial 2); a random one can.
#
# Next: tutorial 5 puts convolution and batch norm together into a residual block.
