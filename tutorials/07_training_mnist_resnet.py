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
# # 7. Training a ResNet on MNIST
#
# Time to train a real network end to end. We use the small ResNet for 28x28 digits from
# `minires.models.mnist_resnet` on the MNIST sample that ships with minires (so no download),
# with the same recipe as `python -m minires train`:
#
# | | |
# | --- | --- |
# | model | `mnist_resnet()`: depth 8, three stages of one `BasicBlock` each (16, 32, 64 channels), option-A shortcuts |
# | data | `MNISTSample`: 8,000 training and 2,000 held-out images, normalised by the training set's mean and std |
# | optimiser | SGD, learning rate 0.1, momentum 0.9, weight decay $10^{-4}$, batch 128 |
# | schedule | 6 epochs, learning rate divided by 10 at 50% and 75% of training |
#
# The command does all of this in one line; here we write every step out: the data loader,
# the model, the optimiser and schedule, the training and evaluation loops, saving and
# reloading a checkpoint, and finally a look at what the network gets wrong.
#
# On a laptop CPU the full run takes a few minutes and reaches about 98% held-out accuracy.
# (With `MINIRES_SMOKE=1` set, as in CI, it trains briefly on a small subset instead.)

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
from minires import optim
from minires.data import ArrayDataset, DataLoader, MNISTSample, Normalize, mean_std
from minires.models import mnist_resnet
from minires.training import evaluate, load_checkpoint, save_checkpoint

SMOKE = os.environ.get("MINIRES_SMOKE", "0") not in ("", "0")
DEVICE = "cuda" if minires.cuda_is_available() else "cpu"   # CuPy and a GPU if you have them
EPOCHS = 1 if SMOKE else 6
BATCH_SIZE = 128
minires.manual_seed(0)                                      # weights are initialised from this seed
print("device:", DEVICE, "| epochs:", EPOCHS, "| smoke test" if SMOKE else "")

# %% [markdown]
# ## 1. The data
#
# A data set in minires holds all its images in one `uint8` array of shape
# $N \times C \times H \times W$ and the labels in another. The `DataLoader` cuts shuffled
# mini-batches out of them, scales the pixels to $[0, 1]$, and applies a transform to the
# whole batch at once. Our only transform is `Normalize`: subtract the mean pixel value and
# divide by the standard deviation, both measured on the **training** set (never on the
# test set: it stands in for data we have not seen yet).

# %%
train_set = MNISTSample(train=True)
test_set = MNISTSample(train=False)
if SMOKE:   # a small subset, so that CI runs in seconds
    train_set = ArrayDataset(train_set.images[:512], train_set.labels[:512], train_set.classes)
    test_set = ArrayDataset(test_set.images[:256], test_set.labels[:256], test_set.classes)
print(train_set, "|", test_set)
print("images:", train_set.images.dtype, train_set.images.shape, "labels:", train_set.labels[:10])

mean, std = mean_std(train_set)
normalize = Normalize(mean, std)
print(f"pixel mean {mean[0]:.4f}, std {std[0]:.4f}")

train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, transform=normalize, seed=0)
test_loader = DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=False, transform=normalize)
images, labels = next(iter(train_loader))
print("one batch:", images.dtype, images.shape, labels.dtype, labels.shape,
      f"| normalised pixels: mean {images.mean():.3f}, std {images.std():.3f}")

# %%
fig, axes = plt.subplots(2, 8, figsize=(10, 3), layout="constrained")
for ax, image, label in zip(axes.ravel(), train_set.images, train_set.labels):
    ax.imshow(image[0], cmap="gray")
    ax.set_title(str(label))
    ax.axis("off")
fig.suptitle("The first training images and their labels")
plt.show()

# %% [markdown]
# ## 2. The model
#
# `mnist_resnet()` is the CIFAR ResNet layout of He et al. scaled to digits: a 3x3
# convolution, three stages (28x28 with 16 channels, 14x14 with 32, 7x7 with 64), global
# average pooling and one linear layer. The first block of stages 2 and 3 halves the
# resolution and doubles the channels, so its shortcut is option A (subsample and pad with
# zero channels, tutorial 5). Depth 8 counts the layers with weights: 1 + 3 blocks x 2 + 1.
#
# A sanity check before training: ten classes, random weights, so the predicted
# distribution is close to uniform and the cross-entropy should be close to $\ln 10 \approx 2.30$.

