"""Softmax cross-entropy with integer labels and optional label smoothing."""
import numpy

from minires.backends import get_array_module
from minires.backends.cuda import cross_entropy as cross_entropy_kernels
from minires.engine.function import Function
from minires.engine.tensor import Tensor
from minires.ops.smooth import log_softmax_array
from minires.ops.validate import require_float, require_ndim


class CrossEntropyFunction(Function):
    """Both paths save (probabilities, labels): softmax(z) and the labels are all backward needs."""

    def __init__(self, labels, label_smoothing):
        self.labels, self.label_smoothing = labels, label_smoothing

    def target_distribution(self, labels, N, C, dtype):
        """q = (1 - eps) one_hot(label) + eps / C."""
        eps = self.label_smoothing
        q = numpy.full((N, C), eps / C, dtype=dtype)
        q[numpy.arange(N), labels] += 1.0 - eps
        return q

    def forward_numpy(self, logits):
        N, C = logits.shape
        log_p = log_softmax_array(logits, axis=1)
        q = self.target_distribution(self.labels, N, C, logits.dtype)
        self.save_for_backward(numpy.exp(log_p), self.labels)
        return -(q * log_p).sum() / N  # a 0-d array: the mean loss

    def backward_numpy(self, grad):
        # L = -(1/N) sum_n sum_c q_nc log softmax(z_n)_c. Since sum_c q_nc = 1,
        # dL/dz_nc = (softmax(z_n)_c - q_nc) / N.
        probabilities, labels = self.saved_tensors
        N, C = probabilities.shape
        return grad * (probabilities - self.target_distribution(labels, N, C, probabilities.dtype)) / N

    def forward_kernels(self, logits):  # kernels/cross_entropy.cu, one block per row
        labels = cross_entropy_kernels.int64_labels(self.labels)
        loss, probabilities = cross_entropy_kernels.cross_entropy_forward(logits, labels, self.label_smoothing)
        self.save_for_backward(probabilities, labels)
        return loss

    def backward_kernels(self, grad):
        probabilities, labels = self.saved_tensors
        return cross_entropy_kernels.cross_entropy_backward(probabilities, labels, grad, self.label_smoothing)


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean cross-entropy of logits (N, C) against integer labels (N,); PyTorch's ``F.cross_entropy``."""
    op = "cross_entropy"
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
    label_array = Function.xp(logits.data).asarray(label_array)  # onto the logits' device
    return CrossEntropyFunction(label_array, label_smoothing)(logits)
