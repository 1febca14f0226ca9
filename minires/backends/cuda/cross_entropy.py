"""Softmax cross-entropy on the kernel path: ``kernels/cross_entropy.cu``.

Labels go to the kernels as a C-contiguous int64 array (``long long*``), the
dtype our data loaders already produce, so normally no conversion is made.
"""
import numpy

from minires.backends.cuda.loader import MAX_GRID, KernelFile, contiguous, empty, int32, scalar

CROSS_ENTROPY = KernelFile("cross_entropy.cu", ["cross_entropy_forward", "cross_entropy_backward"])


def int64_labels(labels):
    """The labels as the kernels' contiguous ``long long`` array."""
    return contiguous(labels.astype(numpy.int64, copy=False))


def cross_entropy_forward(logits, labels, eps):
    """Returns (mean loss as a 0-d array, softmax probabilities (N, C)) for int64 ``labels``."""
    logits = contiguous(logits)
    N, C = logits.shape
    int32(logits.size)  # the kernels index the (N, C) array with int
    probabilities = empty(logits.shape, logits.dtype, logits)
    row_loss = empty((N,), logits.dtype, logits)
    rows_per_launch = max(1, min(N, MAX_GRID))  # one block per row; blocks loop when N is larger
    CROSS_ENTROPY.launch("cross_entropy_forward", logits.dtype, rows_per_launch,
                         (logits, labels, probabilities, row_loss, scalar(eps, logits.dtype), int32(N), int32(C)))
    return row_loss.sum() / N, probabilities  # the mean stays on the device: no host sync


def cross_entropy_backward(probabilities, labels, grad_loss, eps):
    """dL/dlogits from the saved probabilities and the upstream gradient of the mean loss
    (a 0-d device array, handed to the kernel as a 1-element array: no host sync)."""
    N, C = probabilities.shape
    grad_loss = contiguous(grad_loss.astype(probabilities.dtype, copy=False).reshape(1))
    grad_logits = empty(probabilities.shape, probabilities.dtype, probabilities)
    CROSS_ENTROPY.launch_over("cross_entropy_backward", probabilities.dtype, probabilities.size,
                              (probabilities, labels, grad_loss, grad_logits, scalar(eps, probabilities.dtype),
                               int32(N), int32(C)))
    return grad_logits
