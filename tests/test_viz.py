"""minires.viz.draw_graph: the autograd graph as a matplotlib figure (no Graphviz)."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import minires  # noqa: E402
import minires.functional as F  # noqa: E402
from minires.models import cifar_resnet  # noqa: E402
from minires.viz import draw_graph, graph_nodes  # noqa: E402


def boxes(fig):
    return [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]


def test_a_residual_block_shows_every_op_and_leaf_with_the_shortcut_meeting_the_branch():
    x = minires.tensor(np.random.default_rng(0).standard_normal((1, 2, 4, 4)), requires_grad=True)
    w = minires.tensor(np.random.default_rng(1).standard_normal((2, 2, 3, 3)) * 0.1, requires_grad=True)
    y = F.relu(F.conv2d(x, w, padding=1)) + x  # branch (conv, relu) and the identity shortcut
    functions, leaves, edges, row, shapes = graph_nodes(y)
    names = sorted(type(fn).__name__ for fn in functions)
    assert len(functions) == 3 and len(leaves) == 2 and any("Add" in n for n in names)
    add = y.grad_fn
    assert sum(1 for _, target in edges if target is add) == 2  # the branch and the shortcut meet
    assert row[add] == max(row.values())  # the add comes last
    fig = draw_graph(y, params={"x": x, "conv.weight": w})
    texts = [t.get_text() for t in boxes(fig)]
    assert len(texts) == 5 and any(t.startswith("conv.weight\n(2, 2, 3, 3)") for t in texts)
    assert any(t.startswith("x\n(1, 2, 4, 4)") for t in texts)


def test_gradient_norms_are_written_under_each_box_and_are_right():
    w = minires.tensor(np.array([3.0, 4.0]), requires_grad=True)
    loss = (w * 2.0).sum()
    fig = draw_graph(loss, params={"w": w}, gradients=True)
    texts = {t.get_text().split("\n")[0]: t.get_text() for t in boxes(fig)}
    assert texts["w"].endswith("|grad| 2.83")  # |d loss / d w| = |(2, 2)|
    np.testing.assert_allclose(w.grad, [2.0, 2.0])  # the one backward it ran


def test_a_resnet20_graph_renders_with_a_box_per_node():
    minires.manual_seed(0)
    model = cifar_resnet(20, width=4)
    loss = F.cross_entropy(model(minires.tensor(np.zeros((2, 3, 8, 8), np.float32))), np.array([0, 1]))
    functions, leaves, _, _, _ = graph_nodes(loss)
    fig = draw_graph(loss, params=dict(model.named_parameters()))
    assert len(leaves) == 1 + len(list(model.parameters()))  # the images, and every parameter
    assert len(boxes(fig)) == len(functions) + len(leaves) > 120
    fig.canvas.draw()  # the whole figure renders
    matplotlib.pyplot.close(fig)


def test_drawing_a_leaf_or_a_freed_graph_says_why_not():
    x = minires.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="leaf"):
        draw_graph(x)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="freed"):
        draw_graph(y)
