"""ReLU, the nonlinearity of every ResNet."""
from minires.engine.function import Function
from minires.ops.validate import require_float


class ReLUFunction(Function):
    def forward(self, x):
        mask = x > 0
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        # y = max(x, 0): dy/dx = 1 where x > 0, else 0 (we take 0 at the kink x = 0).
        (mask,) = self.saved_tensors
        return grad * mask


def relu(x):
    require_float("relu", "input", x)
    return ReLUFunction()(x)