# %%
model = mnist_resnet().to(DEVICE)
print(model)

with minires.no_grad():
    model.eval()
    logits = model(minires.tensor(images, device=DEVICE))
    print(f"loss before training: {F.cross_entropy(logits, labels).item():.3f}  (ln 10 = {np.log(10):.3f})")

# %% [markdown]
# ## 3. Optimiser and learning-rate schedule
#
# SGD with momentum keeps a running "velocity" per parameter; weight decay adds
# $\lambda w$ to every gradient, pulling the weights gently towards zero. The schedule
# starts with a large learning rate to make fast progress and divides it by 10 twice
# near the end, to settle into a minimum. `scheduler.step()` is called once per epoch.

# %%
optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
milestones = sorted({max(1, round(f * EPOCHS)) for f in (0.5, 0.75)})   # epochs 3 and 4 of 6
scheduler = optim.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
print("lr divided by 10 after epochs", milestones)

# %% [markdown]
# ## 4. The training loop, written out
#
# One optimisation step is always the same five lines: forward, loss, clear the old
# gradients, backward, update. `model.train()` makes batch norm normalise with the
# statistics of the current batch (and update its running averages); `model.eval()`
# switches it to those running averages, so that a prediction does not depend on which
# other images share its batch. Evaluation runs under `minires.no_grad()`: no graph is
# recorded, which saves time and memory.

# %%
def train_one_epoch(model, loader, optimizer):
    """One pass over the training data; returns the loss of every batch and the accuracy."""
    model.train()
    batch_losses, correct, seen = [], 0, 0
    for images, labels in loader:
        logits = model(minires.tensor(images, device=DEVICE))
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        batch_losses.append(loss.item())
        correct += int((logits.numpy().argmax(axis=1) == labels).sum())
        seen += len(labels)
    return batch_losses, correct / seen


def predict_all(model, loader):
    """Class probabilities for every image of ``loader``, in the loader's order."""
    model.eval()
    probabilities = []
    with minires.no_grad():
        for images, _ in loader:
            logits = model(minires.tensor(images, device=DEVICE)).numpy().astype(np.float64)
            p = np.exp(logits - logits.max(axis=1, keepdims=True))   # softmax, computed stably
            probabilities.append(p / p.sum(axis=1, keepdims=True))
    return np.concatenate(probabilities)


# %%
history, all_batch_losses = [], []
start = time.perf_counter()
for epoch in range(EPOCHS):
    lr = optimizer.param_groups[0]["lr"]
    batch_losses, train_acc = train_one_epoch(model, train_loader, optimizer)
    scheduler.step()
    probabilities = predict_all(model, test_loader)
    test_acc = float((probabilities.argmax(axis=1) == test_set.labels).mean())
    test_loss = float(-np.log(probabilities[np.arange(len(test_set)), test_set.labels]).mean())
    all_batch_losses += batch_losses
    history.append(dict(epoch=epoch + 1, lr=lr, train_loss=float(np.mean(batch_losses)), train_acc=train_acc,
                        test_loss=test_loss, test_acc=test_acc))
    print(f"epoch {epoch + 1}/{EPOCHS}  lr {lr:.4f}  train loss {np.mean(batch_losses):.4f} acc {train_acc:.4f}  "
          f"test loss {test_loss:.4f} acc {test_acc:.4f}  ({time.perf_counter() - start:.0f} s)")
print(f"final held-out accuracy: {history[-1]['test_acc']:.4f}")

# %% [markdown]
# ## 5. Learning curves
#
# The training loss of every batch is noisy; the steps down where the learning rate
# drops are typical of step schedules. The held-out accuracy is measured once per epoch.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
steps_per_epoch = len(train_loader)
axes[0].plot(np.arange(1, len(all_batch_losses) + 1) / steps_per_epoch, all_batch_losses, lw=0.8)
for m in milestones:
    if m < EPOCHS:
        axes[0].axvline(m, color="gray", ls=":", lw=1)
