"""ReLU, the nonlinearity of every ResNet: y = max(x, 0).

Both paths save the output y: ReLU's gradient only needs to know where y > 0,
and the next layer keeps y alive anyway, so saving it costs no memory.
"""
import numpy

from minires.backends.cuda import relu as relu_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float


class ReLUFunction(Function):
    def forward_numpy(self, x):
        y = numpy.maximum(x, 0)  # max(-inf, 0) = 0 and max(-0.0, 0) = 0, as PyTorch gives
        self.save_for_backward(y)
        return y

    def backward_numpy(self, grad):
        # y = max(x, 0): dy/dx = 1 where x > 0, else 0 (we take 0 at the kink x = 0).
        # x > 0 exactly where y > 0, so the saved output tells us where.
        (y,) = self.saved_tensors
        active = y > 0
        with numpy.errstate(invalid="ignore"):  # inf * 0, handled below
            grad_x = numpy.multiply(grad, active)  # about 6x faster than numpy.where(active, grad, 0)
        # ... but a NaN or infinite upstream gradient times 0 gives NaN where PyTorch gives 0:
        # redo those (rare) arrays the slow, exact way. One sum finds them without a boolean
        # temporary: it is finite unless grad_x holds a NaN or an inf (or sums past float's
        # range, when the exact way gives the same answer anyway).
        if not numpy.isfinite(grad_x.sum()):
            grad_x = numpy.where(active, grad, 0).astype(grad.dtype, copy=False)
        return grad_x

    def forward_kernels(self, x):  # kernels/relu.cu, one thread per element
        y = relu_kernels.relu_forward(x)
        self.save_for_backward(y)
        return y

    def backward_kernels(self, grad):
        (y,) = self.saved_tensors
        return relu_kernels.relu_backward(y, grad)


def relu(x):
    require_float("relu", "input", x)
    return ReLUFunction()(x)
