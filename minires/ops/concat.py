"""Channel concatenation: (N, C_1, H, W), (N, C_2, H, W), ... -> (N, C_1 + C_2 + ..., H, W).

DenseNet (Huang et al. 2017) feeds every layer of a dense block the concatenation of all
the feature maps before it, so this copy is its hot path, and its memory is what limits a
DenseNet's batch size. The gradient of a concatenation is the split: input k's gradient is
its channel range of the output's gradient.

On the NumPy path the output is **channel-major** (C, N, H, W) memory viewed as (N, C, H, W)
(``ops/layout.py``), as a convolution's output is:

    memory of y:   [ x_1's channels | x_2's channels | ... ]    each x_k one contiguous block

so forward is one block copy per input (a plain memcpy when x_k is channel-major itself),
and backward hands each input a *view* of its block of the gradient: no copy, no new
memory. Nothing is saved but the channel counts.

On the kernel path (``kernels/concat.cu``) arrays are C-ordered NCHW, where a channel range
is one run per image: forward copies each input into its range, and backward copies the
ranges out (a view only for a single image, see ``backends/cuda/concat.py``).
"""
import numpy

from minires.backends.cuda import concat as concat_kernels
from minires.engine.function import Function
from minires.ops.layout import channel_major_empty


class ChannelConcat(Function):
    """Concatenation of 4-D tensors along dim 1. Both paths save only ``channels``, each input's
    channel count."""

    def forward_numpy(self, *xs):
        self.channels = [x.shape[1] for x in xs]
        N, _, H, W = xs[0].shape
        y = channel_major_empty((N, sum(self.channels), H, W), xs[0].dtype)  # ops/layout.py
        c0 = 0
        for x, C_x in zip(xs, self.channels):
            y[:, c0:c0 + C_x] = x  # one contiguous block of y's memory
            c0 += C_x
        return y

    def backward_numpy(self, grad):
        # y[:, c0_k : c0_k + C_k] = x_k, a copy: dL/dx_k = dL/dy[:, c0_k : c0_k + C_k], and the other
        # inputs' channels do not depend on x_k. Each gradient is a view of its block of dL/dy.
        bounds = numpy.cumsum([0] + self.channels).tolist()
        return tuple(grad[:, start:end] if wanted else None
                     for start, end, wanted in zip(bounds[:-1], bounds[1:], self.needs_input_grad))

    def forward_kernels(self, *xs):  # kernels/concat.cu: one launch per input, one thread per element
        self.channels = [x.shape[1] for x in xs]
        return concat_kernels.channel_concat_forward(xs, self.channels)

    def backward_kernels(self, grad):  # the same split: copies of each input's channel range
        return concat_kernels.channel_concat_backward(grad, self.channels, self.needs_input_grad)


def channel_concat(tensors, op="cat"):
    """Concatenate a list of (N, C_k, H, W) tensors along the channel dimension (dim 1) with
    :class:`ChannelConcat`, after checking that they can be: the same N, H, W, dtype and device.
    ``torch.cat(tensors, dim=1)`` for 4-D tensors; ``minires.cat`` calls it for that case."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty list of tensors")
    first = tensors[0]
    for k, t in enumerate(tensors):
        if t.ndim != 4:
            raise ValueError(f"{op}: channel concatenation takes (N, C, H, W) tensors, "
                             f"but tensor {k} has shape {tuple(t.shape)}")
        if t.device != first.device:
            raise RuntimeError(f"{op}: tensors must be on one device, but tensor 0 is on {first.device} and "
                               f"tensor {k} on {t.device}; move them with .to(device) first")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: tensors must share one dtype, but tensor 0 is {first.dtype} and tensor {k} "
                            f"is {t.dtype}; convert one with .astype('{first.dtype.name}') first")
        if t.shape[0] != first.shape[0] or t.shape[2:] != first.shape[2:]:
            raise ValueError(f"{op}: tensors must agree in N, H and W (all but the channel dimension 1), but "
                             f"tensor 0 has shape {tuple(first.shape)} and tensor {k} {tuple(t.shape)}")
    return ChannelConcat()(*tensors)
