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
# # 3. Convolution by im2col
#
# Almost all the arithmetic of a ResNet happens in its 3x3 convolutions. Written
# as loops, a convolution is seven nested `for`s, hopeless in Python. The
# classic trick, **im2col** ("image to columns"), copies every window the kernel
# looks at into one column of a matrix, after which the whole convolution is a
# **single matrix product** (a GEMM), the operation BLAS libraries make as fast
# as the hardware allows.
#
# In this tutorial you will:
#
# 1. write the convolution as loops, as the reference;
# 2. see im2col drawn: the windows, and the matrix they become;
# 3. compute the convolution as one GEMM and time it against the loops;
# 4. meet **col2im**, the adjoint of im2col, and use it for the backward pass.
#
# minires' own `im2col` and `col2im` live in `minires.ops.im2col` and work on
# plain NumPy arrays. `MINIRES_SMOKE=1` makes every size tiny.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import minires
import minires.functional as F
from minires.ops.im2col import col2im, conv_output_size, im2col

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
rng = np.random.default_rng(0)
print("smoke run" if SMOKE else "full run")

# %% [markdown]
# ## 1. Convolution, the slow way
#
# A convolution layer has a weight $W$ of shape (out channels, in channels,
# $k_h$, $k_w$). Output pixel $(o, r, c)$ of image $n$ is the sum, over every input
# channel and kernel position, of weight times input pixel:
#
# $$ y[n, o, r, c] = \sum_{ch} \sum_{i<k_h} \sum_{j<k_w} W[o, ch, i, j]\;
#    x_{\text{pad}}[n, ch, r s + i, c s + j] $$
#
# with stride $s$ and the input zero-padded by $p$ pixels on every side. (Deep
# learning calls this convolution; mathematicians call it cross-correlation,
# since the kernel is not flipped.) The output is
# $\lfloor (H + 2p - k)/s \rfloor + 1$ pixels high.
#
# Below, the three innermost sums are one NumPy `sum` over a window; the four
# outer loops remain.

# %%
def conv2d_loops(x, w, stride=1, padding=0):
    N, C, H, W = x.shape
    OC, _, kh, kw = w.shape
    OH, OW = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((N, OC, OH, OW), dtype=x.dtype)
    for n in range(N):
        for o in range(OC):
            for r in range(OH):
                for c in range(OW):
                    window = x_pad[n, :, r * stride:r * stride + kh, c * stride:c * stride + kw]
                    y[n, o, r, c] = (window * w[o]).sum()
    return y


x = rng.standard_normal((2, 3, 7, 7))
w = rng.standard_normal((4, 3, 3, 3))
reference = conv2d_loops(x, w, stride=2, padding=1)
print("output shape", reference.shape)
print("same as minires F.conv2d:", np.allclose(reference, F.conv2d(minires.tensor(x), minires.tensor(w),
                                                                   stride=2, padding=1).numpy()))

# %% [markdown]
# ## 2. im2col, drawn
#
# For each output pixel, the loop above multiplies the **same** weights with a
# different window. Copy each window, flattened, into one column of a matrix
# `col`: then every output pixel is one row of $W$ times one column of `col`.
#
# One 4x4 image, one channel, a 3x3 kernel, stride 1, no padding: there are
# $2 \times 2$ output pixels, so four windows and four columns of nine numbers each.

# %%
image = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
col = im2col(image, kernel=(3, 3), stride=(1, 1), padding=(0, 0))
print("col has shape", col.shape, "= (channels * 3 * 3, images * output pixels)")
print(col.astype(int))

# %%
colors = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
fig, (ax_in, ax_col) = plt.subplots(1, 2, figsize=(10, 4.5), gridspec_kw={"width_ratios": [1, 1.1]},
                                     layout="constrained")
ax_in.imshow(image[0, 0], cmap="Greys", alpha=0.25)
for (r, c), value in np.ndenumerate(image[0, 0]):
    ax_in.text(c, r, int(value), ha="center", va="center")
for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    inset = 0.06 * (k + 1)
    ax_in.add_patch(Rectangle((c - 0.5 + inset, r - 0.5 + inset), 3 - 2 * inset, 3 - 2 * inset,
                              fill=False, lw=2.5, ec=colors[k]))
ax_in.set_title("input 4x4: the four 3x3 windows")
ax_in.set_xticks([])
ax_in.set_yticks([])
ax_in.set_xlabel("pixel column")
ax_in.set_ylabel("pixel row")

