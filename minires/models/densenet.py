"""DenseNets for CIFAR (Huang et al. 2017, "Densely Connected Convolutional Networks"), and their
memory-efficient form (Pleiss et al. 2017, "Memory-Efficient Implementation of DenseNets").

Inside a dense block every layer sees the feature maps of all the layers before it, concatenated
along the channels, and adds k new ones (k, the growth rate):

    x_{l+1} = cat([x_l, H(x_l)])            so  x_l = cat([x_0, H(x_0), H(x_1), ..., H(x_{l-1})])

A ResNet *adds* its branch to the identity, x + F(x); a DenseNet *keeps* the identity beside the
new features, so every earlier feature map reaches every later layer (and the loss) unchanged, and
the gradient reaches it straight from each of them.

    stem:    conv3x3 (in_channels -> 16; 2k with bottleneck layers, DenseNet-BC)
    blocks:  dense block 1 (32x32), transition, dense block 2 (16x16), transition, dense block 3 (8x8)
    head:    BN, ReLU, global average pool, fully connected

H (the "composite function"):  BN-ReLU-conv3x3 (k channels)
    with bottleneck (DenseNet-B): BN-ReLU-conv1x1 (4k channels), BN-ReLU-conv3x3 (k channels)
Transition:  BN-ReLU-conv1x1 (C -> floor(compression * C) channels; DenseNet-C: compression < 1),
             then 2x2 average pooling
Layers per block: (depth - 4) / 3, or (depth - 4) / 6 with bottlenecks (two convolutions per layer);
the 4 are the stem, the two transitions and the classifier.

``model.blocks`` is one flat ``nn.Sequential`` of every dense layer and transition, in order, so
``for block in model.blocks`` (and a hook on each) sees the input of every dense layer.

**Memory.** Every layer's input x_l is a fresh concatenation as wide as all the layers before it,
and a training step keeps each of them, plus, per layer, batch norm's and ReLU's outputs of the same
width: memory that grows with the square of the number of layers. ``memory_efficient=True`` follows
Pleiss et al.'s two "shared memory" ideas, so that none of those is kept per layer:

* The concatenations of a block share one allocation (``ConcatStorage``): channel-major memory as
  wide as the block's last output. x_l is the view of its first C_l channels, and layer l writes
  its k new maps right after them, so x_{l+1} is again a view, k channels wider. Nothing that is written
  is ever overwritten, so (unlike Pleiss et al., whose storage is reused and recomputed) nothing
  needs recomputing; a block costs the memory of its widest concatenation.
* Each layer runs its first BN-ReLU-conv under ``checkpoint`` (minires/engine/checkpoint.py): the
  batch norm and ReLU outputs of x_l are not kept but recomputed from x_l in backward, at the
  price of running that BN-ReLU-conv twice.

The storage is used where it pays: on the NumPy path while the graph is recorded (without a graph
every concatenation is freed as soon as the next one exists). On the kernel path, whose kernels take
dense NCHW arrays, a layer concatenates with ``minires.cat`` and only the checkpoint saves memory.
``benchmarks/bench_memory.py`` measures both variants.
"""
import math
import weakref

import numpy

import minires
import minires.functional as F
from minires.engine.checkpoint import checkpoint
from minires.engine.function import NUMPY_PATH, Function, path_for
from minires.engine.grad_mode import is_grad_enabled
from minires.models.preact_resnet import preactivated_head
from minires.models.stages import he_init_convolutions
from minires.nn.layers import AvgPool2d, BatchNorm2d, Conv2d, Sequential
from minires.nn.module import Module


# ---- shared storage for a block's concatenations (memory_efficient=True) -------------------------

_storages = weakref.WeakValueDictionary()  # id(memory) -> the ConcatStorage that owns it, while it lives


class ConcatStorage:
    """Channel-major memory for ``width`` channels of (N, C, H, W) maps, of which the first ``filled``
    are written. The graph keeps it alive (every ``ConcatIntoStorage`` node holds it)."""

    def __init__(self, N, width, H, W, dtype):
        self.memory = numpy.empty((width, N, H, W), dtype)  # (C, N, H, W): a channel range is one block
        self.width, self.filled = width, 0
        _storages[id(self.memory)] = self

    def first_channels(self, channels):
        """The (N, channels, H, W) view of the first ``channels`` channels."""
        return self.memory[:channels].transpose(1, 0, 2, 3)

    def holds(self, x):
        """Whether the array x is exactly the written part of this storage (so a layer can append to it)."""
        written = self.first_channels(self.filled)
        return (x.base is self.memory and x.shape == written.shape and x.strides == written.strides
                and x.__array_interface__["data"] == written.__array_interface__["data"])

    @staticmethod
    def holding(x):
        """The storage whose written part is the array x, or None."""
        storage = _storages.get(id(x.base))
        return storage if storage is not None and storage.holds(x) else None


class ConcatIntoStorage(Function):
    """y = cat([x, new], dim=1), written into ``storage`` as its first C + k channels; y is a view of
    them. When x already is the storage's written part (the previous layer's output), only ``new``
    is copied; otherwise (the first layer of a block) x is copied in first. Saves the split, C."""

    def __init__(self, storage):
        self.storage = storage

    def forward(self, x, new):
        self.split = C = x.shape[1]
        if not self.storage.holds(x):
            self.storage.first_channels(C)[...] = x
        self.storage.memory[C:C + new.shape[1]] = new.transpose(1, 0, 2, 3)
        self.storage.filled = C + new.shape[1]
        return self.storage.first_channels(self.storage.filled)

    def backward(self, grad):
        # y[:, :C] = x and y[:, C:] = new are copies: dL/dx and dL/dnew are the two channel ranges of
        # dL/dy (views, no new memory).
        return (grad[:, :self.split] if self.needs_input_grad[0] else None,
                grad[:, self.split:] if self.needs_input_grad[1] else None)


