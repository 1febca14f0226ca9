# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. CIFAR-10, ResNet-20 and the GPU
#
# The last tutorial puts everything together on the data set the ResNet paper used for its
# careful experiments: **CIFAR-10**, 60,000 colour images of 32x32 pixels in ten classes.
# ResNet-20, the smallest of the paper's CIFAR networks, reaches about 91% accuracy on it,
# but only after 64,000 steps of SGD. A laptop CPU takes many hours for that; a GPU makes it
# practical. So the second half of the tutorial opens the GPU path of minires and looks at
# the CUDA kernels it launches.
#
# In this tutorial you will:
#
# 1. ask minires whether a GPU is usable, and why not;
# 2. load CIFAR-10 (or a clearly labelled stand-in where it is not on disk);
# 3. build ResNet-20, count its 269,722 parameters, and train it briefly;
# 4. read two of our CUDA kernels: ReLU's grid-stride loop, and the global average pool's
#    block reduction in shared memory with `__syncthreads()`;
# 5. run kernels: on the GPU through CuPy if you have one, otherwise on the CPU through the
#    emulation harness the tests use, and draw which thread wrote which element;
# 6. write CUDA kernels yourself in the exercises.
#
# With `MINIRES_SMOKE=1` (as in CI) every size is tiny. Without it, expect a few minutes on a
# laptop CPU: the training is capped by a time budget you can change.

# %%
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

import minires
import minires.functional as F
from minires import optim
from minires.backends import cupy, kernel_dir   # cupy is None where CuPy is not installed
from minires.backends.emulator import EmulatedModule, emulate_kernels, emulator_status
from minires.data import CIFAR10, ArrayDataset, DataLoader, default_root
from minires.models import resnet20
from minires.training import evaluate, make_transforms, train_steps

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
print("smoke run" if SMOKE else "full run")

# %% [markdown]
# ## 1. The device question
#
# minires computes with NumPy on the CPU and with **CuPy** on an NVIDIA GPU. CuPy copies
# NumPy's interface (`cupy.zeros`, `cupy.sum`, `x @ w` ...), so most ops are written once
# against an array module `xp` that is either `numpy` or `cupy`
# (`minires.backends.get_array_module`). Where NumPy has no fast equivalent on the GPU, an op
# launches one of **our own CUDA kernels** from `kernels/*.cu` instead (sections 5 to 7).
#
# CuPy is an optional extra (`pip install -e ".[cuda12]"`, or `[cuda13]`, to match your
# driver). `minires.cuda_status()` answers whether a GPU can be used and, if not, why:

# %%
GPU, reason = minires.cuda_status()
DEVICE = "cuda" if GPU else "cpu"
print(f"GPU usable: {GPU} ({reason})")
print("DEVICE =", DEVICE)

# %% [markdown]
# Everything after this cell only mentions `DEVICE`: a tensor is created on it with
# `minires.tensor(array, device=DEVICE)`, a model moves its parameters there with
# `model.to(DEVICE)`, and `tensor.numpy()` always brings a copy back to the CPU.

# %% [markdown]
# ## 2. CIFAR-10
#
# minires reads the official *binary* version of CIFAR-10: a folder `cifar-10-batches-bin/`
# with `data_batch_1.bin` ... `data_batch_5.bin` (50,000 training images) and
# `test_batch.bin` (10,000). It looks for that folder under a **data root**: the `root=`
# argument, else the environment variable `MINIRES_DATA`, else `~/.cache/minires`.
# Ways to get it there:
#
# * `minires.data.CIFAR10(download=True)` (or `python -m minires train ... --download`)
#   fetches the 160 MB archive, checks its checksum and unpacks it;
# * on the course machines, which are offline, a JPEG copy is kept in `shared/data`: run
#   `python ../shared/data/prepare_cifar10.py DIR` from the repository (it needs Pillow), then
#   `export MINIRES_DATA=DIR` before starting Python or Jupyter. (That copy went through
#   JPEG, so accuracies measured on it can sit about a point below published CIFAR-10 figures.)
#
# Where the files are not found, the tutorial goes on with a **stand-in**: a few hundred
# random CIFAR-shaped images in which each class is a coarse colour pattern plus noise.
# It is learnable, so you can watch the loss fall, but the accuracies it gives say nothing
# about CIFAR-10. Set `DOWNLOAD = True` to fetch the real thing instead.

