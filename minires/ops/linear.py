"""Fully connected layer: y = x W^T + b, with W of shape (out_features, in_features) as in PyTorch."""
from minires.engine.function import Function
from minires.ops.validate import require_float, require_same_dtype


class LinearFunction(Function):
    def forward(self, x, weight, bias=None):
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1])  # any leading axes act as the batch
        y = x2 @ weight.T
        if bias is not None:
            y += bias
        self.save_for_backward(x2, weight)
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, grad):
        # Y = X W^T + b with G = dL/dY (rows = samples):
        #   dL/dX = G W,   dL/dW = G^T X,   dL/db = sum of G's rows.
        x2, weight = self.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        grad_x = (g @ weight).reshape(self.x_shape) if self.needs_input_grad[0] else None
        grad_w = g.T @ x2 if self.needs_input_grad[1] else None
        grad_b = g.sum(axis=0) if len(self.needs_input_grad) > 2 and self.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x, weight, bias=None):
    """PyTorch's ``F.linear``: x (*, in) and weight (out, in) give (*, out)."""
    op = "linear"
    require_float(op, "input", x)
    require_same_dtype(op, input=x, weight=weight, bias=bias)
    if weight.ndim != 2 or x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input's last axis must match weight (out, in): got input {tuple(x.shape)}, weight {tuple(weight.shape)}"
        )
    if bias is not None:
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"{op}: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        return LinearFunction()(x, weight, bias)
    return LinearFunction()(x, weight)
