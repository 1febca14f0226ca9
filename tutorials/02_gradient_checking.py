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
# # 2. Gradient checking
#
# Every operation in minires has a hand-written backward. A wrong backward does
# not crash: the network still trains, just worse, and nobody notices. So every
# backward must be **proven** against the definition of the derivative.
#
# In this tutorial you will:
#
# 1. see why central differences in **float64** are the right numerical yardstick;
# 2. check a backward that produces a whole tensor, using an *upstream gradient*;
# 3. watch a broken batch-norm backward **pass** a check that uses an all-ones
#    upstream gradient, and get caught by a random one;
# 4. use `minires.gradcheck`, the tool that does all of this for you.
#
# Run it as a script or, after `jupytext --to ipynb`, as a notebook.
# `MINIRES_SMOKE=1` makes every size tiny.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import minires
import minires.functional as F
from minires import Function

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
rng = np.random.default_rng(0)
print("smoke run" if SMOKE else "full run")

# %% [markdown]
# ## 1. Finite differences, and why float64
#
# Two ways to approximate $f'(x)$ numerically:
#
# $$ \text{forward:}\ \frac{f(x+\varepsilon) - f(x)}{\varepsilon} = f'(x) + O(\varepsilon),
# \qquad \text{central:}\ \frac{f(x+\varepsilon) - f(x-\varepsilon)}{2\varepsilon} = f'(x) + O(\varepsilon^2). $$
#
# (Expand $f(x \pm \varepsilon)$ in a Taylor series: in the central difference the
# $\varepsilon^2 f''/2$ terms cancel.) So smaller $\varepsilon$ is better...
# until **rounding** takes over: $f$ is only known to about
# $u \cdot |f|$, where $u$ is the machine precision ($6 \cdot 10^{-8}$ in float32,
# $1.1 \cdot 10^{-16}$ in float64), and dividing by $\varepsilon$ magnifies that
# error to $u|f|/\varepsilon$. The total error is a V shape:

# %%
def f(x):
    return np.sin(x) * np.exp(x)


def f_prime(x):
    return (np.cos(x) + np.sin(x)) * np.exp(x)


x0 = 1.0
epsilons = np.logspace(-13, -0.5, 60)
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for dtype, style in ((np.float64, "-"), (np.float32, "--")):
    x = dtype(x0)
    forward = [(f(x + dtype(e)) - f(x)) / dtype(e) for e in epsilons]
    central = [(f(x + dtype(e)) - f(x - dtype(e))) / dtype(2 * e) for e in epsilons]
    err_forward = np.abs(np.array(forward, dtype=np.float64) - f_prime(x0)) / abs(f_prime(x0))
    err_central = np.abs(np.array(central, dtype=np.float64) - f_prime(x0)) / abs(f_prime(x0))
    name = np.dtype(dtype).name
    ax.loglog(epsilons, np.maximum(err_forward, 1e-17), "C0" + style, label=f"forward, {name}")
    ax.loglog(epsilons, np.maximum(err_central, 1e-17), "C1" + style, label=f"central, {name}")
    best = np.argmin(err_central)
    print(f"{name}: best central difference {err_central[best]:.1e} relative error at eps = {epsilons[best]:.0e}")
ax.set_xlabel("epsilon")
ax.set_ylabel("relative error of the derivative")
ax.set_title("truncation error falls with epsilon, rounding error grows")
ax.legend()
plt.show()

# %% [markdown]
# In float64 a central difference with $\varepsilon \approx 10^{-5}$ is good to
# about $10^{-10}$: far below any mistake a backward could make. In float32 the
# best is a few $10^{-6}$, and only at a lucky $\varepsilon$; a little off it
# the error is $10^{-3}$ or worse, so rounding noise and a genuine bug look alike.
# (Below $\varepsilon \approx 10^{-7}$, $x + \varepsilon$ rounds to $x$ in float32: the
# difference is exactly 0 and the error 100%.) **Gradient checks run in float64**, always.

