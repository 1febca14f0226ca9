"""ReLU on the kernel path: ``kernels/relu.cu``."""
from minires.backends.cuda.loader import KernelFile, contiguous, empty_like, int32

RELU = KernelFile("relu.cu", ["relu_forward", "relu_backward"])


def relu_forward(x):
    """y = max(x, 0)."""
    x = contiguous(x)
    y = empty_like(x)
    RELU.launch_over("relu_forward", x.dtype, x.size, (x, y, int32(x.size)))
    return y


def relu_backward(y, grad_y):
    """dL/dx from the forward output y and dL/dy."""
    grad_y = contiguous(grad_y)
    grad_x = empty_like(y)
    RELU.launch_over("relu_backward", y.dtype, y.size, (y, grad_y, grad_x, int32(y.size)))
    return grad_x
