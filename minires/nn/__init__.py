"""Neural-network building blocks, spelled as in ``torch.nn``."""
from minires.nn.module import Module
from minires.nn.parameter import Parameter
from minires.nn.layers import (
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Identity,
    Linear, MaxPool2d, ReLU, Sequential,
)
from minires.nn.activations import LogSoftmax, Sigmoid, Softmax, Tanh
from minires.nn.containers import ModuleDict, ModuleList
from minires.nn.losses import CrossEntropyLoss, MSELoss
from minires.nn.pyramid import SpatialPyramidPool2d
from minires.nn.sync_batch_norm import SyncBatchNorm
from minires.nn import init
from minires import functional

__all__ = [
    "Module", "Parameter", "Conv2d", "BatchNorm1d", "BatchNorm2d", "Linear", "ReLU", "MaxPool2d",
    "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool2d", "Dropout", "Flatten", "Identity", "Sequential", "init", "functional",
    "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "ModuleList", "ModuleDict", "CrossEntropyLoss", "MSELoss",
    "SpatialPyramidPool2d", "SyncBatchNorm",
]