# %% [markdown]
# ## 2. Checking a function with a tensor output
#
# For $y = f(x)$ with $x \in \mathbb{R}^n$ and $y \in \mathbb{R}^m$, the
# derivative is an $m \times n$ Jacobian $J$. Backward never builds $J$: it
# receives the **upstream gradient** $G = \partial L/\partial y$ from the layers
# above and returns $\partial L/\partial x = J^\top G$ (a vector-Jacobian product).
#
# To check it, pick a $G$ and treat
#
# $$ L(x) = \sum_i G_i\, f(x)_i $$
#
# as the scalar function to differentiate. Backward with upstream gradient $G$
# gives $\partial L/\partial x$ analytically; central differences on $L$, one
# element of $x$ at a time, give it numerically. Here it is in a few lines:

# %%
def numerical_gradient(fn, inputs, upstream, eps=1e-5):
    """d sum(upstream * fn(*inputs)) / d input, by central differences, for every input."""
    def L():
        with minires.no_grad():
            return float((upstream * fn(*inputs).numpy()).sum())

    grads = []
    for t in inputs:
        grad = np.zeros_like(t.data)
        for index in np.ndindex(t.shape):
            original = t.data[index]
            t.data[index] = original + eps
            plus = L()
            t.data[index] = original - eps
            minus = L()
            t.data[index] = original
            grad[index] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def analytic_gradient(fn, inputs, upstream):
    """The same, by one backward pass with ``upstream`` as dL/dy."""
    for t in inputs:
        t.grad = None
    fn(*inputs).backward(upstream)
    return [t.grad.numpy() for t in inputs]


