"""Batch normalization (Ioffe & Szegedy 2015) for (N, C) and (N, C, H, W) inputs.

Per channel c, over the m = N (or N*H*W) values it has in the batch:
    mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2,   inv_std = 1 / sqrt(var + eps)
    x_hat = (x - mean) * inv_std,   y = gamma * x_hat + beta
In evaluation the running averages replace the batch statistics.
"""
import numpy

from minires.backends import get_array_module
from minires.backends.cpu_threads import run_on_every_core, scratch
from minires.backends.cuda import batch_norm as bn_kernels
from minires.backends.cuda import contiguous
from minires.engine.function import Function
from minires.engine.tensor import Tensor
from minires.ops.layout import as_channel_major
from minires.ops.validate import require_float, require_ndim, require_same_dtype


class BatchNormFunction(Function):
    """Both paths save (x, mean, inv_std, gamma): x is small next to what the graph holds anyway,
    and backward recomputes x_hat = (x - mean) * inv_std from it rather than keeping a second
    activation-sized array."""

    def __init__(self, running_mean, running_var, training, momentum, eps):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def _update_running_stats(self, mean, var, m):
        # Running variance uses the unbiased estimate m/(m-1) var, as PyTorch does.
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mean.astype(self.running_mean.dtype)
        self.running_var *= 1 - self.momentum
        self.running_var += self.momentum * (var * (m / (m - 1))).astype(self.running_var.dtype)

    # ---- NumPy path: channel blocks, each in cache, shared between the cores -----------------
    # Per channel, forward makes four passes (sum, x - mean, sum of squares, scale and shift) and
    # backward six. Done over the whole activation each pass would stream it from main memory;
    # done a block of channels at a time (channel_blocks: a few hundred KB, which channel-major
    # memory keeps contiguous) every pass after the first finds the block in cache. Each core
    # takes a share of the blocks (minires/backends/cpu_threads.py).
    def forward_numpy(self, x, gamma, beta):
        x = as_channel_major(x)  # each channel one contiguous run: one copy beats six strided passes
        y = numpy.empty_like(x)  # x's layout
        x3, y3 = channel_view(x), channel_view(y)
        C, m = x.shape[1], x.size // x.shape[1]
        if self.training:
            mean, var = numpy.empty(C, x.dtype), numpy.empty(C, x.dtype)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)

        def normalize(share):
            for c0, c1 in share:
                x_block, y_block = x3[:, c0:c1], y3[:, c0:c1]
                if self.training:
                    mean[c0:c1] = x_block.sum(axis=(0, 2)) / m
                numpy.subtract(x_block, mean[c0:c1, None], out=y_block)  # x - mean, in y
                if self.training:
                    squares = scratch("batch norm product", y_block.shape, x.dtype)
                    var[c0:c1] = numpy.multiply(y_block, y_block, out=squares).sum(axis=(0, 2)) / m
                y_block *= (gamma[c0:c1] / numpy.sqrt(var[c0:c1] + self.eps))[:, None]  # gamma * x_hat ...
                y_block += beta[c0:c1, None]  # ... + beta

        run_on_every_core(normalize, channel_blocks(x3))
        if self.training and self.running_mean is not None:
            self._update_running_stats(mean, var, m)
        inv_std = 1.0 / numpy.sqrt(var + self.eps)
        self.save_for_backward(x, mean, inv_std, gamma)
        return y

    def backward_numpy(self, grad):
        # With g = dL/dy:  dL/dbeta = sum g,  dL/dgamma = sum g * x_hat  (sums over the batch axes).
        # Evaluation: mean and var are constants, so dL/dx = g * gamma * inv_std.
        # Training: mean and var depend on x too. Differentiating through them gives
        #   dL/dx = gamma * inv_std * (g - dL/dbeta / m - x_hat * dL/dgamma / m),
        # computed as  scale * g  +  coef * (x - mean)  -  scale * dL/dbeta / m  per channel,
        # with scale = gamma * inv_std and coef = -scale * inv_std * dL/dgamma / m.
        x, mean, inv_std, gamma = self.saved_tensors
        if grad.strides != x.strides:  # another layout: copy it into x's, so that the blocks line up
            grad = in_layout_of(x, grad)
        grad_x = numpy.empty_like(x)
        x3, g3, gx3 = channel_view(x), channel_view(grad), channel_view(grad_x)
        C, m = x.shape[1], x.size // x.shape[1]
        grad_gamma, grad_beta = numpy.empty(C, grad.dtype), numpy.empty(C, grad.dtype)
        scale = gamma * inv_std

        def gradients(share):
            for c0, c1 in share:
                x_block, g_block, gx_block = x3[:, c0:c1], g3[:, c0:c1], gx3[:, c0:c1]
                centered = numpy.subtract(x_block, mean[c0:c1, None],
                                          out=scratch("batch norm centered", x_block.shape, x.dtype))
                product = numpy.multiply(g_block, centered, out=scratch("batch norm product", x_block.shape, x.dtype))
                grad_beta[c0:c1] = g_block.sum(axis=(0, 2))
                grad_gamma[c0:c1] = product.sum(axis=(0, 2)) * inv_std[c0:c1]  # sum g * x_hat
                numpy.multiply(g_block, scale[c0:c1, None], out=gx_block)
                if self.training:
                    centered *= (-scale * inv_std * grad_gamma / m)[c0:c1, None]
                    gx_block += centered
                    gx_block -= (scale * grad_beta / m)[c0:c1, None]

        run_on_every_core(gradients, channel_blocks(x3))
        return grad_x, grad_gamma, grad_beta

    # ---- kernel path: kernels/batch_norm.cu ------------------------------------------------
    def forward_kernels(self, x, gamma, beta):
        x = contiguous(x)  # dense NCHW memory, kept for backward
        if self.training:
            mean, var, inv_std = bn_kernels.batch_norm_statistics(x, self.eps)
            if self.running_mean is not None:
                m = x.size // x.shape[1]
                running = (self.running_mean, self.running_var)
                if all(bn_kernels.can_update_in_place(r, x) for r in running):
                    bn_kernels.update_running_stats(*running, mean, var, m, self.momentum)
                else:  # running stats of another dtype, or a strided view: update them as the NumPy path does
                    self._update_running_stats(mean, var, m)
        else:
            mean = self.running_mean.astype(x.dtype)
            inv_std = 1.0 / self.xp(x).sqrt(self.running_var.astype(x.dtype) + self.eps)
        self.save_for_backward(x, mean, inv_std, gamma)
        return bn_kernels.batch_norm_forward(x, mean, inv_std, gamma, beta)

    def backward_kernels(self, grad):
        # The same formulas as backward_numpy; the kernels recompute x_hat on the fly.
        x, mean, inv_std, gamma = self.saved_tensors
        grad_gamma, grad_beta = bn_kernels.batch_norm_backward_reduce(x, grad, mean, inv_std)
        grad_x = bn_kernels.batch_norm_backward_input(x, grad, mean, inv_std, gamma, grad_gamma, grad_beta,
                                                      self.training)
        return grad_x, grad_gamma, grad_beta


