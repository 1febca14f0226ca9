"""ReLU, the nonlinearity of every ResNet."""
from minires.backends.cuda import relu as relu_kernels
from minires.backends.cuda import uses_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float


class ReLUFunction(Function):
    def forward(self, x):
        if uses_kernels(x):  # GPU: kernels/relu.cu; backward needs only the output
            y = relu_kernels.relu_forward(x)
            self.save_for_backward(y)
            return y
        mask = x > 0
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        # y = max(x, 0): dy/dx = 1 where x > 0, else 0 (we take 0 at the kink x = 0).
        if uses_kernels(grad):
            (y,) = self.saved_tensors
            return relu_kernels.relu_backward(y, grad)
        (mask,) = self.saved_tensors
        return grad * mask


def relu(x):
    require_float("relu", "input", x)
    return ReLUFunction()(x)