def relative_error(a, b, floor=1e-5):
    """|a - b| / max(|a|, |b|, floor): relative, but absolute for entries smaller than floor
    (where a true zero and rounding noise of 1e-10 must count as equal)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)))


# %% [markdown]
# A 3x3 convolution with stride 2 and padding, checked with a random upstream gradient:

# %%
x = minires.tensor(rng.standard_normal((2, 3, 5, 5)), requires_grad=True)
w = minires.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)


def conv(x, w):
    return F.conv2d(x, w, stride=2, padding=1)


G = rng.standard_normal(conv(x, w).shape)
for name, a, n in zip(("x", "w"), analytic_gradient(conv, [x, w], G), numerical_gradient(conv, [x, w], G)):
    print(f"conv2d dL/d{name}: worst relative error {relative_error(a, n):.1e}")

# %% [markdown]
# ## 3. Why the upstream gradient must be random
#
# The tempting shortcut is $G = 1$ everywhere, i.e. checking the gradient of
# `y.sum()`. For most operations that works. For **batch normalization** it
# does not. In training mode batch norm (per channel, over the batch) computes
#
# $$ \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y_i = \gamma \hat x_i + \beta, $$
#
# and the $\hat x_i$ of a channel always sum to zero. So
# $\sum_i y_i = m \beta$ does not depend on $x$ at all: its true gradient with
# respect to $x$ is **zero**, and a backward that returns zeros for $x$ agrees
# with it perfectly.
#
# Let us build that broken batch norm with minires' public `Function` API
# (forward right, backward wrong) together with a correct one and two more
# realistic mistakes. Tutorial 4 derives the correct formula.

# %%
class HandBatchNorm(Function):
    """Training-mode batch norm of (N, C) input; ``mistake`` picks a broken backward."""

    MISTAKES = {
        "none": "the correct backward",
        "zeros": "returns zeros for x",
        "no-variance-term": "forgets that the variance depends on x",
        "eval-formula": "uses the evaluation-mode formula in training",
        "gamma-from-x": "uses x instead of x_hat in dL/dgamma",
    }

    def __init__(self, mistake="none", eps=1e-5):
        self.mistake, self.eps = mistake, eps

    def forward(self, x, gamma, beta):
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = (x - mean) * inv_std
        self.save_for_backward(x, x_hat, inv_std, gamma)
        return gamma * x_hat + beta

    def backward(self, g):
        x, x_hat, inv_std, gamma = self.saved_tensors
        m = g.shape[0]
        grad_beta = g.sum(axis=0)
        grad_gamma = (g * x_hat).sum(axis=0)
        grad_x = gamma * inv_std * (g - grad_beta / m - x_hat * grad_gamma / m)
        if self.mistake == "zeros":
            grad_x = np.zeros_like(x)
        elif self.mistake == "no-variance-term":
            grad_x = gamma * inv_std * (g - grad_beta / m)
        elif self.mistake == "eval-formula":
            grad_x = gamma * inv_std * g
        elif self.mistake == "gamma-from-x":
            grad_gamma = (g * x).sum(axis=0)
        return grad_x, grad_gamma, grad_beta


N_BATCH, N_CHANNELS = (6, 2) if SMOKE else (16, 4)
bn_x = minires.tensor(rng.standard_normal((N_BATCH, N_CHANNELS)) * 2 + 1, requires_grad=True)
bn_gamma = minires.tensor(rng.uniform(0.5, 1.5, N_CHANNELS), requires_grad=True)
bn_beta = minires.tensor(rng.standard_normal(N_CHANNELS), requires_grad=True)
bn_inputs = [bn_x, bn_gamma, bn_beta]


TOLERANCE = 1e-3  # the same rtol as minires.gradcheck


def check_with(upstream, mistake):
    """Worst relative error over x, gamma and beta, using this upstream gradient."""
    fn = lambda x, gamma, beta: HandBatchNorm(mistake)(x, gamma, beta)  # noqa: E731
    analytic = analytic_gradient(fn, bn_inputs, upstream)
    numeric = numerical_gradient(fn, bn_inputs, upstream)
    return max(relative_error(a, n) for a, n in zip(analytic, numeric))


ones = np.ones((N_BATCH, N_CHANNELS))
random = rng.standard_normal((N_BATCH, N_CHANNELS))
print(f"{'backward':48s} {'G = ones':>12s} {'G random':>12s}")
verdicts = {}
for mistake, description in HandBatchNorm.MISTAKES.items():
    e_ones, e_random = check_with(ones, mistake), check_with(random, mistake)
    verdicts[mistake] = (e_ones < TOLERANCE, e_random < TOLERANCE)
    print(f"{description:48s} {'pass' if e_ones < TOLERANCE else 'FAIL':>6s} {e_ones:5.0e} "
          f"{'pass' if e_random < TOLERANCE else 'FAIL':>6s} {e_random:5.0e}")
assert verdicts["zeros"] == (True, False), "the all-ones check should miss the zeros bug"
assert verdicts["none"] == (True, True)

# Why does the correct backward score a few 1e-05, not 1e-10, with G = ones? A note with the numbers:
def correct(x, gamma, beta):
    return HandBatchNorm("none")(x, gamma, beta)


numeric_x, numeric_gamma, _ = numerical_gradient(correct, bn_inputs, ones)
noise = max(np.abs(numeric_x).max(), np.abs(numeric_gamma).max())
L_ones = float((ones * correct(*bn_inputs).numpy()).sum())
step = float(np.spacing(abs(L_ones)))   # the gap between L and the next float64 number
print(f"\nthe correct backward's {check_with(ones, 'none'):.0e} with G = ones is rounding, not a bug:")
print(f"  the true dL/dx and dL/dgamma are 0, but L = sum(y) = {L_ones:.2f} is only computed to within")
print(f"  a float64 step ({step:.1e}); divided by 2 eps = 2e-05 one step is {step / 2e-5:.1e}, and the")
print(f"  numerical gradients come out as whole steps of that, up to {noise:.1e}. relative_error divides")
print(f"  numbers this small by its floor 1e-05, not by themselves: {noise:.1e} / 1e-05 = {noise / 1e-5:.0e},")
print("  far below the tolerance 1e-03.")

# %% [markdown]
# Two of the four broken versions sail through with $G = 1$. Look at the
# numbers to see why: with $G=1$ the true $\partial L/\partial x$ is zero, and
# "forgot the variance term" computes $\gamma\,\sigma^{-1}(G - \bar G)$, which is
# also zero whenever $G$ is constant. A random $G$ gives every output a different
# weight, so no such cancellation can hide a wrong term.
#
# The note under the table answers the question its first row raises: why does the *correct*
# backward score a few $10^{-5}$ with $G = 1$, when a float64 check is good to $10^{-10}$? With
# $G = 1$, $L = \sum_i y_i$ is $m \beta$ per channel and depends on neither $x$ nor $\gamma$: their
# true gradients are exactly zero, and the backward returns zero (to $10^{-16}$). The numerical
# side computes $L(x + \varepsilon) - L(x - \varepsilon)$, two numbers that are equal in exact
# arithmetic, and gets the float64 rounding of $L$: a whole number of steps (here at most two)
# of the gap between neighbouring float64 numbers near $L$ ($3.6 \cdot 10^{-15}$ for the full
# run's $L \approx 16$), which dividing by $2\varepsilon = 2 \cdot 10^{-5}$ turns into steps of
# $1.8 \cdot 10^{-10}$.
# `relative_error` divides numbers that small not by themselves (then any noise would be a 100%
# error) but by its floor $10^{-5}$, so $3.6 \cdot 10^{-10}$ reads as $4 \cdot 10^{-5}$. It is
# rounding noise, far below the tolerance. In the random-$G$ column no gradient is zero, and the
# correct backward shows the usual $10^{-9}$.
#
# The picture: each dot is one element of $\partial L/\partial x$, analytic
# against numerical. A correct backward puts every dot on the diagonal.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
panels = [("none", random, "correct backward, random G"),
          ("zeros", ones, "zeros bug, G = ones"),
          ("zeros", random, "zeros bug, random G")]
for ax, (mistake, upstream, title) in zip(axes, panels):
    fn = lambda x, gamma, beta: HandBatchNorm(mistake)(x, gamma, beta)  # noqa: E731
    a = analytic_gradient(fn, bn_inputs, upstream)[0].ravel()
    n = numerical_gradient(fn, bn_inputs, upstream)[0].ravel()
    ax.scatter(n, a, s=12)
    lim = max(np.abs(n).max(), np.abs(a).max(), 1e-3) * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k:", lw=1)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xlabel("numerical dL/dx")
    ax.set_ylabel("analytic dL/dx (backward)")
    ax.set_title(title)
plt.show()

# %% [markdown]
# ## 4. `minires.gradcheck`
#
# `minires.gradcheck(fn, inputs)` does all of the above: it draws a random
# upstream gradient $G$ (seeded, so the check is repeatable), runs one backward,
# and compares with central differences for every input that requires grad. It
# insists on float64 and returns a result object (or raises `GradcheckError`
# with the worst element when `raise_exception=True`, the default).
#
# For big tensors, checking every element costs two forward passes each, so it
# checks a random sample of `max_elements` elements plus a few random
# **directions** $v$: $\nabla L \cdot v$ against
# $(L(x+\varepsilon v) - L(x-\varepsilon v))/2\varepsilon$, which involves every
# element at once.

# %%
for mistake in ("none", "zeros", "no-variance-term"):
    result = minires.gradcheck(lambda x, g, b: HandBatchNorm(mistake)(x, g, b), bn_inputs,
                               raise_exception=False)
    print(f"{mistake:18s} {result}")

# minires' own batch norm:
print("F.batch_norm      ", minires.gradcheck(
    lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True), bn_inputs))

# %% [markdown]
# It refuses float32, for the reasons of section 1. **The error below is on purpose**: we hand
# `gradcheck` a float32 tensor to see its message, and catch the `TypeError` so that the
# tutorial runs on.

# %%
try:
    minires.gradcheck(F.relu, [minires.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)])
except TypeError as error:
    print("TypeError, raised on purpose (a float32 input):", error)

# %% [markdown]
# ### Kinks
#
# ReLU and max-pooling are not differentiable everywhere. If an input lies
# within $\varepsilon$ of ReLU's kink at 0, the central difference straddles the
# kink and averages the two slopes, and the check fails although the backward
# is fine. Checks therefore use inputs away from kinks (and max-pool inputs
# without ties); `python -m minires check` does that for every operation.

# %%
near_kink = minires.tensor(np.array([-1.0, 3e-6, 0.5]), requires_grad=True)
print("input 3e-6 from the kink:", minires.gradcheck(F.relu, [near_kink], raise_exception=False))
away = minires.tensor(np.array([-1.0, 0.3, 0.5]), requires_grad=True)
print("inputs away from it:     ", minires.gradcheck(F.relu, [away], raise_exception=False))

# %% [markdown]
# ### A table of checks
#
# The layers of a ResNet, each checked with a random upstream gradient:

# %%
S = 4 if SMOKE else 8  # image size
C = 2 if SMOKE else 4  # channels


def leaf(*shape, scale=1.0):
    return minires.tensor(rng.standard_normal(shape) * scale, requires_grad=True)


def distinct(*shape):
    """Well-separated values, none near 0: no ties in a max-pool window, no input at ReLU's kink."""
    n = int(np.prod(shape))
    return minires.tensor((rng.permutation(n).reshape(shape) - n / 2 + 0.5) * 0.1, requires_grad=True)