def in_layout_of(x, a):
    """A copy of a, laid out in memory as x is."""
    copy = numpy.empty_like(x)
    copy[...] = a
    return copy


def channel_view(a):
    """a (N, C) or channel-major (N, C, H, W) as (outer, C, inner) without a copy: (N, C, 1) or
    (1, C, N*H*W). Sums over axes 0 and 2 are then per-channel sums."""
    if a.ndim == 2:
        return a[:, :, None]
    return a.transpose(1, 0, 2, 3).reshape(1, a.shape[1], -1)


BLOCK_BYTES = 512 * 2**10  # one block of channels: a quarter of a core's L2 cache


def channel_blocks(a3):
    """(c0, c1) ranges of channels of a3 (outer, C, inner) of about BLOCK_BYTES each."""
    C = a3.shape[1]
    per_block = max(1, BLOCK_BYTES // max(1, a3.shape[0] * a3.shape[2] * a3.itemsize))
    return [(c0, min(c0 + per_block, C)) for c0 in range(0, C, per_block)]


def _array(t):
    return t.data if isinstance(t, Tensor) else t


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's ``F.batch_norm``. In training it also updates running_mean/var in place."""
    weight, bias = check_batch_norm_arguments("batch_norm", x, running_mean, running_var, weight, bias, training)
    fn = BatchNormFunction(_array(running_mean), _array(running_var), training, momentum, eps)
    return fn(x, weight, bias)


def check_batch_norm_arguments(op, x, running_mean, running_var, weight, bias, training):
    """A ValueError for shapes that do not fit; returns (weight, bias), ones and zeros when None."""
    require_ndim(op, "input", x, (2, 4))
    require_float(op, "input", x)
    C = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (C,):
            raise ValueError(f"{op}: {name} must have shape ({C},) for input of shape {tuple(x.shape)}, got {tuple(t.shape)}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: evaluation mode needs running_mean and running_var")
    if training and x.numel() // C < 2:
        raise ValueError(f"{op}: training needs more than one value per channel, got input of shape {tuple(x.shape)}")
    require_same_dtype(op, input=x, weight=weight, bias=bias)
    xp = get_array_module(x.data)
    if weight is None:  # no affine transform: gamma = 1, beta = 0
        weight = Tensor(xp.ones((C,), dtype=x.dtype))
    if bias is None:
        bias = Tensor(xp.zeros((C,), dtype=x.dtype))
    return weight, bias

