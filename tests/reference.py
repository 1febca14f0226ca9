"""Slow, obviously-correct loop implementations used as oracles by the op tests.

Everything here is written for clarity, not speed: explicit Python loops over
n, c, h, w, straight from the textbook definitions. The inputs are plain NumPy
arrays and so are the outputs; nothing here imports minires.
"""
import math

import numpy as np


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Cross-correlation: y[n,o,oh,ow] = b[o] + sum_{c,i,j} w[o,c,i,j] * x[n,c,oh*s+i-p, ow*s+j-p].

    Positions outside the input (the zero padding) contribute nothing.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    OC, C2, kh, kw = weight.shape
    assert C == C2
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, OC, OH, OW), dtype=np.result_type(x, weight))
    for n in range(N):
        for o in range(OC):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                h = oh * sh + i - ph
                                w = ow * sw + j - pw
                                if 0 <= h < H and 0 <= w < W:
                                    total += float(weight[o, c, i, j]) * float(x[n, c, h, w])
                    if bias is not None:
                        total += float(bias[o])
                    y[n, o, oh, ow] = total
    return y


def _pool(x, kernel_size, stride, padding, reduce, pad_value):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    window = []
                    for i in range(kh):
                        for j in range(kw):
                            h = oh * sh + i - ph
                            w = ow * sw + j - pw
                            if 0 <= h < H and 0 <= w < W:
                                window.append(float(x[n, c, h, w]))
                            else:
                                window.append(pad_value)
                    y[n, c, oh, ow] = reduce(window)
    return y


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window; padded positions are -inf (they never win)."""
    return _pool(x, kernel_size, stride, padding, max, -math.inf)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window, padded positions counted as zeros (count_include_pad=True)."""
    return _pool(x, kernel_size, stride, padding, lambda vals: sum(vals) / len(vals), 0.0)


def global_avg_pool2d(x):
    N, C, H, W = x.shape
    y = np.zeros((N, C), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            total = 0.0
            for h in range(H):
                for w in range(W):
                    total += float(x[n, c, h, w])
            y[n, c] = total / (H * W)
    return y


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch norm for (N, C) or (N, C, H, W).

    Returns (y, new_running_mean, new_running_var); the running arrays passed in are not modified.
    Training: normalise with the batch mean and the *biased* batch variance (divide by m);
    the running variance is updated with the *unbiased* one (divide by m - 1):
        running_mean <- (1 - momentum) running_mean + momentum * mean
        running_var  <- (1 - momentum) running_var  + momentum * var * m / (m - 1)
    Evaluation: normalise with the running statistics, which stay unchanged.
    """
    C = x.shape[1]
    new_mean = None if running_mean is None else np.array(running_mean, dtype=np.float64, copy=True)
    new_var = None if running_var is None else np.array(running_var, dtype=np.float64, copy=True)
    y = np.zeros_like(x)
    for c in range(C):
        # Every value channel c has in the batch, as a flat list.
        if x.ndim == 2:
            values = [float(x[n, c]) for n in range(x.shape[0])]
        else:
            values = [float(x[n, c, h, w]) for n in range(x.shape[0])
                      for h in range(x.shape[2]) for w in range(x.shape[3])]
        m = len(values)
        if training:
            mean = sum(values) / m
            var = sum((v - mean) ** 2 for v in values) / m
            if new_mean is not None:
                new_mean[c] = (1 - momentum) * new_mean[c] + momentum * mean
                new_var[c] = (1 - momentum) * new_var[c] + momentum * var * m / (m - 1)
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        gamma = 1.0 if weight is None else float(weight[c])
        beta = 0.0 if bias is None else float(bias[c])
        inv_std = 1.0 / math.sqrt(var + eps)
        if x.ndim == 2:
            for n in range(x.shape[0]):
                y[n, c] = gamma * (float(x[n, c]) - mean) * inv_std + beta
        else:
            for n in range(x.shape[0]):
                for h in range(x.shape[2]):
                    for w in range(x.shape[3]):
                        y[n, c, h, w] = gamma * (float(x[n, c, h, w]) - mean) * inv_std + beta
    return y, new_mean, new_var


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean over the batch of -sum_c q_c log softmax(z)_c with q = (1 - eps) onehot + eps / C.

    log softmax is computed as z - (max z + log sum exp(z - max z)), the stable way.
    """
    N, C = logits.shape
    total = 0.0
    for n in range(N):
        row = [float(v) for v in logits[n]]
        top = max(row)
        log_sum = top + math.log(sum(math.exp(v - top) for v in row))
        for c in range(C):
            q = label_smoothing / C + (1.0 - label_smoothing) * (1.0 if c == int(labels[n]) else 0.0)
            total -= q * (row[c] - log_sum)
    return total / N


def zero_pad_shortcut(x, out_channels, stride=1):
    """Option A: y[n,c,h,w] = x[n,c,h*s,w*s] for c < C_in, and 0 for the appended channels."""
    N, C, H, W = x.shape
    OH = (H - 1) // stride + 1
    OW = (W - 1) // stride + 1
    y = np.zeros((N, out_channels, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for h in range(OH):
                for w in range(OW):
                    y[n, c, h, w] = x[n, c, h * stride, w * stride]
    return y


def relu(x):
    y = np.array(x, copy=True)
    for idx in np.ndindex(x.shape):
        y[idx] = x[idx] if x[idx] > 0 else 0.0
    return y


def linear(x, weight, bias=None):
    """y[n, o] = b[o] + sum_i x[n, i] * w[o, i] for a 2-D x."""
    N, I = x.shape
    O = weight.shape[0]
    y = np.zeros((N, O), dtype=np.result_type(x, weight))
    for n in range(N):
        for o in range(O):
            total = 0.0 if bias is None else float(bias[o])
            for i in range(I):
                total += float(x[n, i]) * float(weight[o, i])
            y[n, o] = total
    return y