# %%
DOWNLOAD = False   # True: download CIFAR-10 (160 MB) into the data root if it is missing
DATA_ROOT = default_root()
have_cifar = all(os.path.isfile(os.path.join(DATA_ROOT, "cifar-10-batches-bin", name))
                 for name in ["test_batch.bin"] + [f"data_batch_{i}.bin" for i in range(1, 6)])
print("data root:", DATA_ROOT, "| CIFAR-10 found there" if have_cifar else "| no CIFAR-10 there")


def stand_in_data(n, seed):
    """n CIFAR-shaped uint8 images: class k is a fixed coarse colour pattern, half covered by noise."""
    patterns = np.random.default_rng(1234).uniform(0, 255, (10, 3, 4, 4)).repeat(8, axis=2).repeat(8, axis=3)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = 0.5 * patterns[labels] + rng.uniform(0, 127, (n, 3, 32, 32))
    return ArrayDataset(images.astype(np.uint8), labels, [f"pattern {k}" for k in range(10)])


if have_cifar or DOWNLOAD:
    DATA_NAME = "CIFAR-10"
    train_set = CIFAR10(DATA_ROOT, train=True, download=DOWNLOAD)
    test_set = CIFAR10(DATA_ROOT, train=False, download=DOWNLOAD)
else:
    DATA_NAME = "STAND-IN data (not CIFAR-10)"
    train_set = stand_in_data(1000, seed=0)
    test_set = stand_in_data(500, seed=1)
    print("*** CIFAR-10 was not found: using random stand-in images; accuracies below are not CIFAR-10's ***")

if SMOKE:   # tiny subsets, so that CI runs in seconds
    train_set = ArrayDataset(train_set.images[:256], train_set.labels[:256], train_set.classes)
    test_set = ArrayDataset(test_set.images[:64], test_set.labels[:64], test_set.classes)
elif not GPU:   # evaluating all 10,000 test images takes minutes on a CPU: use the first 1,000
    test_set = ArrayDataset(test_set.images[:1000], test_set.labels[:1000], test_set.classes)
print(DATA_NAME, "| training:", train_set, "| held out:", test_set)

# %%
fig, axes = plt.subplots(2, 8, figsize=(11, 3.2), layout="constrained")
for ax, image, label in zip(axes.ravel(), train_set.images, train_set.labels):
    ax.imshow(image.transpose(1, 2, 0))   # C x H x W -> H x W x C for imshow
    ax.set_title(train_set.classes[label], fontsize=9)
    ax.axis("off")
fig.suptitle(f"{DATA_NAME}: the first training images")
plt.show()

# %% [markdown]
# The recipe of the paper: normalise every channel by the training set's mean and standard
# deviation, and **augment** the training images: pad each side with 4 zero pixels, cut a
# random 32x32 window, and mirror it left-right half the time. Each epoch then shows the
# network slightly different images, which matters a lot on a data set this small.
# The held-out images are only normalised. `minires.training.make_transforms` builds both
# pipelines from the training set, exactly as `python -m minires train` does.

# %%
augment, normalize = make_transforms(train_set, augment=True)
print("training images:", augment)
print("held-out images:", normalize)

# %% [markdown]
# ## 3. ResNet-20
#
# `resnet20()` is the network of the paper's section 4.2: a 3x3 convolution to 16 channels,
# three stages of three `BasicBlock`s each (16 channels at 32x32, 32 at 16x16, 64 at 8x8),
# global average pooling and one linear layer to the ten classes. Depth 20 = 1 + 3 x 3 x 2 + 1
# layers with weights. Where a stage halves the resolution and doubles the channels the
# shortcut is option A, which has no parameters. So where do the paper's "0.27M" parameters
# sit?

# %%
minires.manual_seed(0)
model = resnet20().to(DEVICE)
print(f"ResNet-20 has {model.num_parameters():,} parameters")

