"""``minires.summary``: a model's layers, output shapes, parameters and multiply-adds, as a table.

    print(minires.summary(minires.models.resnet20(), (1, 3, 32, 32)))

(torchinfo's ``summary(model, input_size=...)`` in spirit.) One forward pass of zeros of
``input_shape`` (batch included) runs through the model in eval mode without a graph, with a
forward pre-hook and a forward hook on every module: the pre-hook opens a row when the module
is called (so rows come in calling order, and a module's depth is how many calls enclose it),
the forward hook fills in the output's shape and the multiply-adds. The model's modes (every
module's ``training`` flag) are put back afterwards and the hooks removed.

Multiply-adds ("MACs"), counted as the papers count FLOPs (He et al. 2015: ResNet-50 "3.8
billion FLOPs", in fact multiply-adds), only where the big products are:

    convolution   (output elements) x (C_in x kh x kw)    each output is a dot product of that length
    linear        (output elements) x (in_features)

Batch norm, activations, pooling and the residual additions count as 0: a handful of
operations per element, against hundreds per output of a convolution. Output elements
include the batch, so the count grows with N (as torchinfo's does); biases are not counted.

Parameters: a row shows the module's *own* parameters (not its children's), each parameter
counted in the first row that meets it; a module met again, or one that shares a parameter
with an earlier one (tied weights), shows "(shared)" for what was already counted. The totals
come from ``model.parameters()``, each parameter once.
"""
from dataclasses import dataclass

import numpy

from minires.engine.grad_mode import no_grad
from minires.engine.tensor import Tensor
from minires.factories import zeros
from minires.nn.layers import Conv2d, Linear
from minires.nn.module import Module


@dataclass
class LayerRow:
    """One module call: where it sits, what it gave, what it holds and costs."""

    name: str  # the module's dotted path in the model ("" for the model itself)
    type: str  # its class name
    depth: int  # 0 for the model, 1 for a module it calls, ...
    index: int  # the how-many-th row at this depth (torchinfo's "depth-idx")
    output_shape: tuple = None  # None where the output is not a single Tensor
    params: int = 0  # its own parameters not counted in an earlier row
    shared: bool = False  # it has parameters already counted in an earlier row
    macs: int = 0  # multiply-adds of this call itself (0 for containers)


def multiply_adds(module, output):
    """The multiply-adds of one call of ``module`` that gave ``output`` (see the module docstring)."""
    if not isinstance(output, Tensor):
        return 0
    if isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * module.in_channels * kh * kw
    if isinstance(module, Linear):
        return output.numel() * module.in_features
    return 0


class ModelSummary:
    """What :func:`summary` found: ``rows`` (LayerRow, in calling order), ``total_params``,
    ``trainable_params``, ``non_trainable_params`` and ``total_macs``; ``str()`` is the table."""

    def __init__(self, model_type, input_shape, rows, total_params, trainable_params):
        self.model_type, self.input_shape, self.rows = model_type, input_shape, rows
        self.total_params, self.trainable_params = total_params, trainable_params
        self.total_macs = sum(row.macs for row in rows)

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    def __str__(self):
        labels = [row.type if row.depth == 0 else "  " * row.depth + f"{row.type}: {row.depth}-{row.index}"
                  for row in self.rows]
        first = max([len("Layer (type:depth-idx)")] + [len(label) for label in labels]) + 3
        table = [("Layer (type:depth-idx)", "Output Shape", "Param #", "Mult-Adds")]
        for label, row in zip(labels, self.rows):
            shape = "--" if row.output_shape is None else str(list(row.output_shape))
            params = f"{row.params:,}" if row.params else ("(shared)" if row.shared else "--")
            table.append((label, shape, params, f"{row.macs:,}" if row.macs else "--"))
        widths = (first, max(25, max(len(cells[1]) for cells in table) + 3), 15, 15)
        rule = "=" * sum(widths)
        lines = [rule, "".join(f"{cell:<{w}}" for cell, w in zip(table[0], widths)).rstrip(), rule]
        lines += ["".join(f"{cell:<{w}}" for cell, w in zip(cells, widths)).rstrip() for cells in table[1:]]
        unit, scale = ("G", 1e9) if self.total_macs >= 1e9 else ("M", 1e6)
        lines += [rule, f"Total params: {self.total_params:,}", f"Trainable params: {self.trainable_params:,}",
                  f"Non-trainable params: {self.non_trainable_params:,}",
                  f"Total mult-adds ({unit}): {self.total_macs / scale:.2f}", rule]
        return "\n".join(lines)

    __repr__ = __str__  # a notebook cell ending in summary(...) shows the table


def summary(model, input_shape, device="cpu"):
    """Run ``model`` once on zeros of ``input_shape`` (batch included, e.g. (1, 3, 224, 224)) on
    ``device`` and return a :class:`ModelSummary`; ``print`` it for torchinfo's table.

    Multiply-adds are counted for convolutions, (output elements) x (C_in x kh x kw), and linear
    layers, (output elements) x (in_features); batch norm, activations, pooling and additions
    count as 0, as in the papers' FLOP counts."""
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be a minires.nn.Module, got {type(model).__name__}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if not shape or not all(isinstance(n, (int, numpy.integer)) and not isinstance(n, bool) and n > 0
                            for n in shape):
        raise ValueError(f"summary: input_shape must be a tuple of positive ints with the batch first, "
                         f"e.g. (1, 3, 32, 32); got {input_shape!r}")
    shape = tuple(int(n) for n in shape)
    parameters = list({id(p): p for p in model.parameters()}.values())  # each parameter once
    dtype = next((p.dtype for p in parameters if p.dtype.kind == "f"), numpy.float32)
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name)  # a module reachable twice keeps its first name

    rows, open_rows, counted, rows_at_depth = [], [], set(), {}

    def open_row(module, args):
        depth = len(open_rows)
        rows_at_depth[depth] = rows_at_depth.get(depth, 0) + 1
        own = [p for p in module._parameters.values() if p is not None]  # its own, not its children's
        new = [p for p in own if id(p) not in counted]
        counted.update(id(p) for p in own)
        row = LayerRow(names.get(id(module), "?"), type(module).__name__, depth, rows_at_depth[depth],
                       params=sum(p.numel() for p in new), shared=len(new) < len(own))
        rows.append(row)
        open_rows.append(row)

    def close_row(module, args, output):
        row = open_rows.pop()
        row.output_shape = tuple(output.shape) if isinstance(output, Tensor) else None
        row.macs = multiply_adds(module, output)

    modes = [(module, module.training) for module in model.modules()]
    handles = []
    try:
        for module in {id(m): m for m in model.modules()}.values():  # each once, however often it is reached
            handles.append(module.register_forward_pre_hook(open_row))
            handles.append(module.register_forward_hook(close_row))
        model.eval()
        with no_grad():
            model(zeros(shape, dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return ModelSummary(type(model).__name__, shape, rows, sum(p.numel() for p in parameters),
                        sum(p.numel() for p in parameters if p.requires_grad))
