"""The option-A shortcut of He et al. 2015 (section 4.2): an identity that changes shape
without parameters. When a stage halves the resolution and widens the channels,
the shortcut takes every stride-th pixel and appends zero channels:

    y[n, c, h, w] = x[n, c, h*stride, w*stride]   for c < C_in
    y[n, c, h, w] = 0                             for C_in <= c < C_out
"""
from minires.backends.cuda import shortcut as shortcut_kernels
from minires.engine.function import Function
from minires.ops.layout import channel_major_zeros
from minires.ops.validate import require_float, require_ndim


class ZeroPadShortcutFunction(Function):
    """Nothing is saved but the input's shape."""

    def __init__(self, out_channels, stride):
        self.out_channels, self.stride = out_channels, stride

    def forward_numpy(self, x):
        self.x_shape = x.shape
        sub = x[:, :, ::self.stride, ::self.stride]
        y = channel_major_zeros((x.shape[0], self.out_channels) + sub.shape[2:], x.dtype)  # ops/layout.py
        y[:, :x.shape[1]] = sub
        return y

    def backward_numpy(self, grad):
        # Each kept input pixel was copied once, unchanged: it gets its output's gradient.
        # Skipped pixels and the zero channels did not depend on x: gradient 0.
        C, s = self.x_shape[1], self.stride
        grad_x = channel_major_zeros(self.x_shape, grad.dtype)
        grad_x[:, :, ::s, ::s] = grad[:, :C]
        return grad_x

    def forward_kernels(self, x):  # kernels/shortcut.cu, one thread per output element
        self.x_shape = x.shape
        return shortcut_kernels.shortcut_forward(x, self.out_channels, self.stride)

    def backward_kernels(self, grad):
        return shortcut_kernels.shortcut_backward(grad, self.x_shape, self.stride)


def zero_pad_shortcut(x, out_channels, stride=1):
    """Option-A shortcut: subsample x (N, C, H, W) by ``stride`` and zero-pad to ``out_channels``."""
    op = "zero_pad_shortcut"
    require_ndim(op, "input", x, 4)
    require_float(op, "input", x)
    if out_channels < x.shape[1]:
        raise ValueError(f"{op}: out_channels ({out_channels}) must be >= the input's {x.shape[1]} channels")
    if stride < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {stride}")
    return ZeroPadShortcutFunction(out_channels, stride)(x)