# The model's parts: model.stem (conv + BN + ReLU), model.blocks (9 blocks), model.head (pool + linear).
parts = {"stem: conv + BN": 0, "stage 1 (16 ch)": 0, "stage 2 (32 ch)": 0, "stage 3 (64 ch)": 0, "head: classifier": 0}
for name, p in model.named_parameters():   # names like "stem.0.weight", "blocks.4.conv1.weight", "head.1.bias"
    if name.startswith("blocks."):
        part = list(parts)[1 + int(name.split(".")[1]) // 3]   # blocks 0-2, 3-5, 6-8
    else:
        part = "head: classifier" if name.startswith("head.") else "stem: conv + BN"
    parts[part] += p.numel()
for part, count in parts.items():
    print(f"  {part:16s} {count:7,d}  ({count / model.num_parameters():5.1%})")

# %% [markdown]
# Doubling the channels quadruples the weights of a 3x3 convolution, so the last stage, at
# the lowest resolution, holds three quarters of the parameters, while the first stage, at
# the highest resolution, does as much arithmetic with a sixteenth of them.

# %% [markdown]
# ## 4. Training, briefly
#
# The paper trains with SGD (momentum 0.9, weight decay $10^{-4}$, batch 128) at learning
# rate 0.1, divided by 10 after 32,000 and 48,000 steps, and stops at 64,000: about 180
# epochs. We keep the optimiser and the first learning rate, and train for as many steps as
# fit in a **time budget** (or one epoch, whichever comes first), so that the cell ends in
# classroom minutes on any machine. We time every step to work out what the whole
# schedule would cost on *your* machine.
#
# The loop is `minires.training.train_steps`, the one `python -m minires train` runs too:
# forward, loss, `zero_grad`, backward, `step`, for a number of steps. After every step it
# calls a function of ours, `after_step`, which records the loss and the time and returns
# `True` to stop once the budget is used up. The loop sums the loss on the device and only
# reading it (`metrics.loss`) waits for the GPU; we read it after every step on purpose,
# so that each step's time is the time the GPU really took.

# %%
BATCH_SIZE = 16 if SMOKE else 128
TIME_BUDGET_S = 60 if SMOKE else 300   # stop early when this is used up

loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, drop_last=True, transform=augment, seed=0)
test_loader = DataLoader(test_set, batch_size=256, shuffle=False, transform=normalize)
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
MAX_STEPS = 3 if SMOKE else len(loader)   # smoke: a handful; else one epoch

losses, step_times = [], []
start = time.perf_counter()
clock = [start]   # when the last step ended


def after_step(step, metrics):
    """Record the loss and the duration of step ``step``; True (stop) once the budget is used up."""
    losses.append(metrics.loss)   # the mean loss of this step alone: waits for the GPU to finish it
    metrics.reset()
    now = time.perf_counter()
    step_times.append(now - clock[0])
    clock[0] = now
    if step % 25 == 0 or step == 1:
        print(f"step {step:4d}  loss {losses[-1]:.3f}  ({now - start:.0f} s)")
    return now - start >= TIME_BUDGET_S


train_steps(model, loader, optimizer, MAX_STEPS, DEVICE, on_step=after_step)
elapsed = time.perf_counter() - start
print(f"trained {len(losses)} steps of {BATCH_SIZE} images in {elapsed:.0f} s")

test_loss, test_accuracy, confusion = evaluate(model, test_loader, num_classes=10, device=DEVICE)
print(f"held-out accuracy on {len(test_set)} images: {test_accuracy:.1%}  (chance: 10%)  [{DATA_NAME}]")

# %% [markdown]
# How long would the paper's schedule take here? The first step includes one-off work
# (on a GPU: compiling the kernels), so we leave it out of the average.

# %%
seconds_per_image = np.mean(step_times[1:] if len(step_times) > 1 else step_times) / BATCH_SIZE
paper_images = 64_000 * 128
print(f"{1 / seconds_per_image:,.0f} training images per second on {DEVICE}")
hours = paper_images * seconds_per_image / 3600
print(f"the paper's 64,000 steps of 128 images would take about {hours:.1f} hours here")
if SMOKE:
    print("(smoke run: tiny batches, so this estimate is rough)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
axes[0].plot(np.arange(1, len(losses) + 1), losses, lw=0.8, label="per batch")
if len(losses) >= 20:
    window = 20
    axes[0].plot(np.arange(window, len(losses) + 1), np.convolve(losses, np.ones(window) / window, "valid"),
                 lw=2, label=f"mean of {window}")
axes[0].axhline(np.log(10), color="gray", ls=":", label="ln 10: guessing")
axes[0].set_xlabel("step")
axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))   # steps are counted: no 2.5
axes[0].set_ylabel("training loss")
axes[0].set_title(f"ResNet-20 on {DATA_NAME}")
axes[0].legend()
bars = {"chance": 0.10, f"ours, {len(losses)} steps": test_accuracy, "paper, 64k steps": 0.9125}
axes[1].bar(list(bars), list(bars.values()), color=["gray", "tab:blue", "tab:green"])
for x, value in enumerate(bars.values()):
    axes[1].text(x, value + 0.02, f"{value:.1%}", ha="center")
