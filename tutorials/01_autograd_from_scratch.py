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
# # 1. Autograd from scratch
#
# Training a network needs the derivative of one number, the loss, with respect
# to every weight. Working those derivatives out by hand for millions of weights
# is not practical, and finite differences (nudge each weight, run the network
# again) would need one forward pass per weight. **Reverse-mode automatic
# differentiation** gets all of them at once, for a small multiple of the cost
# of one forward pass.
#
# In this tutorial you will:
#
# 1. build a tiny autograd engine for **scalars** (a `Value` class of about 60 lines);
# 2. check it against finite differences;
# 3. train a small neural network with it;
# 4. do the same with **minires tensors**, where every node of the graph holds a
#    whole array instead of one number;
# 5. read how minires organises this: `Tensor`, `Function` and `backward`
#    (in `minires/engine/`), and write an operation of your own.
#
# It runs as a script (`python tutorials/01_autograd_from_scratch.py`) or, after
# `jupytext --to ipynb`, as a notebook. With `MINIRES_SMOKE=1` every size is tiny
# (that is what the tests run).

# %%
import inspect
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

import minires
import minires.engine.autograd
import minires.ops.arithmetic
from minires import Function

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
rng = np.random.default_rng(0)
print("smoke run" if SMOKE else "full run")

# %% [markdown]
# ## 1. The chain rule, one node at a time
#
# Take $L = (a b + c)^2$ with $a = 2$, $b = -3$, $c = 10$. Give every
# intermediate result a name:
#
# $$ d = a b = -6, \qquad e = d + c = 4, \qquad L = e^2 = 16. $$
#
# Each step is simple on its own and knows its **local derivatives**:
# $\partial d/\partial a = b$, $\partial d/\partial b = a$,
# $\partial e/\partial d = \partial e/\partial c = 1$, $\partial L/\partial e = 2e$.
# The chain rule multiplies them along the path from $L$ back to each input:
#
# $$ \frac{\partial L}{\partial a} = \frac{\partial L}{\partial e}\,
#    \frac{\partial e}{\partial d}\,\frac{\partial d}{\partial a} = 2e \cdot 1 \cdot b = 8 \cdot (-3) = -24. $$
#
# Reverse mode does exactly this, starting at $L$ (where $\partial L/\partial L = 1$)
# and walking backwards, so the shared part $\partial L/\partial e$ is computed
# once and reused for $a$, $b$ and $c$.
#
# The recipe for one node $v$ with parents $p_k$:
#
# $$ \texttt{p.grad} \mathrel{+}= \frac{\partial v}{\partial p}\cdot \texttt{v.grad} $$
#
# The `+=` matters: a value used twice (say $x$ in $x\cdot x$) receives a
# contribution from each use. Keep that in mind for residual networks, where
# $y = F(x) + x$ uses $x$ twice.

# %% [markdown]
# ## 2. A scalar autograd engine
#
# Every `Value` stores its number, its gradient, the values it was computed from
# (`parents`) and, computed right away in the forward pass, the local derivative
# with respect to each parent (`local_grads`). That is all backward needs.

# %%
class Value:
    """A number that remembers how it was computed."""

    def __init__(self, data, parents=(), local_grads=(), op=""):
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents          # the Values this one was computed from
        self.local_grads = local_grads  # d(self)/d(parent), one per parent
        self.op = op                    # for printing and drawing only

    def __repr__(self):
        return f"Value({self.data:.4g}, grad={self.grad:.4g})"

    # ---- operations: compute the result and the local derivatives -------------
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, k):  # k is a plain number
        return Value(self.data ** k, (self,), (k * self.data ** (k - 1),), f"**{k}")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,), "exp")

    def log(self):
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self):
        return Value(max(self.data, 0.0), (self,), (1.0 if self.data > 0 else 0.0,), "relu")

    # The rest are built from the operations above, so they need no derivative of their own.
    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    def __truediv__(self, other):
        return self * other ** -1.0

    def __radd__(self, other):  # 3 + v
        return self + other

    def __rmul__(self, other):  # 3 * v
        return self * other

    def __rsub__(self, other):  # 3 - v
        return (-self) + other

    def __rtruediv__(self, other):  # 3 / v
        return self ** -1.0 * other

    # ---- backward ------------------------------------------------------------
    def backward(self):
        """Fill .grad of every Value this one depends on with d(self)/d(that value)."""
        order = topological_order(self)
        self.grad = 1.0  # dL/dL
        for v in reversed(order):  # every node after all the nodes that use it
            for parent, local in zip(v.parents, v.local_grads):
                parent.grad += local * v.grad  # the chain rule, accumulated


