"""The neural-network operations in PyTorch's ``torch.nn.functional`` spelling.

    import minires.functional as F
    y = F.relu(F.batch_norm(F.conv2d(x, w, padding=1), mean, var, gamma, beta, training=True))
"""
from minires.ops.activation import relu
from minires.ops.adaptive_pooling import adaptive_avg_pool2d, adaptive_max_pool2d
from minires.ops.batch_norm import batch_norm
from minires.ops.channel_scale import channel_scale
from minires.ops.conv import conv2d
from minires.ops.dropout import dropout
from minires.ops.linear import linear
from minires.ops.loss import cross_entropy
from minires.ops.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from minires.ops.shape import Pad
from minires.ops.shortcut import zero_pad_shortcut
from minires.ops.smooth import log_softmax, sigmoid, softmax, tanh


def pad(x, pad, value=0.0):
    """PyTorch's ``F.pad`` (constant mode): ``pad`` lists (before, after) pairs starting
    from the *last* axis, e.g. (left, right, top, bottom) for an image."""
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected (before, after) pairs for at most {x.ndim} axes, got {pad}")
    pairs = [(int(pad[k]), int(pad[k + 1])) for k in range(0, len(pad), 2)]
    pad_width = [(0, 0)] * (x.ndim - len(pairs)) + pairs[::-1]
    if any(b < 0 or a < 0 for b, a in pad_width):
        raise ValueError(f"pad: widths must be non-negative, got {pad}")
    return Pad(tuple(pad_width), value)(x)


__all__ = [
    "conv2d", "batch_norm", "relu", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
    "global_avg_pool2d",
    "linear", "dropout", "cross_entropy", "zero_pad_shortcut", "pad",
    "sigmoid", "tanh", "softmax", "log_softmax", "channel_scale",
]
