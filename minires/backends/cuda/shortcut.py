"""The option-A shortcut on the kernel path: ``kernels/shortcut.cu``."""
from minires.backends.cuda.loader import KernelFile, contiguous, empty, int32

SHORTCUT = KernelFile("shortcut.cu", ["shortcut_forward", "shortcut_backward"])


def output_shape(x_shape, out_channels, stride):
    """(N, C_out, H_out, W_out): the kept pixels are rows and columns 0, s, 2s, ... < H, W."""
    N, C, H, W = x_shape
    return N, out_channels, (H + stride - 1) // stride, (W + stride - 1) // stride


def size_arguments(x_shape, y_shape, stride):
    """The kernels' N, C_in, H, W, C_out, H_out, W_out, stride (and a check that int can index both arrays)."""
    int32(max(x_shape[0] * x_shape[1] * x_shape[2] * x_shape[3], y_shape[0] * y_shape[1] * y_shape[2] * y_shape[3]))
    N, C_in, H, W = x_shape
    _, C_out, H_out, W_out = y_shape
    return tuple(int32(v) for v in (N, C_in, H, W, C_out, H_out, W_out, stride))


def shortcut_forward(x, out_channels, stride):
    """y[n, c, h, w] = x[n, c, h*stride, w*stride] for c < C_in, else 0."""
    x = contiguous(x)
    y = empty(output_shape(x.shape, out_channels, stride), x.dtype, x)
    SHORTCUT.launch_over("shortcut_forward", x.dtype, y.size, (x, y) + size_arguments(x.shape, y.shape, stride))
    return y


def shortcut_backward(grad_y, x_shape, stride):
    """dL/dx (of shape ``x_shape``) from dL/dy: a gather, one thread per input pixel."""
    grad_y = contiguous(grad_y)
    grad_x = empty(x_shape, grad_y.dtype, grad_y)
    SHORTCUT.launch_over("shortcut_backward", grad_y.dtype, grad_x.size,
                         (grad_y, grad_x) + size_arguments(x_shape, grad_y.shape, stride))
    return grad_x
