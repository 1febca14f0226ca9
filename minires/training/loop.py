"""One epoch of training, and evaluation: the loop every framework tutorial shows.

    for images, labels in loader:
        loss = cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
"""
import numpy

import minires
import minires.functional as F
from minires.backends import to_device

REFRESH = 20  # progress-bar refresh interval, in steps


def _progress(iterable, total, description, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def train_epoch(model, loader, optimizer, device="cpu", label_smoothing=0.0, progress=False, description="train"):
    """Train for one pass over ``loader``; returns (mean loss, accuracy) over the samples seen.

    The running loss and correct count stay on the device (0-d arrays) and are read
    back once at the end: on a GPU, reading a number back waits for all queued work,
    and doing that every step would leave the GPU idle between steps. The progress
    bar refreshes its numbers only every ``REFRESH`` steps for the same reason.
    """
    model.train()
    total_loss = total_correct = 0.0
    total_seen = 0
    batches = _progress(loader, len(loader), description, progress)
    for step, (images, labels) in enumerate(batches, 1):
        x = minires.tensor(images, device=device)
        y = to_device(labels, device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n = len(labels)
        total_loss = total_loss + loss.data.astype("float64") * n  # stays on the device
        total_correct = total_correct + (logits.data.argmax(axis=1) == y).sum()
        total_seen += n
        if progress and step % REFRESH == 0:
            batches.set_postfix(loss=f"{float(total_loss) / total_seen:.3f}", acc=f"{int(total_correct) / total_seen:.3f}")
    return float(total_loss) / max(total_seen, 1), int(total_correct) / max(total_seen, 1)


def evaluate(model, loader, num_classes, device="cpu", progress=False, description="eval"):
    """Loss, accuracy and the confusion matrix (rows: true class, columns: predicted) on ``loader``."""
    model.eval()
    confusion = numpy.zeros((num_classes, num_classes), dtype=numpy.int64)
    total_loss = total_seen = 0.0
    with minires.no_grad():
        for images, labels in _progress(loader, len(loader), description, progress):
            logits = model(minires.tensor(images, device=device))
            total_loss += F.cross_entropy(logits, to_device(labels, device)).item() * len(labels)
            predicted = to_device(logits.data.argmax(axis=1), "cpu")
            numpy.add.at(confusion, (labels, predicted), 1)
            total_seen += len(labels)
    accuracy = numpy.trace(confusion) / max(total_seen, 1)
    return total_loss / max(total_seen, 1), float(accuracy), confusion
