"""One epoch of training, and evaluation: the loop every framework tutorial shows.

    for images, labels in loader:
        loss = cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
"""
import numpy

import minires
import minires.functional as F
from minires.backends import to_device


def _progress(iterable, total, description, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def train_epoch(model, loader, optimizer, device="cpu", label_smoothing=0.0, progress=False, description="train"):
    """Train for one pass over ``loader``; returns (mean loss, accuracy) over the samples seen."""
    model.train()
    total_loss = total_correct = total_seen = 0.0
    batches = _progress(loader, len(loader), description, progress)
    for images, labels in batches:
        x = minires.tensor(images, device=device)
        y = to_device(labels, device)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n = len(labels)
        total_loss += loss.item() * n
        total_correct += int((logits.data.argmax(axis=1) == y).sum())
        total_seen += n
        if progress:
            batches.set_postfix(loss=f"{total_loss / total_seen:.3f}", acc=f"{total_correct / total_seen:.3f}")
    return total_loss / max(total_seen, 1), total_correct / max(total_seen, 1)


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
