"""Matrix product with NumPy's rules: batched over leading axes, which broadcast."""
from minires.engine.function import Function
from minires.engine.tensor import as_tensor
from minires.ops.broadcast import sum_to


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"MatMul needs tensors with at least 2 dimensions, got {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match ({a.shape[-1]} != {b.shape[-2]})")
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, grad):
        # Y = A B: dL/dA = dL/dY B^T, dL/dB = A^T dL/dY (then undo batch broadcasting).
        a, b = self.saved_tensors
        grad_a = sum_to(grad @ b.swapaxes(-1, -2), a.shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(a.swapaxes(-1, -2) @ grad, b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


def matmul(a, b):
    """``a @ b``; a 1-D operand is treated as a row (left) or column (right) vector, as in NumPy."""
    a, b = as_tensor(a, like=b), as_tensor(b, like=a)
    a_vector, b_vector = a.ndim == 1, b.ndim == 1
    if a_vector:
        a = a.reshape(1, a.shape[0])
    if b_vector:
        b = b.reshape(b.shape[0], 1)
    y = MatMul()(a, b)
    if a_vector:
        y = y.reshape(y.shape[:-2] + y.shape[-1:])
    if b_vector:
        y = y.reshape(y.shape[:-1])
    return y