axes[1].set_ylim(0, 1.05)
axes[1].set_xlabel("model")
axes[1].set_ylabel("held-out accuracy")
axes[1].set_title("Where we are")
plt.show()

# %% [markdown]
# The full recipe (learning-rate steps, 182 epochs, a checkpoint after every epoch that
# `--resume` picks up, learning-curve plots) is one command. On a GPU:
#
# ```bash
# python -m minires train --model resnet20 --dataset cifar10 --device cuda --data-root DIR
# ```
#
# On a CPU it runs too (`--device cpu`), for the number of hours printed above.

# %% [markdown]
# ## 5. Reading a kernel: ReLU
#
# Where are the GPU's hours saved? A GPU runs tens of thousands of threads at once. A CUDA
# **kernel** is the function each thread runs; a launch `kernel<<<grid, block>>>` (in CuPy:
# `kernel((grid,), (block,), args)`) starts `grid` **blocks** of `block` threads each, and
# every thread finds out who it is from `blockIdx.x` (its block, $0 \dots$ `gridDim.x`$-1$)
# and `threadIdx.x` (its place in the block, $0 \dots$ `blockDim.x`$-1$). Everything else
# follows from how a kernel turns those two numbers into the data it works on: its
# **thread-to-data mapping**. Here is our simplest kernel file:

# %%
KERNELS = Path(kernel_dir())
print(f"--- {KERNELS / 'relu.cu'} ---")
print((KERNELS / "relu.cu").read_text(encoding="utf-8"))

# %% [markdown]
# `template <typename T>` makes one source serve `float` and `double`; the wrapper in
# `minires/backends/cuda/relu.py` asks for `relu_forward<float>` when the tensor is float32.
#
# The loop is a **grid-stride loop**. Thread `threadIdx.x` = $t$ of block `blockIdx.x` = $b$
# starts at element $i = b \cdot B + t$ (with $B$ = `blockDim.x`) and then jumps by the total
# number of threads, $S = B \cdot G$ (with $G$ = `gridDim.x`):
#
# $$ i \in \{\, bB + t,\; bB + t + S,\; bB + t + 2S,\; \dots \,\} \cap [0, n). $$
#
# Two consequences:
#
# * **Any launch covers any $n$.** The starting points $bB + t$ are $0, 1, \dots, S - 1$, each
#   once, and the jumps of $S$ reach every later element exactly once. minires launches
#   $\lceil n / 256 \rceil$ blocks of 256 threads (at most 65,535 blocks), so usually each thread
#   handles one element, and the loop only turns for tensors above 16.7 million values.
# * **Neighbouring threads touch neighbouring addresses.** In each turn of the loop the
#   threads of a block read one contiguous stretch of memory, which the GPU fetches in a few
#   wide transactions ("coalesced" access). A mapping in which thread $t$ handled the $t$-th
#   *chunk* would scatter each transaction over many chunks.
#
# Before running anything, simulate the loop in Python for a tiny launch of $G = 3$ blocks of
# $B = 8$ threads over $n = 100$ elements:

# %%
def simulate_grid_stride(n, grid, block):
    """For each element, the (block, thread) that the grid-stride loop gives it, by running the loop."""
    block_of, thread_of = np.full(n, -1), np.full(n, -1)
    for b in range(grid):
        for t in range(block):
            i = b * block + t
            while i < n:
                block_of[i], thread_of[i] = b, t
                i += block * grid
    return block_of, thread_of


N_ELEMENTS, GRID, BLOCK = 100, 3, 8
sim_block, sim_thread = simulate_grid_stride(N_ELEMENTS, GRID, BLOCK)
for b, t in [(0, 0), (0, 1), (1, 0), (2, 7)]:
    print(f"block {b}, thread {t} handles elements {np.flatnonzero((sim_block == b) & (sim_thread == t)).tolist()}")
print("every element handled exactly once:", (sim_block >= 0).all())

# %% [markdown]
# ## 6. A kernel that cooperates: the global average pool
#
# ReLU's threads never need each other. A **reduction** does: global average pooling turns
# each (image, channel) plane of $H \times W$ pixels into its mean, so many values must flow
# into one. `kernels/pooling.cu` gives every plane one block of 256 threads. Here is just
# that kernel, cut out of the file:

