"""Undo NumPy broadcasting in backward.

If ``x`` of shape (3, 1) was broadcast to (2, 3, 4) in forward, every copy of an
element contributed to the output, so its gradient is the *sum* of the
gradients of all its copies: sum over the added leading axes and over the
axes where x had size 1.
"""


def sum_to(grad, shape):
    """Sum ``grad`` down to ``shape`` (the inverse of broadcasting ``shape`` up to grad.shape)."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)