def topological_order(root):
    """All Values that root depends on, each listed after its parents."""
    order, seen = [], set()

    def visit(v):
        if v not in seen:
            seen.add(v)
            for p in v.parents:
                visit(p)
            order.append(v)

    visit(root)
    return order


# %% [markdown]
# Why a topological order? A node may only pass its gradient on once it has
# received **all** of it, that is after every node that uses it has been
# processed. Listing parents before children and walking the list backwards
# guarantees exactly that.
#
# Our example from above:

# %%
a, b, c = Value(2.0), Value(-3.0), Value(10.0)
d = a * b
e = d + c
L = e ** 2
L.backward()
print("L  =", L.data)
print("dL/da =", a.grad, " dL/db =", b.grad, " dL/dc =", c.grad)
assert (a.grad, b.grad, c.grad) == (-24.0, 16.0, 8.0)

# %% [markdown]
# ### Drawing the graph
#
# Each box shows a value and its gradient; arrows point from inputs to the
# operation's result. Backward runs along the arrows in the opposite direction.

# %%
def draw_graph(root, ax, names=None):
    names = names or {}
    order = topological_order(root)
    depth = {}
    for v in order:  # longest distance from a leaf: the column of the box
        depth[v] = 1 + max((depth[p] for p in v.parents), default=-1)
    columns = {}
    for v in order:
        columns.setdefault(depth[v], []).append(v)
    position = {}
    for col, members in columns.items():
        for row, v in enumerate(members):
            position[v] = (col * 2.0, -(row - (len(members) - 1) / 2) * 1.3)
    for v in order:
        for p in v.parents:
            ax.annotate("", xy=position[v], xytext=position[p],
                        arrowprops=dict(arrowstyle="->", color="gray", shrinkA=28, shrinkB=28))
    for v in order:
        label = names.get(v, v.op or "input")
        ax.text(*position[v], f"{label}\ndata {v.data:.3g}\ngrad {v.grad:.3g}", ha="center", va="center",
                fontsize=8, bbox=dict(boxstyle="round", fc="lightblue" if not v.parents else "lightyellow"))
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.axis("off")


fig, ax = plt.subplots(figsize=(8, 3), layout="constrained")
draw_graph(L, ax, names={a: "a", b: "b", c: "c", d: "d = a*b", e: "e = d+c", L: "L = e**2"})
ax.set_title("L = (a*b + c)**2: inputs (blue) and intermediate values (yellow)")
plt.show()

# %% [markdown]
# ## 3. Is it right? Compare with finite differences
#
# The derivative is a limit, so we can approximate it numerically:
#
# $$ \frac{\partial f}{\partial x} \approx \frac{f(x + \varepsilon) - f(x - \varepsilon)}{2\varepsilon}. $$
#
# This *central difference* is accurate to $O(\varepsilon^2)$. It needs two
# evaluations per input, which is hopeless for a network but perfect for
# testing. (Tutorial 2 is all about doing this carefully.)

# %%
def f(x, y, z):
    return ((x * y).tanh() + (z / x).exp() - y ** 3).relu() + (x - z).log() * 0.5


inputs = [Value(1.5), Value(-0.7), Value(0.4)]
out = f(*inputs)
out.backward()

