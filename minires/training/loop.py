"""The training loop and evaluation: the loop every framework tutorial shows, written once.

    for images, labels in batches:
        loss = cross_entropy(model(images), labels)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

``train_steps`` runs that for a given number of steps on any iterator of batches
(an epoch of a ``DataLoader``, or an endless stream), with an optional
``on_step`` callback after every step: the train command, the gradient-flow
experiments and the tutorials all train through it. ``train_epoch`` is one pass
over a loader; ``evaluate`` measures a model without gradients.

Nothing in a step reads a number back from the GPU, which would wait for all queued
work: loss and accuracy are summed on the device (``RunningMetrics``) and read back
only when reported, and the labels' range is checked while they are still on the host.
"""
import minires
import minires.functional as F
from minires.backends import get_array_module, to_device
from minires.training.metrics import RunningMetrics
from minires.training.progress import REFRESH, progress_bar


def train_steps(model, batches, optimizer, steps, device="cpu", *, scheduler=None, label_smoothing=0.0,
                forward=None, before_step=None, on_step=None, progress=False, description="train"):
    """Train ``model`` for ``steps`` SGD steps on ``(images, labels)`` NumPy batches taken from
    ``batches``; returns the ``RunningMetrics`` of the steps taken.

    scheduler        stepped after every step (a per-iteration schedule); None to step it yourself
    forward          ``forward(images) -> logits`` used instead of ``model``, e.g. to keep what
                     the model computes on the way (``model`` is still the one put in training mode)
    before_step      ``before_step()`` after ``backward()`` and before ``optimizer.step()``, to change the
                     gradients (the slimming penalty of ``train --bn-l1`` adds its subgradient there)
    on_step          ``on_step(step, metrics)`` after each step's update and before the scheduler
                     steps, so the optimizer's lr is the one this step used. ``step`` counts from 1.
                     It may read ``metrics`` (which waits for the device) and ``reset()`` it, may
                     evaluate the model (training mode is restored after it), and may return True
                     to stop training early.
    progress         a progress bar: True, False, or None for "when stderr is a terminal"
    """
    forward = model if forward is None else forward
    batches = iter(batches)
    metrics = RunningMetrics()
    model.train()
    numbers = range(1, steps + 1)
    bar = progress_bar(numbers, steps, description, progress)
    for step in bar:
        try:
            images, labels = next(batches)
        except StopIteration:
            raise ValueError(f"the batches ran out after {step - 1} of {steps} steps") from None
        logits = forward(minires.tensor(images, device=device))
        # The loss gets the labels while they are still NumPy: it checks their range on the
        # host. Checked on a GPU, the answer would have to be read back, a wait every step.
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        labels = to_device(labels, device)  # for the accuracy, counted on the device
        optimizer.zero_grad()
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        metrics.update(loss, logits, labels)
        stop = on_step is not None and on_step(step, metrics)
        if not model.training:  # on_step evaluated the model
            model.train()
        if scheduler is not None:
            scheduler.step()
        if bar is not numbers and step % REFRESH == 0:  # a bar is shown: refresh its numbers
            bar.set_postfix(loss=f"{metrics.loss:.3f}", acc=f"{metrics.accuracy:.3f}")
        if stop:
            break
    return metrics


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the weights are no longer usable."""

    def __init__(self, step, steps):
        super().__init__(f"the training loss became NaN or infinite at step {step} of {steps}")
        self.step, self.steps = step, steps


def train_epoch(model, loader, optimizer, device="cpu", label_smoothing=0.0, progress=False, description="train",
                before_step=None):
    """Train for one pass over ``loader``; returns (mean loss, accuracy) over the samples seen.

    Raises :class:`NonFiniteLoss` once a step's loss is NaN or infinite. The check reads one
    number back every ``REFRESH`` steps (a wait on a GPU), so training stops within that many
    steps of the first bad one, and the error names the first bad step itself.
    """
    def diverged(step, metrics):
        return step % REFRESH == 0 and metrics.first_nonfinite_step is not None

    metrics = train_steps(model, loader, optimizer, len(loader), device, label_smoothing=label_smoothing,
                          before_step=before_step, on_step=diverged, progress=progress, description=description)
    if metrics.first_nonfinite_step is not None:
        raise NonFiniteLoss(metrics.first_nonfinite_step, len(loader))
    return metrics.loss, metrics.accuracy


def evaluate(model, loader, num_classes, device="cpu", progress=False, description="eval"):
    """Loss, accuracy and the confusion matrix (a NumPy array; rows: true class, columns:
    predicted) of ``model`` in eval mode on ``loader``, without gradients."""
    model.eval()
    metrics, confusion = RunningMetrics(), 0
    with minires.no_grad():
        for images, labels in progress_bar(loader, len(loader), description, progress):
            logits = model(minires.tensor(images, device=device))
            loss = F.cross_entropy(logits, labels)  # labels still on the host: checked without a wait
            labels = to_device(labels, device)
            metrics.update(loss, logits, labels)
            predicted = logits.data.argmax(axis=1)
            pairs = labels * num_classes + predicted  # (true, predicted) as one index, counted on the device
            confusion = confusion + get_array_module(pairs).bincount(pairs, minlength=num_classes ** 2)
    if metrics.seen == 0:
        raise ValueError("evaluate: the loader gave no batches")
    confusion = to_device(confusion, "cpu").reshape(num_classes, num_classes)
    return metrics.loss, metrics.accuracy, confusion
