"""Slow, obviously-correct loop implementations used as oracles by the op tests.

Everything here is written for clarity, not speed: explicit Python loops over
n, c, h, w, straight from the textbook definitions. Each op's ``*_backward``
gives the gradients of L = sum(grad_y * y) for a given upstream gradient
grad_y, again by loops: every term forward added into an output sends that
output's gradient back to what it was made of. The inputs are plain NumPy
arrays and so are the outputs (float64); nothing here imports minires.
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


def _adaptive_bins(length, out_length):
    """Bin i covers [floor(i * L / OL), ceil((i + 1) * L / OL)), PyTorch's rule, in integers."""
    return [(i * length // out_length, -(-(i + 1) * length // out_length)) for i in range(out_length)]


def adaptive_pool2d(x, output_size, reduce):
    """y[n, c, i, j] = reduce over bin (i, j) of x[n, c]; ``reduce`` is np.max or np.mean."""
    N, C, H, W = x.shape
    OH, OW = output_size
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for i, (h0, h1) in enumerate(_adaptive_bins(H, OH)):
                for j, (w0, w1) in enumerate(_adaptive_bins(W, OW)):
                    y[n, c, i, j] = reduce(x[n, c, h0:h1, w0:w1])
    return y


def adaptive_pool2d_backward(x, grad_y, kind):
    """``kind`` "max": each bin's gradient to its (first) largest pixel; "avg": shared equally."""
    N, C, H, W = x.shape
    OH, OW = grad_y.shape[2:]
    grad_x = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i, (h0, h1) in enumerate(_adaptive_bins(H, OH)):
                for j, (w0, w1) in enumerate(_adaptive_bins(W, OW)):
                    if kind == "max":
                        a, b = np.unravel_index(np.argmax(x[n, c, h0:h1, w0:w1]), (h1 - h0, w1 - w0))
                        grad_x[n, c, h0 + a, w0 + b] += grad_y[n, c, i, j]
                    else:
                        grad_x[n, c, h0:h1, w0:w1] += grad_y[n, c, i, j] / ((h1 - h0) * (w1 - w0))
    return grad_x


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


# ---- gradients: dL/d(inputs) for L = sum(grad_y * y) ------------------------------------------

def conv2d_backward(x, weight, grad_y, stride=1, padding=0):
    """(dL/dx, dL/dweight, dL/dbias): forward added w[o,c,i,j] * x[n,c,h,w] into y[n,o,oh,ow]
    (and b[o]), so grad_y[n,o,oh,ow] reaches x[n,c,h,w] times w[o,c,i,j] and w[o,c,i,j] times x[n,c,h,w]."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    OC, _, kh, kw = weight.shape
    _, _, OH, OW = grad_y.shape
    grad_x, grad_w, grad_b = np.zeros(x.shape), np.zeros(weight.shape), np.zeros(OC)
    for n in range(N):
        for o in range(OC):
            for oh in range(OH):
                for ow in range(OW):
                    g = float(grad_y[n, o, oh, ow])
                    grad_b[o] += g
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                h = oh * sh + i - ph
                                w = ow * sw + j - pw
                                if 0 <= h < H and 0 <= w < W:
                                    grad_x[n, c, h, w] += g * float(weight[o, c, i, j])
                                    grad_w[o, c, i, j] += g * float(x[n, c, h, w])
    return grad_x, grad_w, grad_b


def _windows(x_shape, kernel_size, stride, padding):
    """(n, c, oh, ow, [(h, w) of the window's real pixels, in row-major window order]) for every output."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    N, C, H, W = x_shape
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    pixels = [(oh * sh + i - ph, ow * sw + j - pw) for i in range(kh) for j in range(kw)]
                    yield n, c, oh, ow, [(h, w) for h, w in pixels if 0 <= h < H and 0 <= w < W]


def max_pool2d_backward(x, grad_y, kernel_size, stride=None, padding=0):
    """Each output's gradient goes to the one input its max came from: the first position holding
    the window's maximum in row-major window order (as in PyTorch); padding never wins."""
    grad_x = np.zeros(x.shape)
    for n, c, oh, ow, pixels in _windows(x.shape, kernel_size, stride, padding):
        winner = pixels[0]
        for h, w in pixels:
            if x[n, c, h, w] > x[(n, c) + winner]:
                winner = (h, w)
        grad_x[(n, c) + winner] += float(grad_y[n, c, oh, ow])
    return grad_x


def avg_pool2d_backward(x_shape, grad_y, kernel_size, stride=None, padding=0):
    """Each output is a window sum over kh*kw (padding counted), so every real pixel of the window
    receives grad / (kh*kw)."""
    kh, kw = _pair(kernel_size)
    grad_x = np.zeros(x_shape)
    for n, c, oh, ow, pixels in _windows(x_shape, kernel_size, stride, padding):
        for h, w in pixels:
            grad_x[n, c, h, w] += float(grad_y[n, c, oh, ow]) / (kh * kw)
    return grad_x


def global_avg_pool2d_backward(x_shape, grad_y):
    N, C, H, W = x_shape
    grad_x = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    grad_x[n, c, h, w] = float(grad_y[n, c]) / (H * W)
    return grad_x


def batch_norm_backward(x, grad_y, running_mean, running_var, weight=None, training=False, eps=1e-5):
    """(dL/dx, dL/dweight, dL/dbias) for batch_norm above. Per channel, over its m values, with
    x_hat = (x - mean) * inv_std and g = grad_y:
        dL/dbias = sum g,   dL/dweight = sum g * x_hat,
        evaluation (mean, var are constants):  dL/dx = gamma * inv_std * g,
        training (mean and var depend on x):   dL/dx = gamma * inv_std * (g - mean(g) - x_hat * mean(g * x_hat)).
    The training formula is the chain rule through mean = sum x / m and var = sum (x - mean)^2 / m.
    """
    C = x.shape[1]
    grad_x, grad_w, grad_b = np.zeros(x.shape), np.zeros(C), np.zeros(C)
    for c in range(C):
        if x.ndim == 2:
            positions = [(n, c) for n in range(x.shape[0])]
        else:
            positions = [(n, c, h, w) for n in range(x.shape[0])
                         for h in range(x.shape[2]) for w in range(x.shape[3])]
        values = [float(x[p]) for p in positions]
        grads = [float(grad_y[p]) for p in positions]
        m = len(values)
        if training:
            mean = sum(values) / m
            var = sum((v - mean) ** 2 for v in values) / m
        else:
            mean, var = float(running_mean[c]), float(running_var[c])
        inv_std = 1.0 / math.sqrt(var + eps)
        gamma = 1.0 if weight is None else float(weight[c])
        x_hat = [(v - mean) * inv_std for v in values]
        grad_b[c] = sum(grads)
        grad_w[c] = sum(g * xh for g, xh in zip(grads, x_hat))
        for p, g, xh in zip(positions, grads, x_hat):
            if training:
                grad_x[p] = gamma * inv_std * (g - grad_b[c] / m - xh * grad_w[c] / m)
            else:
                grad_x[p] = gamma * inv_std * g
    return grad_x, grad_w, grad_b


def cross_entropy_backward(logits, labels, label_smoothing=0.0, grad_loss=1.0):
    """dL/dz for L = grad_loss * cross_entropy: grad_loss * (softmax(z) - q) / N, q the smoothed target."""
    N, C = logits.shape
    grad = np.zeros((N, C))
    for n in range(N):
        row = [float(v) for v in logits[n]]
        top = max(row)
        total = sum(math.exp(v - top) for v in row)
        for c in range(C):
            q = label_smoothing / C + (1.0 - label_smoothing) * (1.0 if c == int(labels[n]) else 0.0)
            grad[n, c] = float(grad_loss) * (math.exp(row[c] - top) / total - q) / N
    return grad


def zero_pad_shortcut_backward(x_shape, grad_y, stride=1):
    """x[n,c,h*s,w*s] was copied to y[n,c,h,w]: it gets that gradient back; the other pixels get 0."""
    N, C, H, W = x_shape
    grad_x = np.zeros(x_shape)
    for n in range(N):
        for c in range(C):
            for h in range(grad_y.shape[2]):
                for w in range(grad_y.shape[3]):
                    grad_x[n, c, h * stride, w * stride] = grad_y[n, c, h, w]
    return grad_x


def relu_backward(x, grad_y):
    """grad where x > 0, else 0 (also at the kink x = 0)."""
    grad_x = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        grad_x[idx] = grad_y[idx] if x[idx] > 0 else 0.0
    return grad_x


# ---- im2col, the conv's rearrangement, per image (tests reshape it to the one-matrix layout) -------

def window_reads(x_shape, kernel_size, stride=1, padding=0):
    """Every (n, c, h, w, row, column) where im2col copies input pixel x[n, c, h, w] into
    col[n, row, column], with row = (c*kh + i)*kw + j and column = oh*OW + ow, for
    h = oh*sh + i - ph and w = ow*sw + j - pw inside the image (positions in the padding
    are never read). Also returns the col shape."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    N, C, H, W = x_shape
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    reads = []
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for oh in range(OH):
                        for ow in range(OW):
                            h, w = oh * sh + i - ph, ow * sw + j - pw
                            if 0 <= h < H and 0 <= w < W:
                                reads.append((n, c, h, w, (c * kh + i) * kw + j, oh * OW + ow))
    return reads, (N, C * kh * kw, OH * OW)


def im2col(x, kernel_size, stride=1, padding=0):
    """col[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, oh*sh + i - ph, ow*sw + j - pw], 0 in the padding."""
    reads, col_shape = window_reads(x.shape, kernel_size, stride, padding)
    col = np.zeros(col_shape)
    for n, c, h, w, row, column in reads:
        col[n, row, column] = x[n, c, h, w]
    return col


def col2im(col, x_shape, kernel_size, stride=1, padding=0):
    """The adjoint of im2col: every col entry is added into the pixel im2col copied it from
    (entries that came from the padding are dropped)."""
    reads, _ = window_reads(x_shape, kernel_size, stride, padding)
    x = np.zeros(x_shape)
    for n, c, h, w, row, column in reads:
        x[n, c, h, w] += col[n, row, column]
    return x


# ---- optimizers ----------------------------------------------------------------------------------

def sgd_step(param, grad, buffer, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step as PyTorch defines it; returns (new param, new momentum buffer or None).
        g = grad + weight_decay * param
        buffer = g on the first step, else momentum * buffer + (1 - dampening) * g
        direction = g + momentum * buffer (Nesterov) or buffer (momentum) or g (none)
        param = param - lr * direction
    """
    param, grad = np.asarray(param, dtype=np.float64), np.asarray(grad, dtype=np.float64)
    g = grad + weight_decay * param
    if momentum == 0:
        return param - lr * g, None
    buffer = g.copy() if buffer is None else momentum * buffer + (1 - dampening) * g
    direction = g + momentum * buffer if nesterov else buffer
    return param - lr * direction, buffer
