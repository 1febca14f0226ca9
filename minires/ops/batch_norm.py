"""Batch normalization (Ioffe & Szegedy 2015) for (N, C) and (N, C, H, W) inputs.

Per channel c, over the m = N (or N*H*W) values it has in the batch:
    mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2,   inv_std = 1 / sqrt(var + eps)
    x_hat = (x - mean) * inv_std,   y = gamma * x_hat + beta
In evaluation the running averages replace the batch statistics.
"""
import numpy

from minires.backends import get_array_module
from minires.backends.cuda import batch_norm as bn_kernels
from minires.backends.cuda import contiguous
from minires.engine.function import Function
from minires.engine.tensor import Tensor
from minires.ops.layout import is_channel_major
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

    # ---- NumPy path -----------------------------------------------------------------------
    # Few passes over the activations: the per-channel sums are matrix products (BLAS) over the
    # rows of channel_rows(x), x_hat is never stored (only x_centered, updated in place), and
    # the output is built from per-channel coefficients.
    def forward_numpy(self, x, gamma, beta):
        shape = _channel_shape(x)
        if self.training:
            m = x.size // x.shape[1]
            mean = per_channel_sum(x) / m
            x_centered = x - mean.reshape(shape)
            var = per_channel_dot(x_centered, x_centered) / m
            if self.running_mean is not None:
                self._update_running_stats(mean, var, m)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
            x_centered = x - mean.reshape(shape)
        inv_std = 1.0 / numpy.sqrt(var + self.eps)
        self.save_for_backward(x, mean, inv_std, gamma)
        y = x_centered  # in place from here on: x_centered is ours
        y *= (gamma * inv_std).reshape(shape)  # y = gamma * x_hat ...
        y += beta.reshape(shape)  # ... + beta
        return y

    def backward_numpy(self, grad):
        # With g = dL/dy:  dL/dbeta = sum g,  dL/dgamma = sum g * x_hat  (sums over the batch axes).
        # Evaluation: mean and var are constants, so dL/dx = g * gamma * inv_std.
        # Training: mean and var depend on x too. Differentiating through them gives
        #   dL/dx = gamma * inv_std * (g - dL/dbeta / m - x_hat * dL/dgamma / m),
        # computed as  scale * g  +  coef * (x - mean)  -  scale * dL/dbeta / m  per channel,
        # with scale = gamma * inv_std and coef = -scale * inv_std * dL/dgamma / m.
        x, mean, inv_std, gamma = self.saved_tensors
        shape = _channel_shape(x)
        x_centered = x - mean.reshape(shape)
        grad_beta = per_channel_sum(grad)
        grad_gamma = per_channel_dot(grad, x_centered) * inv_std  # sum g * x_hat
        scale = gamma * inv_std
        grad_x = grad * scale.reshape(shape)
        if self.training:
            m = grad.size // grad.shape[1]
            x_centered *= (-scale * inv_std * grad_gamma / m).reshape(shape)
            grad_x += x_centered
            grad_x -= (scale * grad_beta / m).reshape(shape)
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


def _channel_shape(x):
    """The shape that broadcasts a per-channel value against x: (1, C) or (1, C, 1, 1)."""
    return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)


def channel_rows(a, channel_major):
    """a (N, C, H, W) as a stack of rows, each of one channel's values: (C, 1, N*H*W) when
    ``channel_major`` (free for channel-major memory, see ops/layout.py), else (N*C, 1, H*W)
    (free for NCHW memory; reshape copies any other layout)."""
    N, C = a.shape[:2]
    if channel_major:
        return a.transpose(1, 0, 2, 3).reshape(C, 1, -1)
    return a.reshape(N * C, 1, -1)


def per_channel_sum(a):
    """sum of a over every axis but the channel axis (1): each row of channel_rows(a) times a
    vector of ones (BLAS), then a channel's rows added; much faster than numpy's sum over
    axes (0, 2, 3)."""
    if a.ndim == 2:
        return a.sum(axis=0)
    rows = channel_rows(a, is_channel_major(a))
    sums = rows @ numpy.ones((rows.shape[2], 1), a.dtype)
    return sums.reshape(-1, a.shape[1]).sum(axis=0)


def per_channel_dot(a, b):
    """sum of a * b over every axis but the channel axis, without an a * b temporary: one dot
    product per row of channel_rows (batched in one matmul: BLAS, and more accurate in float32
    than summing a * b)."""
    if a.ndim == 2:
        return (a.T[:, None, :] @ b.T[:, :, None]).reshape(-1)
    channel_major = is_channel_major(a) and is_channel_major(b)
    a_rows, b_rows = channel_rows(a, channel_major), channel_rows(b, channel_major)
    return (a_rows @ b_rows.transpose(0, 2, 1)).reshape(-1, a.shape[1]).sum(axis=0)


def _array(t):
    return t.data if isinstance(t, Tensor) else t


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """PyTorch's ``F.batch_norm``. In training it also updates running_mean/var in place."""
    op = "batch_norm"
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
    fn = BatchNormFunction(_array(running_mean), _array(running_var), training, momentum, eps)
    return fn(x, weight, bias)

