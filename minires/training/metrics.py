"""Loss and accuracy summed over batches *where the model runs*, read back only when asked.

On a GPU, turning a number into a Python float waits until every queued kernel has
finished. Doing that after every step would leave the GPU idle between steps, so
the sums stay on the device (0-d arrays) and only ``.loss``, ``.accuracy`` and
``.error`` copy them back:

    metrics = RunningMetrics()
    for ...:
        metrics.update(loss, logits, labels)    # no waiting
    print(metrics.loss, metrics.accuracy)       # waits once
"""


class RunningMetrics:
    """Mean loss and accuracy over the images seen since creation (or the last ``reset``)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.loss_sum, self.correct, self.seen = 0.0, 0, 0

    def update(self, loss, logits, labels):
        """Add one batch: ``loss`` its mean loss (a 0-d Tensor), ``logits`` (N x classes Tensor) and
        ``labels`` (N class indices, on the same device)."""
        n = len(labels)
        self.loss_sum = self.loss_sum + loss.data.astype("float64") * n  # stays on the device
        self.correct = self.correct + (logits.data.argmax(axis=1) == labels).sum()
        self.seen += n

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