labels = rng.integers(0, 5, size=3)
cases = {
    "conv2d 3x3, padding 1": (lambda x, w: F.conv2d(x, w, padding=1), [leaf(2, C, S, S), leaf(C, C, 3, 3)]),
    "conv2d 3x3, stride 2": (lambda x, w: F.conv2d(x, w, stride=2, padding=1), [leaf(2, C, S, S), leaf(C, C, 3, 3)]),
    "batch_norm, training": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                             [leaf(3, C, S, S), leaf(C), leaf(C)]),
    "relu": (F.relu, [distinct(2, C, S, S)]),
    "max_pool2d 2x2": (lambda x: F.max_pool2d(x, 2), [distinct(2, C, S, S)]),
    "global_avg_pool2d": (F.global_avg_pool2d, [leaf(2, C, S, S)]),
    "linear": (F.linear, [leaf(3, 6), leaf(5, 6), leaf(5)]),
    "cross_entropy": (lambda z: F.cross_entropy(z, labels), [leaf(3, 5)]),
}
worst = {}
for name, (fn, inputs) in cases.items():
    result = minires.gradcheck(fn, inputs)
    worst[name] = result.max_error
    print(f"{name:24s} {result.comparisons:4d} comparisons   worst relative error {result.max_error:.1e}")

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ax.barh(list(worst), [max(v, 1e-16) for v in worst.values()])
ax.axvline(1e-3, color="red", ls="--", label="tolerance (rtol = 1e-3)")
ax.set_xscale("log")
ax.set_xlabel("worst relative error, analytic vs numerical")
ax.set_ylabel("operation checked")
ax.legend()
plt.show()