# %%
def kernel_source(text, name):
    """The definition of kernel ``name`` in a .cu file's ``text``, with the comment lines above it."""
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if f"void {name}(" in line)
    while start > 0 and lines[start - 1].startswith(("//", "template")):
        start -= 1
    end = next(k for k in range(start, len(lines)) if lines[k] == "}")   # the closing brace, in column 0
    return "\n".join(lines[start:end + 1])


pooling_cu = (KERNELS / "pooling.cu").read_text(encoding="utf-8")
print(kernel_source(pooling_cu, "global_avg_pool_forward"))

# %% [markdown]
# Three new words:
#
# * `__shared__ T partial[256]` is memory **shared by the threads of one block** (each block
#   has its own copy), small and fast, on the chip. It is how threads of a block talk.
# * `__syncthreads()` is a **barrier**: no thread of the block goes past it until all of them
#   have reached it. Without the first one, thread 0 could add `partial[128]` before thread
#   128 has written it.
# * `blockIdx.x` is now the *plane*: the mapping is one block per plane, not one thread per
#   element.
#
# Step 1 is a grid-stride loop again, but inside one block: thread $t$ sums pixels
# $t, t + 256, t + 512, \dots$ of its plane. Step 2 is a **tree reduction**: 256 partial sums
# become 128, 64, ..., 1, in 8 rounds instead of 255 additions in a row. Here it is in
# NumPy for a block of 16 threads, every round drawn as a row:

# %%
partial = np.arange(1.0, 17.0)   # what 16 threads hold after step 1
rounds, active = [partial.copy()], [np.zeros(16, bool)]
half = len(partial) // 2
while half > 0:
    partial[:half] += partial[half:2 * half]   # thread t < half: partial[t] += partial[t + half]
    rounds.append(partial.copy())
    active.append(np.arange(16) < half)
    half //= 2

fig, ax = plt.subplots(figsize=(11, 3.4), layout="constrained")
ax.imshow(np.array(active), cmap=ListedColormap(["#eeeeee", "#9ecae1"]), aspect="auto")
for r, values in enumerate(rounds):
    for t, value in enumerate(values):
        ax.text(t, r, f"{value:g}", ha="center", va="center", fontsize=8,
                color="black" if r == 0 or active[r][t] else "#aaaaaa")
ax.set_xticks(range(16))
ax.set_yticks(range(len(rounds)))
ax.set_yticklabels(["after step 1"] + [f"half = {16 >> (r + 1)}" for r in range(len(rounds) - 1)])
ax.set_xlabel("thread t (= slot of partial[])")
ax.set_ylabel("round")
ax.set_title("Tree reduction in shared memory. Blue: the threads that add in this round; "
             "grey numbers: no longer read")
plt.show()
print("partial[0] at the end:", rounds[-1][0], "= sum 1..16 =", np.arange(1, 17).sum())

# %% [markdown]
# Every round ends with `__syncthreads()`, and every thread, active or not, must reach it:
# that is why the kernel writes `if (t < half) ...` inside the loop instead of letting the
# idle threads `return` early.

# %% [markdown]
# ## 7. Running kernels
#
# With a GPU, minires runs these kernels whenever a tensor lives on `"cuda"`. Without one,
# it has a second way: the **kernel emulator**, `minires.backends.emulator`. Its
# `EmulatedModule` looks like `cupy.RawModule` (give it the `.cu` source and the kernel
# names, get back functions called as `kernel((grid,), (block,), args)`), but compiles the
# source with the ordinary C++ compiler and runs **each CUDA thread as a host thread**:
# `threadIdx` and `blockIdx` become per-thread variables, `__shared__` a variable all threads
# of the block see, and `__syncthreads()` a real barrier. It is slow, but it runs the very
# same kernel source, and it is stricter than a GPU: an untyped scalar or a write past the
# end of an array is an error.

# %%
if GPU:
    RUNNER, why = "cupy", "kernels run on the GPU through CuPy"
else:
    usable, why = emulator_status()
    RUNNER = "emulator" if usable else None
print("kernel runner:", RUNNER, "|", why)
if RUNNER is None:
    print("The cells that run kernels will say so and skip.")

# %% [markdown]
# First, a whole op. Inside `with emulate_kernels():` every op sends its NumPy arrays down
# the *kernel path*: the same wrapper code that would allocate outputs and pick launch sizes
# on a GPU runs, on NumPy arrays, and the emulator runs the kernels. Given a list,
# `emulate_kernels(launches=...)` records every launch. We compare with the ordinary NumPy path.