axes[0].set_yscale("log")
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("training loss (per batch)")
axes[0].set_title("Training loss; dotted: learning rate / 10")
epochs = [h["epoch"] for h in history]
axes[1].plot(epochs, [h["train_acc"] for h in history], "o-", label="training (during the epoch)")
axes[1].plot(epochs, [h["test_acc"] for h in history], "s-", label="held out")
axes[1].set_xlabel("epoch")
axes[1].set_ylabel("accuracy")
axes[1].set_title("Accuracy")
axes[1].legend()
axes[0].set_xlim(0, EPOCHS)
for ax in axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))   # whole epochs: no 1.5
plt.show()

# %% [markdown]
# ## 6. Saving and reloading a checkpoint
#
# A checkpoint is everything needed to use the model later, or to continue training
# exactly: the model's parameters and batch-norm statistics (`model.state_dict()`), the
# optimiser's momentum buffers, the schedule's position, and whatever else we like.
# `save_checkpoint` writes it as a plain `.npz` file (arrays plus one JSON entry; no
# pickle, so loading a file from someone else cannot run their code).
#
# To prove the round trip works, we load it into a **fresh** model and check that it gives
# the same accuracy, this time measured with `minires.training.evaluate`, the function
# `python -m minires train` uses, which does what our `predict_all` did.

# %%
folder = tempfile.mkdtemp(prefix="minires-tutorial-")
path = os.path.join(folder, "mnist_resnet.npz")
save_checkpoint(path, {
    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
    "epoch": EPOCHS, "history": history,
})
print(f"saved {path}: {os.path.getsize(path) / 1e3:.0f} kB")
with np.load(path, allow_pickle=False) as npz:   # really just arrays
    print("a few entries of the file:", npz.files[:4])

checkpoint = load_checkpoint(path)
reloaded = mnist_resnet().to(DEVICE)
reloaded.load_state_dict(checkpoint["model"])
_, reloaded_acc, confusion = evaluate(reloaded, test_loader, num_classes=10, device=DEVICE)
print(f"reloaded model: held-out accuracy {reloaded_acc:.4f} (before saving: {history[-1]['test_acc']:.4f})")
print("same probabilities as the trained model:", np.array_equal(predict_all(reloaded, test_loader), probabilities))

# A new optimiser and schedule can pick up where these left off:
optimizer2 = optim.SGD(reloaded.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
scheduler2 = optim.MultiStepLR(optimizer2, milestones=milestones, gamma=0.1)
optimizer2.load_state_dict(checkpoint["optimizer"])
scheduler2.load_state_dict(checkpoint["scheduler"])
print("restored learning rate:", optimizer2.param_groups[0]["lr"], "| epochs done:", checkpoint["epoch"])

shutil.rmtree(folder)   # this one was only a demonstration; keep yours!

# %% [markdown]
# ## 7. What does the network get wrong?
#
# The **confusion matrix** counts, for every true class (row), how often each class was
# predicted (column). The diagonal holds the correct answers; everything else is a mistake,
# and its position says which digit was taken for which.

# %%
fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
ax.imshow(np.log1p(confusion), cmap="Blues")
for i in range(10):
    for j in range(10):
        if confusion[i, j]:
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if i == j else "black")
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title(f"Confusion matrix, {len(test_set)} held-out images")
plt.show()

# %% [markdown]
# And the misclassified images themselves, with the true label, the prediction and the
# probability the network gave it. Many are digits a person would hesitate over too.