def concat_into_shared_storage(x, new, block_width):
    """cat([x, new], dim=1) as a view of the storage x is the written part of (appending to it), or of a
    new storage ``block_width`` channels wide when x is not (or the storage has no room left)."""
    storage = ConcatStorage.holding(x.data)
    if storage is None or storage.width < x.shape[1] + new.shape[1]:
        N, _, H, W = x.shape
        storage = ConcatStorage(N, max(block_width, x.shape[1] + new.shape[1]), H, W, x.dtype)
    return ConcatIntoStorage(storage)(x, new)


# ---- the network ---------------------------------------------------------------------------------

class DenseLayer(Module):
    """y = cat([x, branch(x)], dim=1): ``in_channels`` in, ``in_channels + growth_rate`` out.

    ``branch`` is H, the layer's only computation. There is no ``shortcut`` module: the identity is
    carried by the concatenation itself (y[:, :in_channels] is x), which is this layer's shortcut.
    Replacing a dense layer by ``nn.Identity()`` therefore changes the width, and the layers after
    it no longer fit."""

    def __init__(self, in_channels, growth_rate, bottleneck=False, memory_efficient=False, block_width=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, in_channels + growth_rate
        # the width of its block's last output: how wide a storage this layer starts, when it starts one
        self.block_width = self.out_channels if block_width is None else block_width
        self.bottleneck, self.memory_efficient = bottleneck, memory_efficient
        first_width = 4 * growth_rate if bottleneck else growth_rate
        self.norm1 = BatchNorm2d(in_channels)
        if bottleneck:
            self.conv1 = Conv2d(in_channels, first_width, 1, bias=False)
            self.norm2 = BatchNorm2d(first_width)
            self.conv2 = Conv2d(first_width, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = Conv2d(in_channels, first_width, 3, padding=1, bias=False)

    def first_composite(self, x):
        """BN-ReLU-conv1 of the whole concatenated input x: the part whose intermediates (x's batch
        norm and ReLU, each as wide as x) the memory-efficient layer recomputes instead of keeping."""
        return self.conv1(F.relu(self.norm1(x)))

    def branch(self, x):
        """H(x): the layer's k new feature maps."""
        out = checkpoint(self.first_composite, x) if self.memory_efficient else self.first_composite(x)
        if self.bottleneck:
            out = self.conv2(F.relu(self.norm2(out)))
        return out

    def forward(self, x):
        new = self.branch(x)
        if self.memory_efficient and is_grad_enabled() and path_for(x.data) == NUMPY_PATH:
            return concat_into_shared_storage(x, new, self.block_width)
        return minires.cat([x, new], dim=1)

    def extra_repr(self):
        return (f"{self.in_channels} -> {self.out_channels}, bottleneck={self.bottleneck}, "
                f"memory_efficient={self.memory_efficient}")


class Transition(Module):
    """BN-ReLU-conv1x1 to ``out_channels``, then 2x2 average pooling: halves the resolution between blocks."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm = BatchNorm2d(in_channels)
        self.conv = Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = AvgPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.norm(x))))


class DenseNet(Module):
    def __init__(self, depth, growth_rate=12, bottleneck=False, compression=1.0, num_classes=10, in_channels=3,
                 memory_efficient=False):
        super().__init__()
        per_layer = 6 if bottleneck else 3  # convolutions per layer (1 or 2) times the three blocks
        if (depth - 4) % per_layer != 0 or depth < 4 + per_layer:
            kind = "with bottleneck layers 6n+4 (e.g. 100, 250)" if bottleneck else "3n+4 (e.g. 40, 100)"
            raise ValueError(f"DenseNet depth must be {kind} with n >= 1 layers per block, got {depth}")
        if not isinstance(growth_rate, int) or growth_rate < 1:
            raise ValueError(f"growth_rate must be a positive integer (the paper uses 12, 24 or 40), "
                             f"got {growth_rate!r}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1] (1: no compression, 0.5 for DenseNet-BC), "
                             f"got {compression}")
        layers_per_block = (depth - 4) // per_layer
        self.depth, self.growth_rate, self.compression = depth, growth_rate, compression
        channels = 2 * growth_rate if bottleneck else 16
        self.stem = Conv2d(in_channels, channels, 3, padding=1, bias=False)
        blocks = []
        for block in range(3):
            block_width = channels + layers_per_block * growth_rate
            for _ in range(layers_per_block):
                blocks.append(DenseLayer(channels, growth_rate, bottleneck, memory_efficient, block_width))
                channels += growth_rate
            if block < 2:
                compressed = math.floor(compression * channels)
                if compressed < 1:
                    raise ValueError(f"compression {compression} leaves none of the {channels} channels "
                                     f"after block {block + 1}; use a larger one")
                blocks.append(Transition(channels, compressed))
                channels = compressed
        self.blocks = Sequential(*blocks)
        self.head = preactivated_head(channels, num_classes)  # the last layer's output is not yet activated
        he_init_convolutions(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def densenet40_k12(num_classes=10, in_channels=3, memory_efficient=False):
    """DenseNet (L=40, k=12): 1.0M parameters in Table 2 of the paper."""
    return DenseNet(40, 12, False, 1.0, num_classes, in_channels, memory_efficient)


def densenet_bc100_k12(num_classes=10, in_channels=3, memory_efficient=False):
    """DenseNet-BC (L=100, k=12): bottleneck layers and compression 0.5; 0.8M parameters in Table 2."""
    return DenseNet(100, 12, True, 0.5, num_classes, in_channels, memory_efficient)