eps = 1e-6
for k, name in enumerate("xyz"):
    plus = [v.data + (eps if j == k else 0.0) for j, v in enumerate(inputs)]
    minus = [v.data - (eps if j == k else 0.0) for j, v in enumerate(inputs)]
    numeric = (f(*map(Value, plus)).data - f(*map(Value, minus)).data) / (2 * eps)
    print(f"df/d{name}: backward {inputs[k].grad:+.8f}   central difference {numeric:+.8f}")
    assert abs(inputs[k].grad - numeric) < 1e-6

# %% [markdown]
# ## 4. Training a small network with `Value`
#
# A neural network is just a bigger expression. Here is a two-layer
# perceptron with tanh units, on a toy data set of two interleaving half-moons
# with labels $\pm 1$. The loss is the mean squared error.

# %%
def make_moons(n, noise=0.1):
    t = rng.uniform(0, np.pi, n)
    upper = np.arange(n) % 2 == 0
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return points, np.where(upper, 1.0, -1.0)


N_POINTS = 20 if SMOKE else 100
HIDDEN = 8 if SMOKE else 16
X, Y = make_moons(N_POINTS)


def init_weights(sizes):
    """One (W, b) pair per layer as NumPy arrays: W has shape (out, in)."""
    return [(rng.standard_normal((n_out, n_in)) / math.sqrt(n_in), np.zeros(n_out))
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


weights = init_weights([2, HIDDEN, HIDDEN, 1])
print("layers:", [W.shape for W, _ in weights])


# %%
def to_values(weights):
    return [([[Value(w) for w in row] for row in W], [Value(v) for v in b]) for W, b in weights]


def value_mlp(layers, point):
    h = [Value(p) for p in point]
    for W, b in layers:
        h = [sum((w * x for w, x in zip(row, h)), bias).tanh() for row, bias in zip(W, b)]
    return h[0]


def value_loss(layers, X, Y):
    errors = [(value_mlp(layers, x) - y) ** 2 for x, y in zip(X, Y)]
    return sum(errors) * (1.0 / len(errors))


def all_params(layers):
    return [v for W, b in layers for v in [w for row in W for w in row] + b]


value_layers = to_values(weights)
loss = value_loss(value_layers, X, Y)
print(f"initial loss {loss.data:.4f}; the graph has {len(topological_order(loss))} nodes "
      f"for {len(all_params(value_layers))} weights")

# %% [markdown]
# One step of gradient descent: zero the gradients (they accumulate!), run
# forward, run backward, move every weight a little against its gradient.

# %%
VALUE_STEPS = 3 if SMOKE else 30
LR = 0.5
value_losses = []
start = time.perf_counter()
for step in range(VALUE_STEPS):
    params = all_params(value_layers)
    for p in params:
        p.grad = 0.0
    loss = value_loss(value_layers, X, Y)
    loss.backward()
    for p in params:
        p.data -= LR * p.grad
    value_losses.append(loss.data)
value_seconds_per_step = (time.perf_counter() - start) / VALUE_STEPS
print(f"Value engine: loss {value_losses[0]:.4f} -> {value_losses[-1]:.4f} in {VALUE_STEPS} steps, "
      f"{value_seconds_per_step * 1000:.0f} ms per step")

# %% [markdown]
# It learns, but slowly: every multiplication is a Python object with its own
# bookkeeping. Real frameworks make each node of the graph a whole **array**
# operation (a matrix product, a convolution), so there are a handful of nodes
# instead of tens of thousands, and the arithmetic runs in compiled code.

# %% [markdown]
# ## 5. The same with minires tensors
#
# A minires `Tensor` is the array version of `Value`: `.data` is a NumPy array,
# `.grad` a Tensor of the same shape (as in PyTorch), and `.grad_fn` the operation
# that produced it. Scalars first, the same $L = (ab + c)^2$:

# %%
a = minires.tensor(2.0, dtype=np.float64, requires_grad=True)
b = minires.tensor(-3.0, dtype=np.float64, requires_grad=True)
c = minires.tensor(10.0, dtype=np.float64, requires_grad=True)
L = (a * b + c) ** 2
L.backward()
print("L =", L.item(), " dL/da =", a.grad, " dL/db =", b.grad, " dL/dc =", c.grad)
assert (a.grad, b.grad, c.grad) == (-24.0, 16.0, 8.0)

# %% [markdown]
# Now arrays. For $y = W x$ the gradient of a scalar loss with respect to the
# matrix $W$ is a matrix of the same shape; broadcasting a bias over a batch
# means its gradient is **summed** over the batch. minires handles both.

# %%
W = minires.tensor(rng.standard_normal((3, 2)), requires_grad=True)
b = minires.tensor(np.zeros(3), requires_grad=True)
x = minires.tensor(rng.standard_normal((5, 2)))  # a batch of 5 points
y = x @ W.T + b                                  # (5, 3); b is broadcast over the batch
loss = (y * y).mean()
loss.backward()
print("W.grad shape", W.grad.shape, " b.grad shape", b.grad.shape)
# By hand: dloss/dy = 2y/15, dloss/dW = (dloss/dy)^T x, dloss/db = sum over the batch.
g = 2 * y.data / y.numel()
assert np.allclose(W.grad, g.T @ x.data) and np.allclose(b.grad, g.sum(axis=0))
print("matches the hand-derived matrix gradients")

# %% [markdown]
# ## 6. How minires is organised
#
# Three pieces, each in its own file of `minires/engine/`:
#
# * **`Tensor`** (`tensor.py`): the array, its `.grad`, and `.grad_fn`.
# * **`Function`** (`function.py`): one operation. A subclass writes
#   `forward(*arrays)` (compute the output, save what backward needs with
#   `save_for_backward`) and `backward(grad_output)` (return one gradient per
#   input). Calling a Function on tensors runs forward and links the output to
#   the Function, which keeps its inputs in `.inputs`.
# * **`backward`** (`autograd.py`): orders the Functions topologically (with an
#   explicit stack, so a 1,000-layer network cannot hit Python's recursion limit),
#   then hands each Function the sum of the gradients flowing into its output.
#
# Compared with our `Value`: instead of storing numbers as local derivatives,
# each Function stores what it needs and computes the **vector-Jacobian
# product** `grad_output -> grad_input` in `backward`. For an elementwise
# product that is just `grad * b`; here is minires' own `Mul`:

# %%
print(inspect.getsource(minires.ops.arithmetic.Mul))

# %% [markdown]
# Walk the graph of our last loss, from the loss back towards the leaves. (The
# old graph was released by `backward` to free memory, so build a new one.)

# %%
y = x @ W.T + b
loss = (y * y).mean()
for fn in reversed(minires.engine.autograd.topological_order(loss.grad_fn)):
    shapes = [tuple(t.shape) for t in fn.inputs]
    print(f"{type(fn).__name__:10s} inputs {shapes}")

# %% [markdown]
# ### Writing an operation of your own
#
# minires has no `tanh`, so let us add one. $y = \tanh x$ has
# $dy/dx = 1 - y^2$, so forward saves $y$ and backward multiplies the incoming
# gradient by $1 - y^2$ elementwise. `minires.gradcheck` compares the result with
# central differences (float64, random upstream gradient; see tutorial 2).

# %%
class Tanh(Function):
    def forward(self, x):
        y = self.xp(x).tanh(x)  # self.xp is numpy (or cupy on a GPU)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * (1 - y * y)


def tanh(x):
    return Tanh()(x)


z = minires.tensor(rng.standard_normal((4, 3)), requires_grad=True)
print(minires.gradcheck(tanh, [z]))

# %% [markdown]
# ## 7. The network again, with tensors
#
# The same weights, the same data, the same loss, now as four array operations
# per layer. The gradients must agree with the `Value` engine to rounding error.

# %%
def tensor_mlp(layers, X):
    h = X
    for W, b in layers:
        h = tanh(h @ W.T + b)
    return h.reshape(-1)


def to_tensors(weights):
    return [(minires.tensor(W, requires_grad=True), minires.tensor(b, requires_grad=True)) for W, b in weights]


X_t, Y_t = minires.tensor(X), minires.tensor(Y)
tensor_layers = to_tensors(weights)
tensor_loss = ((tensor_mlp(tensor_layers, X_t) - Y_t) ** 2).mean()
tensor_loss.backward()

value_layers = to_values(weights)
loss = value_loss(value_layers, X, Y)
loss.backward()

worst = 0.0
for (Wv, bv), (Wt, bt) in zip(value_layers, tensor_layers):
    worst = max(worst, np.abs(np.array([[w.grad for w in row] for row in Wv]) - Wt.grad).max(),
                np.abs(np.array([v.grad for v in bv]) - bt.grad).max())
print(f"loss: Value {loss.data:.10f}  Tensor {tensor_loss.item():.10f}")
print(f"largest difference between the two engines' gradients: {worst:.2e}")
assert worst < 1e-10

# %% [markdown]
# What did minires record? `minires.viz.draw_graph` draws the graph behind a tensor:
# one box per operation (with the shape it computed) and per leaf, arrows in the
# direction of the forward pass. With `gradients=True` it runs one more backward and
# writes under each box the norm of the gradient of its output; read it bottom to
# top to watch the gradient travel back to the weights.

# %%
graph_loss = ((tensor_mlp(tensor_layers, X_t) - Y_t) ** 2).mean()
names = {f"W{i}": W for i, (W, _) in enumerate(tensor_layers)} | {f"b{i}": b for i, (_, b) in enumerate(tensor_layers)}
fig = minires.viz.draw_graph(graph_loss, params=names, gradients=True)
plt.show()

# %% [markdown]
# Now train it properly. Each step is the same four lines as before.

# %%
TENSOR_STEPS = 20 if SMOKE else 1500
tensor_layers = to_tensors(weights)
tensor_losses = []
start = time.perf_counter()
for step in range(TENSOR_STEPS):
    loss = ((tensor_mlp(tensor_layers, X_t) - Y_t) ** 2).mean()
    for W, b in tensor_layers:
        W.grad = b.grad = None
    loss.backward()
    for W, b in tensor_layers:
        W.data -= LR * W.grad
        b.data -= LR * b.grad
    tensor_losses.append(loss.item())
tensor_seconds_per_step = (time.perf_counter() - start) / TENSOR_STEPS
with minires.no_grad():
    accuracy = (np.sign(tensor_mlp(tensor_layers, X_t).numpy()) == Y).mean()
print(f"Tensor engine: loss {tensor_losses[0]:.4f} -> {tensor_losses[-1]:.4f} in {TENSOR_STEPS} steps, "
      f"{tensor_seconds_per_step * 1000:.2f} ms per step, training accuracy {accuracy:.0%}")
print(f"one step is {value_seconds_per_step / tensor_seconds_per_step:.0f}x faster with tensors")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ax1.plot(tensor_losses, label="minires tensors")
ax1.plot(value_losses, "o-", label="Value engine")
ax1.set_xlabel("step")
ax1.xaxis.set_major_locator(MaxNLocator(integer=True))   # steps are counted: no 2.5
ax1.set_ylabel("mean squared error")
ax1.set_yscale("log")
ax1.legend()
ax1.set_title("the same network, the same gradients")

grid = np.linspace(-1.5, 2.5, 120)
gx, gy = np.meshgrid(grid, grid - 0.25)
with minires.no_grad():
    score = tensor_mlp(tensor_layers, minires.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))).numpy()