# %%
predicted = probabilities.argmax(axis=1)
wrong = np.flatnonzero(predicted != test_set.labels)
print(f"{len(wrong)} of {len(test_set)} held-out images are misclassified")
wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:24]   # most confident mistakes first
if len(wrong):
    cols = 8
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(10, 1.5 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(test_set.images[i, 0], cmap="gray")
        ax.set_title(f"{test_set.labels[i]}→{predicted[i]} ({probabilities[i, predicted[i]]:.2f})", fontsize=9)
    fig.suptitle("Mistakes: true → predicted (probability), most confident first")
    plt.show()

# %% [markdown]
# ## Summary
#
# * Training is a loop of forward, loss, `zero_grad`, `backward`, `step`, over mini-batches
#   from a `DataLoader`, with `scheduler.step()` once per epoch.
# * `model.train()` and `model.eval()` matter because of batch norm; evaluation runs under
#   `minires.no_grad()`.
# * A checkpoint holds the model's `state_dict` (and the optimiser's and schedule's, to
#   resume); reloading it into a fresh model gives identical predictions.
# * `python -m minires train` runs this same recipe, and adds metric logs, learning-curve
#   plots, resuming and early stopping. Its loop is `minires.training.train_steps` (and
#   `train_epoch`, one pass over a loader): our `train_one_epoch`, written once for the whole
#   library, which keeps the running loss on the device instead of calling `.item()` every step.
#
# ## Exercises
#
# The file ships with one possible answer to each exercise filled in, after a
# `# One possible answer` comment, so that it runs top to bottom; try your own first. The check
# cell under each answer prints ✓ when it is right, and stops with ✗ and a hint when it is not.
# While an answer is still `pass`, it prints "not answered yet" and the file runs on.

# %%
from minires.exercises import answered, check  # the ✓ / ✗ / "not answered yet" of the check cells

# %% [markdown]
# ### Exercise 1: accuracy per class
#
# From the confusion matrix alone, compute the accuracy for each digit: the fraction of
# images of that class that were classified correctly. Which digit is hardest?

# %%
# One possible answer:
def per_class_accuracy(confusion):
    return np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)


# %%
expected = np.array([(predicted[test_set.labels == k] == k).mean() if (test_set.labels == k).any() else 0.0
                     for k in range(10)])


def per_class_accuracy_matches():
    acc = answered(per_class_accuracy(confusion))
    print("accuracy per digit:", np.round(acc, 3), "| hardest:", int(acc.argmin()))
    return np.allclose(acc, expected)


check("Exercise 1: per-class accuracy matches the predictions", per_class_accuracy_matches,
      "rows are true classes: divide the diagonal by each row's sum")

# %% [markdown]
# ### Exercise 2: the most common confusion
#
# Find the pair (true digit, predicted digit), with the two different, that occurs most
# often among the mistakes. Return it as a tuple `(true, predicted)`.

# %%
# One possible answer: zero the diagonal, then find the largest entry.
def most_common_confusion(confusion):
    off_diagonal = confusion - np.diag(np.diag(confusion))
    return tuple(int(i) for i in np.unravel_index(off_diagonal.argmax(), confusion.shape))


# %%
largest = max(int(((test_set.labels == a) & (predicted == b)).sum()) for a in range(10) for b in range(10) if a != b)


def no_confusion_is_more_frequent():
    true, guess = answered(most_common_confusion(confusion))
    count = int(((test_set.labels == true) & (predicted == guess)).sum())
    print(f"most common confusion: {true} taken for {guess}, {count} times")
    return true != guess and count == largest


check("Exercise 2: no other confusion is more frequent", no_confusion_is_more_frequent,
      "leave out the diagonal (the correct answers) before looking for the largest count")

# %% [markdown]
# ### Exercise 3: classify one image
#
# Write `classify(model, image)` that takes a single `uint8` image of shape 1 x 28 x 28
# straight from the data set and returns the predicted digit as an `int`. You have to do
# what the `DataLoader` did: scale to $[0, 1]$, normalise, and add a batch axis. Which mode
# must the model be in for the answer not to depend on the batch it came with?

# %%
# One possible answer (eval mode: batch norm then uses its running statistics, not the batch's):
def classify(model, image):
    x = image[None].astype(np.float32) / 255          # 1 x 1 x 28 x 28, in [0, 1]
    x = normalize(x)
    model.eval()
    with minires.no_grad():
        return int(model(minires.tensor(x, device=DEVICE)).numpy().argmax())


# %%
n = 20
top2 = np.sort(probabilities[:n], axis=1)[:, -2:]
clear = top2[:, 1] - top2[:, 0] > 1e-3   # skip near-ties, where float rounding may pick either class


def classify_agrees():
    singles = np.array([answered(classify(reloaded, test_set.images[i])) for i in range(n)])
    return np.array_equal(singles[clear], predicted[:n][clear])


check(f"Exercise 3: one image at a time agrees with the batched predictions ({clear.sum()} of the first {n} images)",
      classify_agrees,
      "scale by 1/255, apply `normalize`, add a batch axis with image[None], and call model.eval()")
