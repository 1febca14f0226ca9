"""Loss and accuracy summed over batches *where the model runs*, read back only when asked.

On a GPU, turning a number into a Python float waits until every queued kernel has
finished. Doing that after every step would leave the GPU idle between steps, so
the sums stay on the device (0-d arrays) and only ``.loss``, ``.accuracy`` and
``.error`` copy them back:

    metrics = RunningMetrics()
    for ...:
        metrics.update(loss, logits, labels)    # no waiting
    print(metrics.loss, metrics.accuracy)       # waits once

It also remembers, on the device, the first step whose loss was not finite (NaN or
infinite): three tiny operations per step, read back only when asked
(``first_nonfinite_step``), so that a diverging run can stop and say where.
"""
from minires.backends import get_array_module

NEVER = 2**62  # "no non-finite loss yet", as a step number larger than any real one


class RunningMetrics:
    """Mean loss and accuracy over the images seen since creation (or the last ``reset``)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum, self.correct, self.seen, self.steps = 0.0, 0, 0, 0
        self._first_nonfinite = NEVER

    def update(self, loss, logits, labels):
        """Add one batch: ``loss`` its mean loss (a 0-d Tensor), ``logits`` (N x classes Tensor) and
        ``labels`` (N class indices, on the same device)."""
        n = len(labels)
        self.steps += 1
        loss_value = loss.data.astype("float64")
        self.loss_sum = self.loss_sum + loss_value * n  # stays on the device
        self.correct = self.correct + (logits.data.argmax(axis=1) == labels).sum()
        self.seen += n
        xp = get_array_module(loss_value)
        self._first_nonfinite = xp.minimum(self._first_nonfinite, xp.where(xp.isfinite(loss_value), NEVER, self.steps))

    @property
    def first_nonfinite_step(self):
        """The first step (counted from 1) whose loss was NaN or infinite, or None (waits for the device)."""
        step = int(self._first_nonfinite)
        return None if step == NEVER else step

    @property
    def loss(self):
        return float(self.loss_sum) / max(self.seen, 1)

    @property
    def accuracy(self):
        return int(self.correct) / max(self.seen, 1)

    @property
    def error(self):
        """The fraction misclassified."""
        return (self.seen - int(self.correct)) / max(self.seen, 1)
