"""Elementwise arithmetic with NumPy broadcasting: + - * / neg pow."""
from minires.backends import cpu_threads
from minires.engine.function import Function
from minires.engine.tensor import Tensor, as_tensor
from minires.ops.broadcast import sum_to


def _pair(a, b):
    """Both operands as Tensors; a Python number adopts the other's dtype and device."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, like=b)
    if not isinstance(b, Tensor):
        b = as_tensor(b, like=a)
    return a, b


class Add(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return cpu_threads.add(a, b)  # a + b, on every core for a residual addition

    def backward(self, grad):
        # y = a + b: dy/da = dy/db = 1, summed over broadcast axes.
        return sum_to(grad, self.a_shape), sum_to(grad, self.b_shape)


class Sub(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, grad):
        # y = a - b: dy/da = 1, dy/db = -1.
        return sum_to(grad, self.a_shape), sum_to(-grad, self.b_shape)


class Mul(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, grad):
        # y = a * b: dy/da = b, dy/db = a.
        a, b = self.saved_tensors
        grad_a = sum_to(grad * b, a.shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(grad * a, b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, grad):
        # y = a / b: dy/da = 1/b, dy/db = -a/b^2.
        a, b = self.saved_tensors
        grad_a = sum_to(grad / b, a.shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(-grad * a / (b * b), b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        # y = -x: dy/dx = -1.
        return -grad


class PowScalar(Function):
    """x ** c for a constant number c."""

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x ** self.exponent

    def backward(self, grad):
        # y = x^c: dy/dx = c x^(c-1).
        (x,) = self.saved_tensors
        if self.exponent == 0:  # y = 1 is constant (and 0 * 0^-1 would give NaN at x = 0)
            return self.xp(x).zeros_like(grad)
        return grad * self.exponent * x ** (self.exponent - 1)


class Pow(Function):
    """a ** b where both are tensors."""

    def forward(self, a, b):
        y = a ** b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, grad):
        # y = a^b: dy/da = b a^(b-1), dy/db = a^b log(a)  (needs a > 0).
        a, b, y = self.saved_tensors
        xp = self.xp(a)
        grad_a = sum_to(grad * b * a ** (b - 1), a.shape) if self.needs_input_grad[0] else None
        grad_b = sum_to(grad * y * xp.log(a), b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


def add(a, b):
    return Add()(*_pair(a, b))


def sub(a, b):
    return Sub()(*_pair(a, b))


def mul(a, b):
    return Mul()(*_pair(a, b))


def div(a, b):
    return Div()(*_pair(a, b))


def neg(x):
    return Neg()(x)


def pow(x, exponent):
    if isinstance(exponent, Tensor):
        return Pow()(*_pair(x, exponent))
    if not isinstance(x, Tensor):  # number ** Tensor
        return Pow()(*_pair(x, exponent))
    return PowScalar(exponent)(x)
