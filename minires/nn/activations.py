"""The smooth activations as Modules, spelled as in ``torch.nn``: no parameters, they call ``minires.functional``."""
import minires.functional as F
from minires.nn.module import Module


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class _AlongDim(Module):
    """What Softmax and LogSoftmax share: the ``dim`` they normalise over, required (PyTorch warns without one)."""

    def __init__(self, dim):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{type(self).__name__}: dim must be an int (the axis to normalise over), got {dim!r}")
        self.dim = dim

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(_AlongDim):
    def forward(self, x):
        return F.log_softmax(x, self.dim)
