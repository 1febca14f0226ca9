"""Losses as modules, as in ``torch.nn``: ``criterion = nn.CrossEntropyLoss(); loss = criterion(logits, labels)``.

Each is a thin wrapper that remembers its settings and calls the functional form.
"""
import minires.functional as F
from minires.nn.module import Module

REDUCTIONS = ("mean", "sum")


def _check_reduction(loss, reduction, allowed):
    if reduction not in allowed:
        raise ValueError(f"{loss}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


class CrossEntropyLoss(Module):
    """Mean softmax cross-entropy of logits (N, C) against integer labels (N,), with optional
    label smoothing: ``F.cross_entropy``. Only reduction='mean' (PyTorch's default) is offered."""

    def __init__(self, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.reduction = _check_reduction("CrossEntropyLoss", reduction, ("mean",))
        self.label_smoothing = label_smoothing

    def forward(self, logits, labels):
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""


class MSELoss(Module):
    """Mean (or summed) squared error, (input - target)^2 over every element."""

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = _check_reduction("MSELoss", reduction, REDUCTIONS)

    def forward(self, input, target):
        if tuple(input.shape) != tuple(target.shape):
            raise ValueError(f"MSELoss: input {tuple(input.shape)} and target {tuple(target.shape)} "
                             "must have the same shape")
        squared = (input - target) ** 2
        return squared.mean() if self.reduction == "mean" else squared.sum()

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"
