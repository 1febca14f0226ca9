"""Losses as modules, as in ``torch.nn``: ``criterion = nn.CrossEntropyLoss(); loss = criterion(logits, labels)``.

Each is a thin wrapper that remembers its settings and calls the functional form.
"""
import minires.functional as F
from minires.nn.module import Module

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(loss, reduction, allowed):
    if reduction not in allowed:
        raise ValueError(f"{loss}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


class CrossEntropyLoss(Module):
    """Softmax cross-entropy of logits (N, C) against integer labels (N,), with optional label
    smoothing: ``F.cross_entropy``. ``reduction`` is "mean" (the default), "sum" or "none"."""

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.reduction = _check_reduction("CrossEntropyLoss", reduction, REDUCTIONS)
        self.label_smoothing = label_smoothing

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing, reduction=self.reduction)

    def extra_repr(self):
        settings = [f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else []
        settings += [f"reduction={self.reduction!r}"] if self.reduction != "mean" else []
        return ", ".join(settings)


class MSELoss(Module):
    """Squared error (input - target)^2 of every element: the mean (the default), the sum, or
    (``reduction="none"``) every element's own."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _check_reduction("MSELoss", reduction, REDUCTIONS)

    def forward(self, input, target):
        if tuple(input.shape) != tuple(target.shape):
            raise ValueError(f"MSELoss: input {tuple(input.shape)} and target {tuple(target.shape)} "
                             "must have the same shape")
        squared = (input - target) ** 2
        if self.reduction == "none":
            return squared
        return squared.mean() if self.reduction == "mean" else squared.sum()

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"
