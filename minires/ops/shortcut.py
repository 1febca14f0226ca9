"""The option-A shortcut of He et al. 2015 (section 4.2): an identity that changes shape
without parameters. When a stage halves the resolution and widens the channels,
the shortcut takes every stride-th pixel and appends zero channels:

    y[n, c, h, w] = x[n, c, h*stride, w*stride]   for c < C_in
    y[n, c, h, w] = 0                             for C_in <= c < C_out
"""
from minires.backends.cuda import shortcut as shortcut_kernels
from minires.backends.cuda import uses_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float, require_ndim


class ZeroPadShortcutFunction(Function):
    def __init__(self, out_channels, stride):
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x):
        self.x_shape = x.shape
        if uses_kernels(x):  # GPU: kernels/shortcut.cu
            return shortcut_kernels.shortcut_forward(x, self.out_channels, self.stride)
        xp = self.xp(x)
        N, C, H, W = x.shape
        s = self.stride
        sub = x[:, :, ::s, ::s]
        y = xp.zeros((N, self.out_channels) + sub.shape[2:], dtype=x.dtype)
        y[:, :C] = sub
        return y

    def backward(self, grad):
        # Each kept input pixel was copied once, unchanged: it gets its output's gradient.
        # Skipped pixels and the zero channels did not depend on x: gradient 0.
        if uses_kernels(grad):
            return shortcut_kernels.shortcut_backward(grad, self.x_shape, self.stride)
        xp = self.xp(grad)
        N, C, H, W = self.x_shape
        s = self.stride
        grad_x = xp.zeros(self.x_shape, dtype=grad.dtype)
        grad_x[:, :, ::s, ::s] = grad[:, :C]
        return grad_x


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