ax2.contourf(gx, gy, score.reshape(gx.shape), levels=20, cmap="RdBu", alpha=0.6)
ax2.scatter(X[:, 0], X[:, 1], c=Y, cmap="RdBu", edgecolors="k")
ax2.set_xlabel("x_1 (first input)")
ax2.set_ylabel("x_2 (second input)")
ax2.set_title("decision function after training")
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise comes with one possible answer already filled in, after a
# `# one possible answer` comment, so this file runs from top to bottom. Delete
# it, write your own, and run the checking cell below it: it prints ✓ when your
# answer is right and stops with ✗ and a hint when it is not. An exercise you
# have not done yet (a function body that is only `pass`, a value that is `...`)
# prints "not answered yet", and the cells after it still run.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells


# %% [markdown]
# ### Exercise 1: a sigmoid for `Value`
#
# Write `sigmoid(v)` returning a new `Value` for $\sigma(v) = 1 / (1 + e^{-v})$,
# with the right local derivative (hint: $\sigma' = \sigma (1 - \sigma)$). Build it
# directly with `Value(data, parents, local_grads, op)`, not from other operations.

# %%
def sigmoid(v):
    # one possible answer
    s = 1.0 / (1.0 + math.exp(-v.data))
    return Value(s, (v,), (s * (1.0 - s),), "sigmoid")