# %%
launches = []


def through_kernels(fn, *arrays):
    """fn applied to minires tensors made from ``arrays``, computed by our CUDA kernels; a NumPy result."""
    if RUNNER == "cupy":
        return fn(*[minires.tensor(a, device="cuda") for a in arrays]).numpy()
    with emulate_kernels(launches=launches):
        return fn(*[minires.tensor(a) for a in arrays]).numpy()


rng = np.random.default_rng(0)
x = rng.standard_normal((4, 16, 8, 8)).astype(np.float32)
if RUNNER is None:
    print("skipped:", why)
else:
    for name, fn in [("relu", F.relu), ("global_avg_pool2d", F.global_avg_pool2d)]:
        launches.clear()
        by_kernel = through_kernels(fn, x)
        by_numpy = fn(minires.tensor(x)).numpy()
        difference = np.abs(by_kernel - by_numpy).max()
        print(f"{name}: output {by_kernel.shape}, largest difference from NumPy {difference:.1e}")
        for kernel, grid, block in launches:
            print(f"    launched {kernel} on {grid[0]} block(s) of {block[0]} threads")

# %% [markdown]
# ReLU on $4 \cdot 16 \cdot 8 \cdot 8 = 4096$ values got $4096 / 256 = 16$ blocks, one thread
# per element; the global average pool got one block per plane, $4 \cdot 16 = 64$. The two
# reductions add in different orders, so their float32 results may differ in the last bit.
#
# Now a kernel of our own, written here as a string. It keeps ReLU's grid-stride loop but,
# instead of computing anything, writes down *who* visited each element. `launch` is a small
# helper: CuPy's `RawModule` on a GPU, `EmulatedModule` otherwise; NumPy arrays in `args`
# get the kernel's results. Sizes are passed as `numpy.int32`, because the kernel's `int n`
# reads exactly four bytes.

# %%
WHO_WROTE = r"""
__global__ void who_wrote(int* block_of, int* thread_of, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        block_of[i] = blockIdx.x;
        thread_of[i] = threadIdx.x;
    }
}
"""


def launch(code, name, grid, block, args):
    """Compile ``code`` and run kernel ``name`` on ``grid`` blocks of ``block`` threads.
    NumPy arrays in ``args`` are updated in place; scalars must be typed (numpy.int32, numpy.float32)."""
    if RUNNER == "cupy":
        module = cupy.RawModule(code=code, options=("-std=c++14",), name_expressions=[name])
        on_gpu = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
        module.get_function(name)((grid,), (block,), tuple(on_gpu))
        for a, g in zip(args, on_gpu):
            if isinstance(a, np.ndarray):
                a[...] = cupy.asnumpy(g)
    elif RUNNER == "emulator":
        EmulatedModule(code=code, name_expressions=[name]).get_function(name)((grid,), (block,), tuple(args))
    else:
        raise RuntimeError(f"no way to run a kernel here: {why}")


if RUNNER is None:
    print("skipped:", why, "- drawing the Python simulation instead")
    block_of, thread_of = sim_block, sim_thread
else:
    block_of = np.full(N_ELEMENTS, -1, dtype=np.int32)   # -1: nobody wrote here
    thread_of = np.full(N_ELEMENTS, -1, dtype=np.int32)
    launch(WHO_WROTE, "who_wrote", GRID, BLOCK, (block_of, thread_of, np.int32(N_ELEMENTS)))
    print("the kernel's record equals the Python simulation:",
          np.array_equal(block_of, sim_block) and np.array_equal(thread_of, sim_thread))

# %% [markdown]
# Drawn with one row per turn of the loop: row $r$ holds elements $rS \dots rS + S - 1$, with
# $S = 24$ threads in all. Colour is the block, the number the thread.

