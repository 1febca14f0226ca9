"""The autograd engine: tensors, the functions that connect them, and backward."""
from minires.engine.grad_mode import no_grad, enable_grad, is_grad_enabled
from minires.engine.tensor import Tensor, tensor, as_tensor
from minires.engine.function import Function

__all__ = ["Tensor", "tensor", "as_tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled"]
