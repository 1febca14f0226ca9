"""Softmax cross-entropy with integer labels and optional label smoothing.

The mean over the batch (PyTorch's default, and what training uses) is one fused op with
kernels of its own. ``reduction="none"`` (one loss per sample) and ``"sum"`` are built from
``log_softmax`` and the tensor ops instead, so their gradients come from those ops' backwards.
"""
import numpy

from minires.backends import get_array_module
from minires.backends.cuda import cross_entropy as cross_entropy_kernels
from minires.engine.function import Function
from minires.engine.tensor import Tensor
from minires.ops.smooth import log_softmax, log_softmax_array
from minires.ops.validate import require_float, require_ndim


def target_distribution(xp, labels, C, eps, dtype):
    """q = (1 - eps) one_hot(label) + eps / C, one row per label."""
    N = labels.shape[0]
    q = xp.full((N, C), eps / C, dtype=dtype)
    q[xp.arange(N), labels] += 1.0 - eps
    return q


class CrossEntropyFunction(Function):
    """Both paths save (probabilities, labels): softmax(z) and the labels are all backward needs."""

    def __init__(self, labels, label_smoothing):
        self.labels, self.label_smoothing = labels, label_smoothing

    def forward_numpy(self, logits):
        N, C = logits.shape
        log_p = log_softmax_array(logits, axis=1)
        q = target_distribution(numpy, self.labels, C, self.label_smoothing, logits.dtype)
        self.save_for_backward(numpy.exp(log_p), self.labels)
        return -(q * log_p).sum() / N  # a 0-d array: the mean loss

    def backward_numpy(self, grad):
        # L = -(1/N) sum_n sum_c q_nc log softmax(z_n)_c. Since sum_c q_nc = 1,
        # dL/dz_nc = (softmax(z_n)_c - q_nc) / N.
        probabilities, labels = self.saved_tensors
        N, C = probabilities.shape
        q = target_distribution(numpy, labels, C, self.label_smoothing, probabilities.dtype)
        return grad * (probabilities - q) / N

    def forward_kernels(self, logits):  # kernels/cross_entropy.cu, one block per row
        labels = cross_entropy_kernels.int64_labels(self.labels)
        loss, probabilities = cross_entropy_kernels.cross_entropy_forward(logits, labels, self.label_smoothing)
        self.save_for_backward(probabilities, labels)
        return loss

    def backward_kernels(self, grad):
        probabilities, labels = self.saved_tensors
        return cross_entropy_kernels.cross_entropy_backward(probabilities, labels, grad, self.label_smoothing)


REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, labels, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy of logits (N, C) against integer labels (N,); PyTorch's ``F.cross_entropy``:
    the mean over the batch, or the sum, or (``reduction="none"``) the N losses themselves."""
    op = "cross_entropy"
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    require_ndim(op, "logits", logits, 2)
    require_float(op, "logits", logits)
    label_array = labels.data if isinstance(labels, Tensor) else labels
    label_array = get_array_module(label_array).asarray(label_array)  # checked where it lies now
    N, C = logits.shape
    if label_array.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integers (class indices), got dtype {label_array.dtype}")
    if label_array.shape != (N,):
        raise ValueError(f"{op}: labels must have shape ({N},) to match logits {tuple(logits.shape)}, got {label_array.shape}")
    # Labels still on the host (NumPy) are checked here before they are copied over, at no
    # cost to the GPU; that is how the training loop passes them. Labels already on a GPU
    # cost one wait per call: the yes/no answer has to be read back before we go on.
    if N and bool(((label_array < 0) | (label_array >= C)).any()):
        raise ValueError(
            f"{op}: labels must lie in [0, {C}) for {C} classes, got values from {int(label_array.min())} to {int(label_array.max())}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    xp = Function.xp(logits.data)
    label_array = xp.asarray(label_array)  # onto the logits' device
    if reduction == "mean":
        return CrossEntropyFunction(label_array, label_smoothing)(logits)
    q = Tensor(target_distribution(xp, label_array, C, label_smoothing, logits.dtype))
    per_sample = -(log_softmax(logits, 1) * q).sum(dim=1)  # -sum_c q_nc log softmax(z_n)_c
    return per_sample if reduction == "none" else per_sample.sum()