ax_col.imshow(col, cmap="Greys", alpha=0.25, aspect="auto")
for (r, c), value in np.ndenumerate(col):
    ax_col.text(c, r, int(value), ha="center", va="center", color=colors[c], fontweight="bold")
ax_col.set_xticks(range(4), [f"window {k}\n(out {k // 2},{k % 2})" for k in range(4)])
ax_col.set_yticks(range(9), [f"(i={i}, j={j})" for i in range(3) for j in range(3)])
ax_col.set_xlabel("column = window (output pixel)")
ax_col.set_ylabel("row = position (i, j) in the window")
ax_col.set_title("col (9 x 4): a column per window")
plt.show()

# %% [markdown]
# ### Padding and stride
#
# With padding, some window positions fall outside the image; their entries in
# `col` are zero. With stride 2 the windows jump by two pixels. A 5x5 image,
# padding 1, stride 2 gives a 3x3 output: nine columns. (The pixel values are
# 1..25, so every 0 in `col` is padding.)

# %%
image5 = np.arange(1, 26, dtype=np.float64).reshape(1, 1, 5, 5)
col5 = im2col(image5, kernel=(3, 3), stride=(2, 2), padding=(1, 1))
print("col has shape", col5.shape, " output size", conv_output_size(5, 3, 2, 1), "x", conv_output_size(5, 3, 2, 1))

fig, (ax_in, ax_col) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
padded = np.pad(image5[0, 0], 1)
ax_in.imshow(padded > 0, cmap="Greys", alpha=0.25)
for (r, c), value in np.ndenumerate(padded):
    ax_in.text(c, r, int(value) if value else "0", ha="center", va="center",
               color="black" if value else "lightgray")
cmap = plt.get_cmap("tab10")
for k in range(9):
    r, c = 2 * (k // 3), 2 * (k % 3)
    inset = 0.05 + 0.035 * k
    ax_in.add_patch(Rectangle((c - 0.5 + inset, r - 0.5 + inset), 3 - 2 * inset, 3 - 2 * inset,
                              fill=False, lw=1.8, ec=cmap(k)))
ax_in.set_title("5x5 input, padding 1 (gray zeros), stride 2")
ax_in.set_xticks([])
ax_in.set_yticks([])
ax_in.set_xlabel("pixel column (padded)")
ax_in.set_ylabel("pixel row (padded)")
ax_col.imshow(col5 > 0, cmap="Greys", alpha=0.25, aspect="auto")
for (r, c), value in np.ndenumerate(col5):
    ax_col.text(c, r, int(value), ha="center", va="center", color=cmap(c) if value else "lightgray")
ax_col.set_xticks(range(9), range(9))
ax_col.set_yticks(range(9), [f"(i={i}, j={j})" for i in range(3) for j in range(3)])
ax_col.set_xlabel("column = output pixel")
ax_col.set_ylabel("row = position (i, j) in the window")
ax_col.set_title("col: 9 rows, 9 columns; zeros from the padding")
plt.show()

# %% [markdown]
# ### Many channels, many images
#
# With $C$ channels a window is $C \times k_h \times k_w$ numbers, so `col` has
# $C k_h k_w$ rows, ordered (channel, i, j). With $N$ images there are
# $N \cdot OH \cdot OW$ columns, ordered (image, output row, output column):
#
# $$ \texttt{col}[(ch, i, j),\,(n, r, c)] = x_{\text{pad}}[n, ch, r s + i, c s + j]. $$
#
# The picture shows the block structure for 2 images with 2 channels each.

# %%
tiny = rng.standard_normal((2, 2, 4, 4))
col_tiny = im2col(tiny, (3, 3), (1, 1), (1, 1))
fig, ax = plt.subplots(figsize=(10, 3.5), layout="constrained")
limit = np.abs(col_tiny).max()
ax.imshow(col_tiny, cmap="bwr", vmin=-limit, vmax=limit, aspect="auto")  # white = 0 (padding)
ax.axhline(8.5, color="k", lw=2)
ax.axvline(15.5, color="k", lw=2)
ax.set_yticks([4, 13], ["channel 0\n(9 rows)", "channel 1\n(9 rows)"])
ax.set_xticks([7.5, 23.5], ["image 0 (16 output pixels)", "image 1 (16 output pixels)"])
ax.set_xlabel("column = (image, output row, output column)")
ax.set_ylabel("row = (channel, i, j)")
ax.set_title(f"col for x of shape {tiny.shape}, 3x3 kernel, padding 1: {col_tiny.shape}")
plt.show()

# %% [markdown]
# ## 3. Convolution as one matrix product
#
# Reshape the weight to $W_{mat}$ of shape (OC, $C k_h k_w$): row $o$ is filter
# $o$ flattened in the same (channel, i, j) order as the rows of `col`. Then
#
# $$ Y_{mat} = W_{mat}\, \texttt{col} \qquad (OC \times C k_h k_w)\,(C k_h k_w \times N\,OH\,OW) $$
#
# and $Y_{mat}$, of shape (OC, $N \cdot OH \cdot OW$), is the output with its axes in
# the order (channel, image, row, column).

# %%
def conv2d_gemm(x, w, stride=1, padding=0):
    N, C, H, W = x.shape
    OC, _, kh, kw = w.shape
    OH, OW = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    col = im2col(x, (kh, kw), (stride, stride), (padding, padding))
    y_mat = w.reshape(OC, -1) @ col                      # the one GEMM
    return y_mat.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3)


