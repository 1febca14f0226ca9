"""Channel scaling on the kernel path: ``kernels/channel_scale.cu``.

x and the gradients are (N, C, H, W), s is (N, C); the kernels see the batch as N*C
"planes" of H*W values, plane n*C + c scaled by s[n, c].
"""
from minires.backends.cuda.loader import KernelFile, contiguous, empty, empty_like, int32

CHANNEL_SCALE = KernelFile("channel_scale.cu", [
    "channel_scale_forward", "channel_scale_backward_x", "channel_scale_backward_s",
])


def _pixels(shape):
    """H*W as the kernels' int, after checking that every index into the tensor fits an int."""
    N, C, H, W = shape
    int32(N * C * H * W)
    return int32(H * W)


def channel_scale_forward(x, s):
    """y = x * s[:, :, None, None]."""
    x, s = contiguous(x), contiguous(s)
    y = empty_like(x)
    CHANNEL_SCALE.launch_over("channel_scale_forward", x.dtype, x.size, (x, s, y, int32(x.size), _pixels(x.shape)))
    return y


def channel_scale_backward_x(grad_y, s):
    """dL/dx = dL/dy * s[:, :, None, None]."""
    grad_y, s = contiguous(grad_y), contiguous(s)
    grad_x = empty_like(grad_y)
    CHANNEL_SCALE.launch_over("channel_scale_backward_x", grad_y.dtype, grad_y.size,
                              (grad_y, s, grad_x, int32(grad_y.size), _pixels(grad_y.shape)))
    return grad_x


def channel_scale_backward_s(grad_y, x):
    """dL/ds[n, c] = sum over h, w of dL/dy * x: one block of threads reduces each (n, c)."""
    grad_y, x = contiguous(grad_y), contiguous(x)
    N, C = x.shape[:2]
    grad_s = empty((N, C), x.dtype, x)
    pixels = _pixels(x.shape)
    if grad_s.size:  # a grid of 0 blocks is not a valid launch
        CHANNEL_SCALE.launch("channel_scale_backward_s", x.dtype, grid=N * C, args=(grad_y, x, grad_s, pixels))
    return grad_s