# %% [markdown]
# ## Exercises
#
# One possible answer is filled in for each, after a `# one possible answer`
# comment, so the file runs top to bottom. Replace it with your own and run the
# checking cell: ✓ when it is right, ✗ and a hint when it is not. While an
# answer is still `pass` or `...`, the check prints "not answered yet" and the
# file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells


# %% [markdown]
# ### Exercise 1: a directional check
#
# Checking element by element costs two forward passes per element. Write
# `directional_check(fn, x, upstream, v, eps)` that returns the pair
# (analytic, numerical) for the single number $\nabla_x L \cdot v$, where
# $L = \sum G \cdot f(x)$: one backward and **two** forward passes in total.

# %%
def directional_check(fn, x, upstream, v, eps=1e-5):
    # one possible answer
    x.grad = None
    fn(x).backward(upstream)
    analytic = float((x.grad * v).sum())
    original = x.data.copy()
    with minires.no_grad():
        x.data[...] = original + eps * v
        plus = float((upstream * fn(x).numpy()).sum())
        x.data[...] = original - eps * v
        minus = float((upstream * fn(x).numpy()).sum())
    x.data[...] = original
    return analytic, (plus - minus) / (2 * eps)


# %%
x = leaf(2, 3, 6, 6)
weight = leaf(4, 3, 3, 3)
fn = lambda x: F.conv2d(x, weight, padding=1)  # noqa: E731
upstream = rng.standard_normal(fn(x).shape)
v = rng.standard_normal(x.shape)
x_before = x.data.copy()


