"""Sigmoid on the kernel path: ``kernels/sigmoid.cu``."""
from minires.backends.cuda.loader import KernelFile, contiguous, empty_like, int32

SIGMOID = KernelFile("sigmoid.cu", ["sigmoid_forward", "sigmoid_backward"])


def sigmoid_forward(x):
    """y = 1 / (1 + e^-x), computed without overflow."""
    x = contiguous(x)
    y = empty_like(x)
    SIGMOID.launch_over("sigmoid_forward", x.dtype, x.size, (x, y, int32(x.size)))
    return y


def sigmoid_backward(y, grad_y):
    """dL/dx = dL/dy * y * (1 - y) from the forward output y."""
    grad_y = contiguous(grad_y)
    grad_x = empty_like(y)
    SIGMOID.launch_over("sigmoid_backward", y.dtype, y.size, (y, grad_y, grad_x, int32(y.size)))
    return grad_x
