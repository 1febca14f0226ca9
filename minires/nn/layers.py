"""The layers: thin Modules that own their parameters and call ``minires.functional``."""
import math

import numpy

import minires.functional as F
from minires.nn import init
from minires.nn.module import Module
from minires.nn.parameter import Parameter
from minires.engine.tensor import Tensor
from minires.ops.validate import pair


def _zeros(*shape, dtype=numpy.float32):
    """A float32 array of zeros for a parameter that the init right after it overwrites."""
    return numpy.zeros(shape, dtype=dtype)


class Conv2d(Module):
    """PyTorch's default initialisation: kaiming_uniform_(a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size)
        self.stride, self.padding = stride, padding
        self.weight = Parameter(_zeros(out_channels, in_channels, *self.kernel_size))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = None
        if bias:
            bound = 1.0 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
            self.bias = Parameter(_zeros(out_channels))
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_zeros(out_features, in_features))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = None
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = Parameter(_zeros(out_features))
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _BatchNorm(Module):
    """Buffers as in PyTorch: ``running_mean``, ``running_var`` and ``num_batches_tracked`` (a 0-d int64 count of
    the training-mode batches seen; PyTorch's state dicts, torchvision's published weights among them, hold it).
    A state dict saved before minires tracked it loads all the same: the count then stays as it is."""
    expected_ndim = None
    optional_state = ("num_batches_tracked",)  # load_state_dict does not require these keys

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(numpy.ones(num_features, dtype=numpy.float32)) if affine else None
        self.bias = Parameter(numpy.zeros(num_features, dtype=numpy.float32)) if affine else None
        self.register_buffer("running_mean", Tensor(numpy.zeros(num_features, dtype=numpy.float32)))
        self.register_buffer("running_var", Tensor(numpy.ones(num_features, dtype=numpy.float32)))
        self.register_buffer("num_batches_tracked", Tensor(numpy.array(0, dtype=numpy.int64)))

    def forward(self, x):
        if x.ndim != self.expected_ndim:
            raise ValueError(f"{type(self).__name__} expects {self.expected_ndim}-D input, got shape {tuple(x.shape)}")
        if self.training:
            self.num_batches_tracked.data += 1  # in place, on the buffer's device: nothing is read back
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm2d(_BatchNorm):
    expected_ndim = 4


class BatchNorm1d(_BatchNorm):
    expected_ndim = 2


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class _Pool2d(Module):
    """What the window poolings share: kernel_size, stride (default: kernel_size), padding."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class _AdaptivePool2d(Module):
    """What the adaptive poolings share: the output size (an int, a pair, or a pair with None)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """(N, C, H, W) -> (N, C, OH, OW); ``AdaptiveAvgPool2d(1)`` then ``Flatten()`` is ``GlobalAvgPool2d()``."""

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    def forward(self, x):
        return F.adaptive_max_pool2d(x, self.output_size)


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C): the average of each channel."""

    def forward(self, x):
        return F.global_avg_pool2d(x)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Identity(Module):
    def forward(self, x):
        return x


class Sequential(Module):
    """Modules applied one after another; sub-modules are named "0", "1", ..."""

    def __init__(self, *modules):
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __setitem__(self, index, module):
        """``seq[i] = module`` puts ``module`` in place i (keeping its name, so state-dict keys and order stay)."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential holds Modules (e.g. nn.Identity()), got {type(module).__name__}")
        names = list(self._modules)
        if not -len(names) <= index < len(names):
            raise IndexError(f"index {index} is out of range for a Sequential of {len(names)} modules")
        name = names[index]
        self._modules[name] = module  # the same key: the order is kept
        object.__setattr__(self, name, module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x