print("im2col + GEMM equals the loops:", np.allclose(conv2d_gemm(x, w, stride=2, padding=1), reference))

# %% [markdown]
# How much faster? The loops do the same multiplications, but in tiny pieces
# with Python in between; the GEMM does them all in one call. minires'
# `F.conv2d` is the same algorithm plus cache blocking: it processes the batch in
# slabs of images whose `col` fits in the CPU cache, which pays off for large
# batches (read `minires/ops/conv.py`). At this small batch the two are about equal.

# %%
if SMOKE:
    N, C, H, OC = 2, 4, 8, 4
else:
    N, C, H, OC = 8, 16, 32, 16  # one batch of a ResNet-20 first-stage layer
xb = rng.standard_normal((N, C, H, H)).astype(np.float32)
wb = rng.standard_normal((OC, C, 3, 3)).astype(np.float32)


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


timings = {
    "loops": best_time(lambda: conv2d_loops(xb, wb, padding=1), 1),
    "im2col + GEMM": best_time(lambda: conv2d_gemm(xb, wb, padding=1), 10),
    "minires F.conv2d": best_time(lambda: F.conv2d(minires.tensor(xb), minires.tensor(wb), padding=1), 10),
}
print(f"x {xb.shape}, w {wb.shape}, float32")
for name, seconds in timings.items():
    print(f"  {name:18s} {seconds * 1000:9.2f} ms   ({timings['loops'] / seconds:7.0f}x the loops)")
assert np.allclose(conv2d_gemm(xb, wb, padding=1), conv2d_loops(xb, wb, padding=1), atol=1e-4)

fig, ax = plt.subplots(figsize=(6, 2.5), layout="constrained")
ax.barh(list(timings), [t * 1000 for t in timings.values()])
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
ax.set_ylabel("implementation")
ax.set_title("one 3x3 convolution, forward")
plt.show()

# %% [markdown]
# The price is memory: `col` holds every input pixel $k_h k_w = 9$ times. For a
# batch of 128 CIFAR images in the first stage that is 75 MB for one layer,
# which is why minires builds it a slab at a time.

# %% [markdown]
# ## 4. col2im, the adjoint, and the backward pass
#
# im2col is a **linear** map $A$: `col` $= A x$, where $A$ is a big matrix of
# zeros and ones that copies pixels. Its **transpose** $A^\top$ takes a matrix
# shaped like `col` and **adds** every entry back onto the pixel it was copied
# from. That is `col2im`. Where windows overlap, a pixel receives several
# contributions.
#
# The defining property of a transpose (the *adjoint*) is that for every $x$
# and every `col`-shaped $Z$:
#
# $$ \langle A x, Z \rangle = \langle x, A^\top Z \rangle. $$
#
# Let us test it (this "dot-product test" is the standard check for adjoints):

# %%
for stride, padding in ((1, 0), (1, 1), (2, 1), (3, 2)):
    xs = rng.standard_normal((2, 3, 7, 6))
    Z = rng.standard_normal(im2col(xs, (3, 3), (stride, stride), (padding, padding)).shape)
    lhs = (im2col(xs, (3, 3), (stride, stride), (padding, padding)) * Z).sum()
    rhs = (xs * col2im(Z, xs.shape, (3, 3), (stride, stride), (padding, padding))).sum()
    print(f"stride {stride} padding {padding}: <im2col(x), Z> = {lhs:+.10f}   <x, col2im(Z)> = {rhs:+.10f}")
    assert np.isclose(lhs, rhs)

