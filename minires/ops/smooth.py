"""The smooth activations: sigmoid, tanh, softmax and log_softmax.

Sigmoid, the gate of Squeeze-and-Excitation and Highway networks, has CUDA kernels of
its own (``kernels/sigmoid.cu``), so it writes both paths, ``forward_numpy``/
``backward_numpy`` and ``forward_kernels``/``backward_kernels``, with the same formula.
tanh, softmax and log_softmax have none: each writes one ``forward``/``backward`` pair on
whatever array module its input uses (``self.xp(array)``: NumPy or CuPy).
Each saves its *output* y, as ReLU does: every gradient here is a function of y
alone, and the next layer keeps y alive anyway, so saving it costs no memory.

Stability: exp overflows float64 above x ~ 709 (float32 above ~ 88), so

* sigmoid only ever takes exp of -|x| <= 0, which lies in [0, 1];
* softmax and log_softmax subtract the maximum along ``dim`` first. This changes
  nothing, since softmax(x - c) = softmax(x) for any constant c, and afterwards
  every exponent is <= 0 with at least one equal to 0, so the sum is >= 1.
"""
import numpy

from minires.backends.cuda import sigmoid as sigmoid_kernels
from minires.engine.function import Function
from minires.ops.validate import require_float


def check_dim(op, dim, ndim):
    """``dim`` (an int, negatives counting from the end) as an axis for NumPy: None for a 0-d tensor."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{op}: dim must be an int (the axis to normalise over), got {dim!r}")
    size = max(ndim, 1)  # PyTorch lets a 0-d tensor be normalised over dim 0 or -1, its single element
    if not -size <= dim < size:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected a dim in [{-size}, {size - 1}])")
    return dim if ndim else None  # NumPy takes negative axes as they are


def log_softmax_array(x, axis):
    """log softmax of an array along ``axis``, stable: subtract the maximum before exp.

    log softmax(x)_i = x_i - log sum_j e^{x_j} = s_i - log sum_j e^{s_j}, with s = x - max(x).
    """
    xp = Function.xp(x)
    if x.size == 0:  # nothing to normalise (and max of an empty axis is an error)
        return x.copy()
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_array(x, axis):
    """softmax of an array along ``axis``, stable: e^{s_i} / sum_j e^{s_j} with s = x - max(x)."""
    xp = Function.xp(x)
    if x.size == 0:
        return x.copy()
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class SigmoidFunction(Function):
    """Both paths save the output y."""

    def forward_numpy(self, x):
        # 1 / (1 + e^-x) overflows e^-x for x << 0, so use e = e^-|x| in [0, 1] and
        # write sigmoid for x < 0 as e^x / (1 + e^x) = e / (1 + e). At x = +-inf, e = 0
        # and y is exactly 1 or 0, as PyTorch gives.
        e = numpy.exp(-numpy.abs(x))
        y = numpy.where(x >= 0, 1 / (1 + e), e / (1 + e))
        self.save_for_backward(y)
        return y

    def backward_numpy(self, grad):
        # y = 1 / (1 + e^-x): dy/dx = e^-x / (1 + e^-x)^2 = y * (1 - y),
        # because 1 - y = e^-x / (1 + e^-x).
        (y,) = self.saved_tensors
        return grad * (y * (1 - y))

    def forward_kernels(self, x):  # kernels/sigmoid.cu, one thread per element, the same formula
        y = sigmoid_kernels.sigmoid_forward(x)
        self.save_for_backward(y)
        return y

    def backward_kernels(self, grad):  # the same gradient, g * y * (1 - y)
        (y,) = self.saved_tensors
        return sigmoid_kernels.sigmoid_backward(y, grad)


class TanhFunction(Function):
    def forward(self, x):
        y = self.xp(x).tanh(x)  # stable as it is: tanh(+-inf) = +-1
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y = tanh x = sinh x / cosh x: dy/dx = (cosh^2 x - sinh^2 x) / cosh^2 x = 1 - tanh^2 x = 1 - y^2.
        (y,) = self.saved_tensors
        return grad * (1 - y * y)


class SoftmaxFunction(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        y = softmax_array(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y_i = e^{x_i} / sum_k e^{x_k}: dy_i/dx_j = y_i (delta_ij - y_j). With upstream g,
        # dL/dx_j = sum_i g_i y_i (delta_ij - y_j) = y_j (g_j - sum_i g_i y_i), the sum along dim.
        (y,) = self.saved_tensors
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmaxFunction(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        y = log_softmax_array(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y_i = x_i - log sum_k e^{x_k}: dy_i/dx_j = delta_ij - softmax_j. With upstream g,
        # dL/dx_j = sum_i g_i (delta_ij - softmax_j) = g_j - softmax_j sum_i g_i, and softmax = e^y.
        (y,) = self.saved_tensors
        return grad - self.xp(y).exp(y) * grad.sum(axis=self.axis, keepdims=True)


def sigmoid(x):
    """1 / (1 + e^-x), elementwise; PyTorch's ``torch.sigmoid``."""
    require_float("sigmoid", "input", x)
    return SigmoidFunction()(x)


def tanh(x):
    """The hyperbolic tangent, elementwise; PyTorch's ``torch.tanh``."""
    require_float("tanh", "input", x)
    return TanhFunction()(x)


def softmax(x, dim):
    """e^x / sum e^x along ``dim`` (required, as PyTorch recommends); PyTorch's ``F.softmax(x, dim)``."""
    require_float("softmax", "input", x)
    return SoftmaxFunction(check_dim("softmax", dim, x.ndim))(x)


def log_softmax(x, dim):
    """log softmax(x) along ``dim``, computed without forming softmax; PyTorch's ``F.log_softmax(x, dim)``."""
    require_float("log_softmax", "input", x)
    return LogSoftmaxFunction(check_dim("log_softmax", dim, x.ndim))(x)