# %%
def sigmoid_is_right():
    for point in (-3.0, -0.5, 0.0, 0.8, 4.0):
        v = Value(point)
        out = answered(sigmoid(v)) * 2.0
        out.backward()
        h = 1e-6
        numeric = 2.0 * (1 / (1 + math.exp(-(point + h))) - 1 / (1 + math.exp(-(point - h)))) / (2 * h)
        if abs(out.data - 2.0 / (1 + math.exp(-point))) > 1e-12 or abs(v.grad - numeric) > 1e-6:
            return False
        if len(out.parents) != 2 or out.parents[0].op != "sigmoid":
            return False
    return True


check("Exercise 1: sigmoid value and gradient", sigmoid_is_right,
      "compare sigmoid(v).data and v.grad with the formulas above; is the op named 'sigmoid'?")


# %% [markdown]
# ### Exercise 2: a value used twice
#
# For $f(x) = x \cdot x + x$ at $x = 3$, what is $df/dx$? Work it out by hand
# from the graph (the node $x$ has three outgoing arrows), then check.

# %%
# one possible answer: 2x + 1 at x = 3
answer_exercise_2 = 7.0

# %%
x_value = Value(3.0)
(x_value * x_value + x_value).backward()
x_tensor = minires.tensor(3.0, dtype=np.float64, requires_grad=True)
(x_tensor * x_tensor + x_tensor).backward()
check("Exercise 2: gradients of a value used twice add up",
      lambda: answered(answer_exercise_2) == x_value.grad == float(x_tensor.grad),
      "every use of x contributes its own term to df/dx")