# %% [markdown]
# col2im is **not** the inverse of im2col: `col2im(im2col(x))` multiplies each
# pixel by the number of windows that contain it. Applied to ones, it draws
# that count:

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.5), layout="constrained")
for ax, (stride, padding) in zip(axes, ((1, 0), (1, 1), (2, 1))):
    ones = np.ones((1, 1, 7, 7))
    count = col2im(im2col(ones, (3, 3), (stride, stride), (padding, padding)), ones.shape,
                   (3, 3), (stride, stride), (padding, padding))[0, 0]
    ax.imshow(count, cmap="viridis", vmin=0, vmax=9)
    for (r, c), value in np.ndenumerate(count):
        ax.text(c, r, int(value), ha="center", va="center", color="white" if value < 5 else "black")
    ax.set_title(f"3x3, stride {stride}, padding {padding}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("pixel column")
    ax.set_ylabel("pixel row")
fig.suptitle("col2im(im2col(ones)): how many windows see each pixel of a 7x7 image")
plt.show()

# %% [markdown]
# ### The backward of a convolution
#
# Write the forward as $Y_{mat} = W_{mat}\,\texttt{col}$ with $\texttt{col} = A x$,
# and let $G$ be the upstream gradient $\partial L/\partial Y$ reshaped like
# $Y_{mat}$. A matrix product's gradients are the other factor, transposed:
#
# $$ \frac{\partial L}{\partial W_{mat}} = G\,\texttt{col}^\top, \qquad
#    \frac{\partial L}{\partial\, \texttt{col}} = W_{mat}^\top G, \qquad
#    \frac{\partial L}{\partial x} = A^\top \frac{\partial L}{\partial\, \texttt{col}}
#    = \texttt{col2im}(W_{mat}^\top G). $$
#
# The last step is why col2im matters: the gradient of a linear map is its
# adjoint. A pixel seen by nine windows collects nine contributions.

# %%
def conv2d_backward(x, w, G, stride=1, padding=0):
    OC = w.shape[0]
    col = im2col(x, w.shape[2:], (stride, stride), (padding, padding))
    G_mat = G.transpose(1, 0, 2, 3).reshape(OC, -1)        # (OC, N*OH*OW), like Y_mat
    grad_w = (G_mat @ col.T).reshape(w.shape)
    grad_x = col2im(w.reshape(OC, -1).T @ G_mat, x.shape, w.shape[2:], (stride, stride), (padding, padding))
    return grad_x, grad_w


xt = minires.tensor(x, requires_grad=True)
wt = minires.tensor(w, requires_grad=True)
y = F.conv2d(xt, wt, stride=2, padding=1)
G = rng.standard_normal(y.shape)
y.backward(G)
grad_x, grad_w = conv2d_backward(x, w, G, stride=2, padding=1)
print("dL/dx matches minires:", np.allclose(grad_x, xt.grad), "  dL/dW matches minires:", np.allclose(grad_w, wt.grad))
print(minires.gradcheck(lambda a, b: F.conv2d(a, b, stride=2, padding=1), [xt, wt]))

# %% [markdown]
# ### How minires does it on the CPU
#
# Copying windows one short row at a time is slow, so for stride 1 minires lays a
# batch slab out in *long rows* (`minires/ops/long_rows.py` draws it): the images
# side by side in one zero-bordered buffer, where every row of `col` is one
# contiguous slice. And it never calls col2im: for stride 1 the input gradient is
# itself a convolution, of $G$ padded by $k - 1 - p$, with the kernel flipped and its
# two channel axes swapped. Check that identity:

# %%
x1 = rng.standard_normal((2, 3, 7, 6))
w1 = rng.standard_normal((4, 3, 3, 3))
G1 = rng.standard_normal((2, 4, 7, 6))                      # stride 1, padding 1: same size
grad_x1, _ = conv2d_backward(x1, w1, G1, stride=1, padding=1)
w_flipped = w1[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)     # (C, OC, 3, 3)
as_a_convolution = F.conv2d(minires.tensor(G1), minires.tensor(w_flipped.copy()), padding=3 - 1 - 1)
print("dL/dx is a convolution of G:", np.allclose(grad_x1, as_a_convolution.numpy()))

# %% [markdown]
# ## Exercises
#
# One possible answer is filled in for each, after a `# one possible answer`
# comment, so the file runs top to bottom. Replace it with your own and run the
# checking cell below it: ✓ when it is right, ✗ and a hint when it is not. While
# an answer is still `pass`, the check prints "not answered yet" and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells


CONFIGS = [((2, 3, 5, 5), (3, 3), 1, 1), ((1, 2, 6, 7), (3, 2), 2, 0), ((3, 1, 4, 4), (1, 1), 1, 0),
           ((2, 2, 7, 5), (5, 3), 2, 2)]


# %% [markdown]
# ### Exercise 1: im2col with loops
#
# Write `my_im2col(x, kh, kw, stride, padding)` with plain loops over images and
# output pixels, producing exactly minires' layout: rows (channel, i, j), columns
# (image, output row, output column).

# %%
def my_im2col(x, kh, kw, stride, padding):
    # one possible answer
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    col = np.zeros((C * kh * kw, N * OH * OW), dtype=x.dtype)
    for n in range(N):
        for r in range(OH):
            for c in range(OW):
                window = x_pad[n, :, r * stride:r * stride + kh, c * stride:c * stride + kw]
                col[:, (n * OH + r) * OW + c] = window.reshape(-1)
    return col


# %%
def my_im2col_matches():
    return all(np.array_equal(answered(my_im2col(xs, kh, kw, s, p)), im2col(xs, (kh, kw), (s, s), (p, p)))
               for shape, (kh, kw), s, p in CONFIGS for xs in [rng.standard_normal(shape)])


check("Exercise 1: my_im2col matches minires.ops.im2col.im2col", my_im2col_matches,
      "column index (n * OH + r) * OW + c; a window flattened in (channel, i, j) order")


# %% [markdown]
# ### Exercise 2: col2im with loops
#
# Write `my_col2im(col, x_shape, kh, kw, stride, padding)`, the adjoint of your
# im2col: add each column back onto its window. (Hint: accumulate into a padded
# array and cut the padding off at the end.) The check uses the dot-product test.

# %%
def my_col2im(col, x_shape, kh, kw, stride, padding):
    # one possible answer
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, kh, stride, padding), conv_output_size(W, kw, stride, padding)
    x_pad = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=col.dtype)
    for n in range(N):
        for r in range(OH):
            for c in range(OW):
                window = col[:, (n * OH + r) * OW + c].reshape(C, kh, kw)
                x_pad[n, :, r * stride:r * stride + kh, c * stride:c * stride + kw] += window
    return x_pad[:, :, padding:padding + H, padding:padding + W]


