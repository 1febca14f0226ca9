"""Channel scaling: y[n, c, h, w] = x[n, c, h, w] * s[n, c].

This is the "scale" step of a Squeeze-and-Excitation block (Hu et al. 2018): a small
network looks at each image's channel averages and answers one weight s[n, c] in (0, 1)
per channel, and the block multiplies every pixel of channel c of image n by it. In NumPy
it is ``x * s[:, :, None, None]``; this op writes it out, so that both gradients are
hand-derived and the kernel path has kernels of its own.

Both paths save the two inputs x and s: each gradient needs the other input.
The NumPy path keeps the output in x's memory layout (channel-major after a
convolution, see ``ops/layout.py``), so the ops after it never mix layouts.
"""
import numpy

from minires.backends.cuda import channel_scale as channel_scale_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float, require_ndim, require_same_dtype


class ChannelScaleFunction(Function):
    def forward_numpy(self, x, s):
        self.save_for_backward(x, s)
        y = numpy.empty_like(x)  # x's layout
        return numpy.multiply(x, s[:, :, None, None], out=y)

    def backward_numpy(self, grad):
        # y[n,c,h,w] = x[n,c,h,w] * s[n,c]:
        #   dL/dx[n,c,h,w] = g[n,c,h,w] * s[n,c]            (dy/dx = s, elementwise)
        #   dL/ds[n,c]     = sum_{h,w} g[n,c,h,w] * x[n,c,h,w]  (s[n,c] scales every pixel of (n, c))
        x, s = self.saved_tensors
        grad_x = grad_s = None
        if self.needs_input_grad[0]:
            grad_x = numpy.multiply(grad, s[:, :, None, None], out=numpy.empty_like(x))
        if self.needs_input_grad[1]:
            # einsum walks both arrays in their own strides and sums without a g * x temporary
            grad_s = numpy.einsum("nchw,nchw->nc", grad, x)
        return grad_x, grad_s

    def forward_kernels(self, x, s):  # kernels/channel_scale.cu, one thread per element
        self.save_for_backward(x, s)
        return channel_scale_kernels.channel_scale_forward(x, s)

    def backward_kernels(self, grad):
        # the same gradients as backward_numpy: grad_x elementwise, grad_s one block per (n, c)
        x, s = self.saved_tensors
        grad_x = grad_s = None
        if self.needs_input_grad[0]:
            grad_x = channel_scale_kernels.channel_scale_backward_x(grad, s)
        if self.needs_input_grad[1]:
            grad_s = channel_scale_kernels.channel_scale_backward_s(grad, x)
        return grad_x, grad_s


def channel_scale(x, s):
    """Every channel of every image scaled by its own weight: ``x * s[:, :, None, None]``, for x of
    shape (N, C, H, W) and s of shape (N, C) (Squeeze-and-Excitation's scale step). PyTorch has no
    function of its own for it; there one writes ``x * s[:, :, None, None]``."""
    op = "channel_scale"
    require_ndim(op, "input", x, 4)
    require_ndim(op, "scale", s, 2)
    require_float(op, "input", x)
    require_float(op, "scale", s)
    require_same_dtype(op, input=x, scale=s)
    if tuple(s.shape) != tuple(x.shape[:2]):
        raise ValueError(f"{op}: scale must have shape (N, C) = {tuple(x.shape[:2])} to match the input's "
                         f"(N, C, H, W) = {tuple(x.shape)}, got {tuple(s.shape)}; for a (N, C, 1, 1) scale "
                         "use s.reshape(N, C) (or flatten(1)) first")
    return ChannelScaleFunction()(x, s)
