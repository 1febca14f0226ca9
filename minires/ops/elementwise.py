"""Elementwise functions: exp, log, abs, sqrt, clamp, and where (pick from two tensors).

Each writes one ``forward``/``backward`` pair on whatever array module its input
uses (``self.xp(array)``: NumPy or CuPy). At a kink (abs at 0, clamp at a bound)
the derivative does not exist; we take the value PyTorch takes, so that the two
frameworks train the same way.
"""
import numbers

from minires.engine.function import Function
from minires.engine.tensor import Tensor, as_tensor, tensor
from minires.ops.broadcast import sum_to
from minires.ops.validate import require_float


class Exp(Function):
    def forward(self, x):
        y = self.xp(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y = e^x: dy/dx = e^x = y.
        (y,) = self.saved_tensors
        return grad * y


class Log(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp(x).log(x)

    def backward(self, grad):
        # y = log x: dy/dx = 1/x.
        (x,) = self.saved_tensors
        return grad / x


class Abs(Function):
    def forward(self, x):
        self.save_for_backward(x)
        return self.xp(x).abs(x)

    def backward(self, grad):
        # y = |x| is x for x > 0 and -x for x < 0: dy/dx = sign(x), +1 or -1.
        # At the kink x = 0 we take 0 (sign(0) = 0), and at a NaN 0 too, as PyTorch does.
        (x,) = self.saved_tensors
        xp = self.xp(x)
        return grad * xp.where(xp.isnan(x), 0, xp.sign(x))


class Sqrt(Function):
    def forward(self, x):
        y = self.xp(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, grad):
        # y = x^(1/2): dy/dx = (1/2) x^(-1/2) = 1 / (2 y). At x = 0 that is inf, as in PyTorch.
        (y,) = self.saved_tensors
        return grad / (2 * y)


class Clamp(Function):
    """min(max(x, low), high), with either bound left out (None)."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, x):
        xp, low, high = self.xp(x), self.low, self.high
        y = x if low is None else xp.maximum(x, low)
        y = y if high is None else xp.minimum(y, high)  # after the max: low > high gives high, as in PyTorch
        if self.requires_grad:  # where the gradient gets through: low <= x <= high
            passes = xp.ones(x.shape, dtype=bool)
            if low is not None:
                passes &= x >= low
            if high is not None:
                passes &= x <= high
            self.save_for_backward(passes)
        return y

    def backward(self, grad):
        # y = x where low <= x <= high (dy/dx = 1) and a constant bound outside (dy/dx = 0).
        # On a bound itself, x == low or x == high, PyTorch lets the gradient through, and so do we.
        # A NaN fails both comparisons: its gradient is 0, as in PyTorch.
        (passes,) = self.saved_tensors
        return self.xp(grad).where(passes, grad, 0).astype(grad.dtype, copy=False)


class Where(Function):
    """condition ? a : b, elementwise, with NumPy broadcasting of all three."""

    def forward(self, condition, a, b):
        self.save_for_backward(condition)
        self.a_shape, self.b_shape, self.a_dtype, self.b_dtype = a.shape, b.shape, a.dtype, b.dtype
        return self.xp(a).where(condition, a, b)

    def backward(self, grad):
        # y = a where the condition holds, else b: dy/da = 1 there and 0 elsewhere, dy/db the other way
        # round. An input broadcast in forward sums the gradients of its copies (sum_to). The condition
        # is a bool tensor, outside the graph: it gets no gradient.
        (condition,) = self.saved_tensors
        xp = self.xp(grad)
        grad_a = grad_b = None
        if self.needs_input_grad[1]:
            grad_a = sum_to(xp.where(condition, grad, 0), self.a_shape).astype(self.a_dtype, copy=False)
        if self.needs_input_grad[2]:
            grad_b = sum_to(xp.where(condition, 0, grad), self.b_shape).astype(self.b_dtype, copy=False)
        return None, grad_a, grad_b


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def abs(input):
    """|x|, elementwise; PyTorch's ``torch.abs`` (also ``abs(x)`` and ``x.abs()``)."""
    return Abs()(input)


def sqrt(input):
    """The square root, elementwise (NaN below 0); PyTorch's ``torch.sqrt``, for floating-point tensors."""
    require_float("sqrt", "input", input)
    return Sqrt()(input)


def clamp(input, min=None, max=None):
    """Every element limited to [min, max] (either may be None, not both); PyTorch's ``torch.clamp``.
    min and max are numbers. Where min > max every element becomes max, as in PyTorch."""
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, numbers.Real)):
            raise TypeError(f"clamp: {name} must be a number or None, got {type(bound).__name__}")
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    # A NumPy scalar bound becomes a Python number, which adopts the tensor's dtype (float32 stays float32).
    min, max = (b.item() if hasattr(b, "item") else b for b in (min, max))
    return Clamp(min, max)(input)


def where(condition, input, other):
    """``input`` where ``condition`` is True, ``other`` where it is False, broadcasting all three;
    PyTorch's ``torch.where(condition, input, other)``. ``condition`` is a bool Tensor (``x > 0``) or
    a bool array; ``input`` and ``other`` are Tensors or numbers (a number takes the other's dtype)."""
    if not isinstance(condition, Tensor):
        like = input if isinstance(input, Tensor) else other
        device = like.device if isinstance(like, Tensor) else "cpu"
        condition = tensor(condition, device=device)
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor (such as x > 0), got dtype {condition.dtype}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):  # two numbers: float32, as PyTorch
        input, other = tensor(input, device=condition.device), tensor(other, device=condition.device)
    if not isinstance(input, Tensor):
        input = as_tensor(input, like=other)
    if not isinstance(other, Tensor):
        other = as_tensor(other, like=input)
    return Where()(condition, input, other)
