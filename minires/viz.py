"""See the graph: ``draw_graph(loss)`` draws the autograd graph that produced a tensor.

    fig = minires.viz.draw_graph(loss, params=dict(model.named_parameters()), gradients=True)
    fig.savefig("graph.png")

Boxes are the Functions (the ops, with the shape of what they computed) and the leaves
(inputs and parameters, named when ``params`` is given); arrows point the way the
forward pass went. The layout is *by depth*: a Function sits one row below the deepest
of its inputs, so a chain of layers runs top to bottom and a residual block shows as
two paths (the branch, several rows long, and the shortcut, one arrow) meeting at an
add. Leaves sit in the row just above the op that uses them. A ResNet-20 becomes a
long, narrow column, readable by scrolling; nothing is collapsed.

With ``gradients=True`` it first runs ``output.backward(retain_graph=True)`` (so the
leaves' ``.grad`` grow by one more backward) and writes under every box the norm of
the gradient of its output: where a gradient vanishes or explodes shows at a glance.
No Graphviz is needed: it is all matplotlib.
"""
import math

import numpy

from minires.backends import get_array_module, to_device
from minires.engine.autograd import topological_order

ROW_HEIGHT, COLUMN_WIDTH = 0.9, 2.6  # inches per row and per box column


def graph_nodes(output):
    """(functions in topological order, leaves, edges (from, to), rows, labels) of output's graph."""
    if output.grad_fn is None:
        raise ValueError("draw_graph needs a tensor computed by ops (with a grad_fn); this one is a leaf "
                         "or was computed under no_grad()")
    functions = topological_order(output.grad_fn)
    if any(fn.inputs is None for fn in functions):
        raise RuntimeError("the graph was freed by backward(); draw it before, or pass retain_graph=True to backward")
    shapes = {output.grad_fn: tuple(output.shape)}
    leaves, edges, row = {}, [], {}
    for fn in functions:  # inputs come first, so their rows are known
        parents = []
        for t in fn.inputs:
            if t.grad_fn is not None:
                shapes[t.grad_fn] = tuple(t.shape)
                parents.append(t.grad_fn)
            else:
                leaves.setdefault(id(t), t)
                parents.append(id(t))
            edges.append((parents[-1], fn))
        function_rows = [row[p] for p in parents if p in row]
        row[fn] = 1 + max(function_rows, default=0)
        for p in parents:
            if p not in row:  # a leaf: just above its first consumer
                row[p] = row[fn] - 1
    return functions, leaves, edges, row, shapes


def draw_graph(output, params=None, gradients=False):
    """A matplotlib Figure of the graph that produced ``output`` (see the module docstring).

    params     ``{name: tensor}`` (e.g. ``dict(model.named_parameters())``) to label the leaves
    gradients  run backward first and write each output's gradient norm under its box
    """
    import matplotlib.pyplot as plt

    functions, leaves, edges, row, shapes = graph_nodes(output)
    norms = _gradient_norms(output, functions, leaves) if gradients else {}
    names = {id(t): name for name, t in (params or {}).items()}

    labels = {}
    for fn in functions:
        labels[fn] = f"{type(fn).__name__.removesuffix('Function')}\n{_shape(shapes[fn])}"
    for key, t in leaves.items():
        labels[key] = f"{names.get(key, 'input' if not t.requires_grad else 'leaf')}\n{_shape(t.shape)}"
    for key, norm in norms.items():
        labels[key] += f"\n|grad| {norm:.3g}"

    by_row = {}
    for key in labels:
        by_row.setdefault(row[key], []).append(key)
    position = {}
    for r, keys in by_row.items():
        for column, key in enumerate(keys):
            position[key] = (column - (len(keys) - 1) / 2, -r)
    width = max(len(keys) for keys in by_row.values())
    fig, ax = plt.subplots(figsize=(max(4.0, COLUMN_WIDTH * width), max(3.0, ROW_HEIGHT * (len(by_row) + 1))))
    for source, target in edges:
        skips_rows = row[target] - row[source] > 1  # a shortcut: bend it around the boxes between
        ax.annotate("", xy=position[target], xytext=position[source],
                    arrowprops={"arrowstyle": "->", "color": "0.45", "shrinkA": 14, "shrinkB": 14,
                                "connectionstyle": f"arc3,rad={0.35 if skips_rows else 0}"})
    for key, (x, y) in position.items():
        is_function = key in shapes
        ax.text(x, y, labels[key], ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "#dbe9f6" if is_function else "#f6ecd9", "edgecolor": "0.5"})
    ax.set_xlim(-width / 2 - 0.5, width / 2 + 0.5)
    ax.set_ylim(-max(row.values()) - 0.7, -min(row.values()) + 0.7)
    ax.axis("off")
    ax.set_title(f"{len(functions)} ops, {len(leaves)} leaves", fontsize=9)
    fig.tight_layout()
    return fig


def _shape(shape):
    return "(" + ", ".join(map(str, shape)) + ")"


def _gradient_norms(output, functions, leaves):
    """Norm of the gradient of every node's output, from one backward with recording hooks."""
    norms, added = {}, []

    def recorder(key):
        def record(grad):
            norms[key] = float(math.sqrt(float((numpy.asarray(to_device(grad.data, "cpu"), dtype=float) ** 2).sum())))
        return record

    for fn in functions:
        hooks = fn.__dict__.setdefault("output_hooks", [])
        hooks.append(recorder(fn))
        added.append((hooks, hooks[-1]))
    for key, t in leaves.items():
        if t.requires_grad:
            hooks = t.__dict__.setdefault("_hooks", [])
            hooks.append(recorder(key))
            added.append((hooks, hooks[-1]))
    try:
        upstream = None if output.numel() == 1 else get_array_module(output.data).ones_like(output.data)
        output.backward(upstream, retain_graph=True)
    finally:
        for hooks, hook in added:
            hooks.remove(hook)
    return norms
