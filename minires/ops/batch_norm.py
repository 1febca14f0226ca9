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
    @staticmethod
    def _axes_and_shape(x):
        """The batch axes (all but the channel axis) and the shape of a broadcastable per-channel value."""
        return ((0,), (1, -1)) if x.ndim == 2 else ((0, 2, 3), (1, -1, 1, 1))

    def forward_numpy(self, x, gamma, beta):
        axes, shape = self._axes_and_shape(x)
        if self.training:
            mean = x.mean(axis=axes)
            x_centered = x - mean.reshape(shape)
            var = (x_centered * x_centered).mean(axis=axes)
            if self.running_mean is not None:
                self._update_running_stats(mean, var, x.size // x.shape[1])
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
            x_centered = x - mean.reshape(shape)
        inv_std = 1.0 / numpy.sqrt(var + self.eps)
        self.save_for_backward(x, mean, inv_std, gamma)
        x_hat = x_centered
        x_hat *= inv_std.reshape(shape)  # in place: x_centered is ours
        return x_hat * gamma.reshape(shape) + beta.reshape(shape)

    def backward_numpy(self, grad):
        # With g = dL/dy:  dL/dbeta = sum g,  dL/dgamma = sum g * x_hat  (sums over the batch axes).
        # Evaluation: mean and var are constants, so dL/dx = g * gamma * inv_std.
        # Training: mean and var depend on x too. Differentiating through them gives
        #   dL/dx = gamma * inv_std * (g - dL/dbeta / m - x_hat * dL/dgamma / m).
        x, mean, inv_std, gamma = self.saved_tensors
        axes, shape = self._axes_and_shape(x)
        x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
        grad_beta = grad.sum(axis=axes)
        grad_gamma = (grad * x_hat).sum(axis=axes)
        scale = (gamma * inv_std).reshape(shape)
        if self.training:
            m = grad.size // grad.shape[1]
            grad_x = scale * (grad - (grad_beta / m).reshape(shape) - x_hat * (grad_gamma / m).reshape(shape))
        else:
            grad_x = grad * scale
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