def directional_check_agrees():
    analytic, numeric = answered(directional_check(fn, x, upstream, v))
    print(f"analytic {analytic:.10f}  numerical {numeric:.10f}")
    return abs(analytic - numeric) <= 1e-6 * max(1.0, abs(analytic)) and np.array_equal(x.data, x_before)


check("Exercise 1: directional derivative agrees", directional_check_agrees,
      "analytic = sum(x.grad * v); numerical uses x + eps v and x - eps v; restore x afterwards")


# %% [markdown]
# ### Exercise 2: which bugs does $G = 1$ miss?
#
# Section 3 printed the verdicts, but predict them first from the formulas:
# for which of the four broken backwards is the all-ones check blind? Put their
# names in the set.

# %%
# one possible answer
missed_by_ones = {"zeros", "no-variance-term"}

# %%
truth = {m for m in HandBatchNorm.MISTAKES if m != "none" and check_with(ones, m) < TOLERANCE}
check("Exercise 2: the bugs an all-ones upstream gradient cannot see", lambda: answered(missed_by_ones) == truth,
      "which wrong formulas also give zero (or the right number) when G is the same everywhere?")


# %% [markdown]
# ### Exercise 3: a backward of your own
#
# $y = \log \sum_j e^{x_j}$ along the last axis (log-sum-exp, the heart of
# softmax cross-entropy). Write the backward: $\partial y/\partial x_j$ is the
# softmax of $x$. The forward subtracts the row maximum so that `exp` cannot
# overflow; keep what you need for backward.

# %%
class LogSumExp(Function):
    def forward(self, x):
        top = x.max(axis=-1, keepdims=True)
        y = np.log(np.exp(x - top).sum(axis=-1, keepdims=True)) + top
        self.save_for_backward(x, y)
        return y[..., 0]

    def backward(self, grad):
        # one possible answer
        x, y = self.saved_tensors
        softmax = np.exp(x - y)
        return grad[..., None] * softmax


# %%
z = leaf(3, 5, scale=3.0)


def logsumexp_backward_is_right():
    op = LogSumExp()   # backward called directly first, to see that it is written
    op.forward(z.numpy())
    answered(op.backward(np.ones(3)))
    result = minires.gradcheck(lambda t: LogSumExp()(t), [z], raise_exception=False)
    print(result)
    return result.passed


check("Exercise 3: log-sum-exp backward", logsumexp_backward_is_right,
      "dL/dx_j = dL/dy * softmax(x)_j, broadcast over the last axis")

# %% [markdown]
# ## What to remember
#
# * Central differences, float64, $\varepsilon \approx 10^{-5}$: accurate to ~$10^{-10}$.
# * Check $L = \sum G \cdot f(x)$ with a **random** $G$; with $G = 1$ some
#   wrong backwards (batch norm's, above all) look right.
# * Keep inputs away from kinks and ties.
# * `minires.gradcheck(fn, inputs)` does it all; `python -m minires check` runs
#   it over every operation.
#
# Next: tutorial 3 opens up the convolution and its backward.