# %% [markdown]
# ### Exercise 3: a sigmoid `Function` for minires
#
# Write the forward and backward of $\sigma$ on arrays. Forward should save what
# backward needs; backward receives $\partial L / \partial y$ and returns
# $\partial L / \partial x$. `minires.gradcheck` decides.

# %%
class Sigmoid(Function):
    # one possible answer
    def forward(self, x):
        y = 1.0 / (1.0 + self.xp(x).exp(-x))
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * y * (1.0 - y)


# %%
def sigmoid_function_is_right():
    z = minires.tensor(rng.standard_normal((3, 4)) * 3, requires_grad=True)
    op = Sigmoid()   # forward and backward called directly, on arrays, to see that both are written
    answered(op.forward(z.numpy()))
    answered(op.backward(np.ones((3, 4))))
    forward_ok = np.allclose(Sigmoid()(z).numpy(), 1 / (1 + np.exp(-z.numpy())))
    result = minires.gradcheck(lambda t: Sigmoid()(t), [z], raise_exception=False)
    print(result)
    return forward_ok and result.passed


check("Exercise 3: Sigmoid forward and backward", sigmoid_function_is_right,
      "forward must compute 1/(1+exp(-x)); backward must return grad * dy/dx")

# %% [markdown]
# ## What to remember
#
# * Reverse mode: one forward pass records the graph, one backward pass in
#   reverse topological order applies the chain rule node by node.
# * Gradients **accumulate** (`+=`): a value used several times gets the sum.
# * A framework's node is an array operation with a hand-written
#   vector-Jacobian product; in minires that is a `Function` subclass.
#
# Next: tutorial 2 shows how to *prove* a backward is right, and why the test
# must use a random upstream gradient.