# %%
def adjoint_ok(shape, kh, kw, s, p):
    xs = rng.standard_normal(shape)
    Z = rng.standard_normal(im2col(xs, (kh, kw), (s, s), (p, p)).shape)
    back = answered(my_col2im(Z, shape, kh, kw, s, p))
    return back.shape == shape and np.isclose((im2col(xs, (kh, kw), (s, s), (p, p)) * Z).sum(), (xs * back).sum())


check("Exercise 2: <im2col(x), Z> == <x, my_col2im(Z)>",
      lambda: all(adjoint_ok(shape, kh, kw, s, p) for shape, (kh, kw), s, p in CONFIGS),
      "every entry of column (n, r, c) goes back, added, onto the pixel its window copied it from")


# %% [markdown]
# ### Exercise 3: a convolution with a bias
#
# `F.conv2d` takes an optional bias $b$ of shape (OC,), added to every pixel of
# output channel $o$. Write `conv2d_bias_backward(G)` returning
# $\partial L/\partial b$ for an upstream gradient $G$ of shape (N, OC, OH, OW).

# %%
def conv2d_bias_backward(G):
    # one possible answer: b[o] is added to every output pixel of channel o
    return G.sum(axis=(0, 2, 3))


# %%
bias = minires.tensor(rng.standard_normal(4), requires_grad=True)
out = F.conv2d(minires.tensor(x), minires.tensor(w), bias, stride=2, padding=1)
G = rng.standard_normal(out.shape)
out.backward(G)
check("Exercise 3: bias gradient", lambda: np.allclose(answered(conv2d_bias_backward(G)), bias.grad),
      "a value added to many outputs receives the sum of their gradients")

# %% [markdown]
# ## What to remember
#
# * im2col turns every window into a column; convolution becomes
#   $W_{mat}\,\texttt{col}$, one GEMM.
# * col2im is the transpose (adjoint) of im2col: it adds columns back, so
#   overlapping windows add up.
# * Backward: $\partial L/\partial W = G\,\texttt{col}^\top$,
#   $\partial L/\partial x = \texttt{col2im}(W^\top G)$: two more GEMMs and a col2im.
# * For stride 1 the input gradient is also a convolution (of the padded $G$ with the
#   flipped kernel), which is how minires's CPU path avoids col2im.
#
# Next: tutorial 4 derives batch normalization's forward and backward.