# %%
S = GRID * BLOCK
rows = -(-N_ELEMENTS // S)
grid_image = np.full(rows * S, np.nan)
grid_image[:N_ELEMENTS] = block_of
fig, ax = plt.subplots(figsize=(12, 2.8), layout="constrained")
ax.imshow(grid_image.reshape(rows, S), cmap=ListedColormap(["tab:blue", "tab:orange", "tab:green"]),
          vmin=-0.5, vmax=GRID - 0.5, aspect="auto")
for i in range(N_ELEMENTS):
    ax.text(i % S, i // S, str(thread_of[i]), ha="center", va="center", fontsize=8, color="white")
ax.set_xticks(range(0, S, BLOCK))
ax.set_xlabel(f"element index mod {S}  (colour: block 0 blue, 1 orange, 2 green; number: threadIdx.x)")
ax.set_yticks(range(rows))
ax.set_yticklabels([f"elements {r * S}-{min((r + 1) * S, N_ELEMENTS) - 1}" for r in range(rows)])
ax.set_ylabel("turn of the loop")
ax.set_title(f"Who wrote each of {N_ELEMENTS} elements: grid of {GRID} blocks x {BLOCK} threads, grid-stride loop")
plt.show()

# %% [markdown]
# The last row is short: $100 = 4 \cdot 24 + 4$, so only threads 0-3 of block 0 make a fifth
# turn, and the other 20 threads find $i \ge n$ and stop. That bounds check `i < n` is the
# line every kernel needs.
#
# Finally, the whole trained network through our kernels: convolution (im2col), batch norm,
# ReLU, the option-A shortcut and pooling, compared with a copy of the network on the NumPy
# path. Emulated, this is slow (every launch starts hundreds of host threads), so we use two
# images, and in a smoke run only the first residual block.

# %%
reference = resnet20()
reference.load_state_dict(model.state_dict())   # the trained weights, as NumPy arrays on the CPU
reference.eval()
model.eval()
if SMOKE:
    net, ref_net, x = model.blocks[0], reference.blocks[0], rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
else:
    net, ref_net, x = model, reference, normalize(test_set.images[:2].astype(np.float32) / 255)
if RUNNER is None:
    print("skipped:", why)
else:
    tick = time.perf_counter()
    launches.clear()
    with minires.no_grad():
        by_kernels = through_kernels(net, x)
        by_numpy = ref_net(minires.tensor(x)).numpy()
    difference, seconds = np.abs(by_kernels - by_numpy).max(), time.perf_counter() - tick
    print(f"{'first block' if SMOKE else 'ResNet-20'} through our kernels ({RUNNER}): output {by_kernels.shape}, "
          f"largest difference from NumPy {difference:.1e} ({seconds:.1f} s)")
    if launches:
        names = sorted({kernel for kernel, _, _ in launches})
        print(f"{len(launches)} launches of {len(names)} kernels:", ", ".join(names))

# %% [markdown]
# ## Summary
#
# * `minires.cuda_status()` says whether a GPU is usable and why not; `DEVICE` is then the
#   only thing that changes between CPU and GPU code.
# * ResNet-20 has 269,722 parameters, three quarters of them in its last stage. A brief run
#   shows it learning; the paper's 91% takes 64,000 steps, which the GPU makes practical:
#   `python -m minires train --model resnet20 --dataset cifar10 --device cuda --data-root DIR`.
# * A CUDA kernel is what one thread does; `blockIdx.x`, `threadIdx.x`, `blockDim.x` and
#   `gridDim.x` decide which data it does it to. A grid-stride loop covers any size with any
#   launch, with neighbouring threads on neighbouring addresses.
# * Threads of one block cooperate through `__shared__` memory, separated into phases by
#   `__syncthreads()`, which every thread of the block must reach.
# * Without a GPU, `minires.backends.emulator.emulate_kernels()` runs the same `.cu` sources on
#   host threads, which is how minires tests its kernels on any machine.
#
# ## Exercises
#
# Each exercise has a check cell that prints ✓ or ✗ (and a hint, and stops). The file ships with
# one possible answer filled in, after a `# One possible answer` comment, so that it runs top to
# bottom; try your own first. While an answer is still `pass` or `...`, the check prints "not
# answered yet" and the file runs on. The kernel exercises need a kernel runner (a GPU, or a C++
# compiler for the emulator); without one their checks say "skipped".

# %%
from minires.exercises import Skip, answered, check  # the ✓ / ✗ / "not answered yet" of the check cells


def run_student_kernel(code, name, grid, block, args):
    """launch(), but a compile error becomes a ✗ with the compiler's message instead of a traceback."""
    try:
        launch(code, name, grid, block, args)
        return True
    except Exception as error:   # a compile error, a wrong argument type, a write out of bounds ...
        print(f"{type(error).__name__}: {str(error)[-3000:]}")
        return False


# %% [markdown]
# ### Exercise 1: who handles element i?
#
# No kernel to write yet: with pencil and paper first, then in Python. For a grid-stride loop
# launched on `grid` blocks of `block` threads, which `(blockIdx.x, threadIdx.x)` handles
# element `i`? Write `writer(i, grid, block)` without any loop.

# %%
# One possible answer: the loop visits i once the start b * block + t equals i modulo the stride.
def writer(i, grid, block):
    first = i % (grid * block)   # the thread's starting element, its global thread number
    return first // block, first % block


# %%
def writer_agrees():
    for n, grid, block in [(100, 3, 8), (1000, 7, 32), (50, 4, 16)]:   # the last: more threads than elements
        expected_block, expected_thread = simulate_grid_stride(n, grid, block)
        if not all(answered(writer(i, grid, block)) == (expected_block[i], expected_thread[i]) for i in range(n)):
            return False
    # and against what the kernel recorded above (or, with no kernel runner, the simulation again)
    return all(writer(i, GRID, BLOCK) == (block_of[i], thread_of[i]) for i in range(N_ELEMENTS))


check("Exercise 1: writer(i, grid, block) agrees with the loop", writer_agrees,
      "the thread with global number g = b * block + t starts at element g and steps by grid * block")

# %% [markdown]
# ### Exercise 2: a leaky ReLU kernel
#
# Write the CUDA kernel `leaky_relu_forward(const float* x, float* y, float slope, int n)`
# that computes $y_i = x_i$ where $x_i > 0$ and $y_i = \text{slope} \cdot x_i$ elsewhere, for
# all $n$ elements. The check launches it with **fewer threads than elements** (3 blocks of
# 128 threads for 1,000 values), and fills `y` with NaN first, so an element you forget shows.

# %%
# One possible answer:
LEAKY_RELU = r"""
__global__ void leaky_relu_forward(const float* x, float* y, float slope, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
    }
}
"""

# %%
def leaky_relu_matches_numpy():
    code = answered(LEAKY_RELU)
    if RUNNER is None:
        raise Skip(why)
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    y = np.full_like(x, np.nan)
    slope = np.float32(0.1)
    ran = run_student_kernel(code, "leaky_relu_forward", 3, 128, (x, y, slope, np.int32(x.size)))
    expected = np.where(x > 0, x, slope * x)
    if ran:
        print(f"{np.isnan(y).sum()} elements left unwritten, largest error {np.nanmax(np.abs(y - expected)):.1e}")
    return ran and np.allclose(y, expected, rtol=1e-6, atol=0)


check("Exercise 2: leaky_relu_forward matches NumPy", leaky_relu_matches_numpy,
      "every element i < n must be written: use a grid-stride loop, and slope * x where x <= 0")

# %% [markdown]
# ### Exercise 3: the largest value of each block, in shared memory
#
# Write `block_max(const float* x, float* maxima, int n)`: launched on $\lceil n / 256 \rceil$
# blocks of 256 threads, block $b$ writes `maxima[b]`, the largest of the elements
# $256 b \dots 256 b + 255$ (those that are $< n$). Follow the global average pool: one value
# per thread into a `__shared__ float partial[256]`, then a tree reduction with
# `__syncthreads()`, taking the larger of two values instead of their sum. Mind the last
# block, which is only partly filled (1,000 = 3 x 256 + 232), and the negative numbers: a
# missing element must not win, so 0 is no good as a filler.

# %%
# One possible answer. A thread past the end copies its block's first element (which exists):
# a duplicate cannot change a maximum.
BLOCK_MAX = r"""
__global__ void block_max(const float* x, float* maxima, int n) {
    __shared__ float partial[256];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? x[i] : x[blockIdx.x * blockDim.x];
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half && partial[t + half] > partial[t]) partial[t] = partial[t + half];
        __syncthreads();
    }
    if (t == 0) maxima[blockIdx.x] = partial[0];
}
"""

# %%
def block_max_matches_numpy():
    code = answered(BLOCK_MAX)
    if RUNNER is None:
        raise Skip(why)
    x = -np.abs(np.random.default_rng(3).standard_normal(1000)).astype(np.float32)   # all negative
    blocks = -(-x.size // 256)
    maxima = np.full(blocks, np.nan, dtype=np.float32)
    ran = run_student_kernel(code, "block_max", blocks, 256, (x, maxima, np.int32(x.size)))
    expected = np.maximum.reduceat(x, np.arange(0, x.size, 256))
    print("kernel:", maxima, "\nNumPy: ", expected)
    return ran and np.array_equal(maxima, expected)


check("Exercise 3: block_max matches NumPy, partial last block included", block_max_matches_numpy,
      "every thread must reach each __syncthreads(); threads past n need a value that cannot win")
