"""Synchronized batch normalization: batch statistics over the images of *every* rank.

Rank r holds m_r values per channel; the batch is all M = sum_r m_r of them. Forward gathers
each rank's (m_r, mean_r, var_r) and combines them (Chan et al.'s parallel variance):
    mean = sum_r m_r mean_r / M,   var = sum_r m_r (var_r + (mean_r - mean)^2) / M
which is the mean and the biased variance of all M values, without the cancellation of
E[x^2] - mean^2. Then y = gamma * (x - mean) * inv_std + beta, as in ``batch_norm.py``.

In a world of one, or in evaluation (running statistics), this is plain batch norm.
"""
import numpy

from minires.backends.cuda import batch_norm as bn_kernels
from minires.backends.cuda import contiguous
from minires.distributed import collectives
from minires.ops.batch_norm import BatchNormFunction, _array, channel_view, check_batch_norm_arguments, in_layout_of
from minires.ops.layout import as_channel_major


def combined_statistics(m, mean, var):
    """(M, mean, var) of all ranks' values per channel, from this rank's m, mean and var. M is a 0-d
    array on the arrays' device: on a GPU, reading it back would make the step wait."""
    xp = BatchNormFunction.xp(mean)
    mine = xp.concatenate([xp.asarray([m], dtype=numpy.float64), mean.astype(numpy.float64),
                           var.astype(numpy.float64)])
    everyone = collectives.all_gather(mine)  # (ranks, 1 + 2C), in float64: counts and sums stay exact
    C = mean.shape[0]
    counts, means, variances = everyone[:, :1], everyone[:, 1:1 + C], everyone[:, 1 + C:]
    total = counts.sum()
    combined_mean = (counts * means).sum(axis=0) / total
    combined_var = (counts * (variances + (means - combined_mean) ** 2)).sum(axis=0) / total
    return total.astype(mean.dtype), combined_mean.astype(mean.dtype), combined_var.astype(var.dtype)


class SyncBatchNormFunction(BatchNormFunction):
    """Training mode only (evaluation needs no other rank). Saves (x, mean, inv_std, gamma), as
    BatchNormFunction, and M, the number of values per channel on all ranks together."""

    def __init__(self, running_mean, running_var, momentum, eps):
        super().__init__(running_mean, running_var, True, momentum, eps)

    def statistics(self, m, mean, var):
        """The combined statistics; updates the running ones (with M's unbiased variance)."""
        self.total, mean, var = combined_statistics(m, mean, var)
        if self.running_mean is not None:
            self._update_running_stats(mean, var, self.total)
        return mean, 1.0 / self.xp(var).sqrt(var + self.eps)

    # ---- NumPy path ------------------------------------------------------------------------------
    def forward_numpy(self, x, gamma, beta):
        x = as_channel_major(x)
        x3 = channel_view(x)  # (outer, C, inner): per-channel sums over axes 0 and 2
        m = x.size // x.shape[1]
        local_mean = x3.sum(axis=(0, 2)) / m
        local_var = ((x3 - local_mean[:, None]) ** 2).sum(axis=(0, 2)) / m
        mean, inv_std = self.statistics(m, local_mean, local_var)
        y = numpy.empty_like(x)
        y3 = channel_view(y)
        numpy.subtract(x3, mean[:, None], out=y3)
        y3 *= (gamma * inv_std)[:, None]
        y3 += beta[:, None]
        self.save_for_backward(x, mean, inv_std, gamma)
        return y

    def backward_numpy(self, grad):
        # y_i = gamma * x_hat_i + beta on every rank, with mean and var over all M values. With
        # g = dL/dy (each rank its own), sum_g and sum_gx = sum g * x_hat over *all* ranks:
        #   dL/dx_i = gamma * inv_std * (g_i - sum_g / M - x_hat_i * sum_gx / M)
        # (batch_norm.py's formula with the sums and M taken over every rank: one all-reduce).
        # dL/dgamma and dL/dbeta are this rank's sums only: they are parameter gradients, which
        # the data-parallel all-reduce combines with the other ranks' like any other.
        x, mean, inv_std, gamma = self.saved_tensors
        if grad.strides != x.strides:
            grad = in_layout_of(x, grad)
        x3, g3 = channel_view(x), channel_view(grad)
        x_hat = (x3 - mean[:, None]) * inv_std[:, None]
        grad_beta = g3.sum(axis=(0, 2))
        grad_gamma = (g3 * x_hat).sum(axis=(0, 2))
        sum_g, sum_gx = self.sums_over_ranks(grad_beta, grad_gamma)
        grad_x = numpy.empty_like(x)
        gx3 = channel_view(grad_x)
        M = self.total
        numpy.subtract(g3, (sum_g / M)[:, None], out=gx3)
        gx3 -= x_hat * (sum_gx / M)[:, None]
        gx3 *= (gamma * inv_std)[:, None]
        return grad_x, grad_gamma, grad_beta

    def sums_over_ranks(self, sum_g, sum_gx):
        both = self.xp(sum_g).concatenate([sum_g, sum_gx])
        collectives.all_reduce_([both])
        C = sum_g.shape[0]
        return both[:C], both[C:]

    # ---- kernel path: kernels/batch_norm.cu --------------------------------------------------------
    def forward_kernels(self, x, gamma, beta):
        x = contiguous(x)
        local_mean, local_var, _ = bn_kernels.batch_norm_statistics(x, self.eps)
        mean, inv_std = self.statistics(x.size // x.shape[1], local_mean, local_var)
        self.save_for_backward(x, mean, inv_std, gamma)
        return bn_kernels.batch_norm_forward(x, mean, inv_std, gamma, beta)

    def backward_kernels(self, grad):
        # The same formulas as backward_numpy. The input kernel divides the sums by this rank's m,
        # so it is given sum * m / M, which it turns into sum / M.
        x, mean, inv_std, gamma = self.saved_tensors
        grad_gamma, grad_beta = bn_kernels.batch_norm_backward_reduce(x, grad, mean, inv_std)
        sum_g, sum_gx = self.sums_over_ranks(grad_beta, grad_gamma)
        m_over_M = (x.size // x.shape[1]) / self.total  # a 0-d array of x's dtype
        grad_x = bn_kernels.batch_norm_backward_input(x, grad, mean, inv_std, gamma, sum_gx * m_over_M,
                                                      sum_g * m_over_M, True)
        return grad_x, grad_gamma, grad_beta


def sync_batch_norm(x, running_mean, running_var, weight, bias, momentum=0.1, eps=1e-5):
    """Training-mode batch norm with the statistics of every rank's batch (updates the running
    statistics in place). Every rank must call it, in the same order: it runs collectives."""
    weight, bias = check_batch_norm_arguments("sync_batch_norm", x, running_mean, running_var, weight, bias, True)
    return SyncBatchNormFunction(_array(running_mean), _array(running_var), momentum, eps)(x, weight, bias)
