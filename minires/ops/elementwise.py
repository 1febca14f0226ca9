"""Elementwise functions: exp and log."""
from minires.engine.function import Function


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


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)
