"""Hooks: Tensor.register_hook and the Module forward / full backward hooks, against torch where installed."""
import numpy as np
import pytest

import minires
import minires.functional as F
import minires.nn as nn


def test_a_tensor_hook_sees_the_whole_gradient_once_and_may_replace_it():
    x = minires.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    h = x * 3.0
    seen_h, seen_x = [], []
    h.register_hook(lambda g: seen_h.append(g.numpy().copy()))
    x.register_hook(lambda g: seen_x.append(g.numpy().copy()))
    (h * h + h).sum().backward()  # h feeds two consumers; x's gradient comes through h alone
    np.testing.assert_allclose(seen_h, [2 * h.data + 1])  # once, with both contributions summed
    np.testing.assert_allclose(seen_x, [3 * (2 * h.data + 1)])
    np.testing.assert_allclose(x.grad, seen_x[0])

    y = minires.tensor(np.array([1.0, 2.0]), requires_grad=True)
    z = y * y
    handle = z.register_hook(lambda g: g * 10)  # a returned Tensor replaces the gradient
    z.sum().backward(retain_graph=True)
    np.testing.assert_allclose(y.grad, 10 * 2 * y.data)
    handle.remove()
    y.grad = None
    z.sum().backward()
    np.testing.assert_allclose(y.grad, 2 * y.data)
    with pytest.raises(RuntimeError, match="does not require grad"):
        minires.tensor([1.0]).register_hook(print)


def test_a_leaf_hook_runs_once_per_backward_pass_with_the_summed_gradient():
    w = minires.tensor(np.array([2.0]), requires_grad=True)
    calls = []
    w.register_hook(lambda g: calls.append(float(g)))
    (w * 1.0 + w * 2.0 + w * 4.0).sum().backward()
    assert calls == [7.0] and float(minires.tensor(w.grad)) == 7.0


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.branch = nn.Linear(3, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = F.relu(self.first(x))
        return self.branch(h) + h  # h also feeds the shortcut


def test_forward_hooks_see_and_may_replace_inputs_and_outputs():
    model = Residual()
    x = minires.tensor(np.ones((2, 3), np.float32))
    shapes = []
    pre = model.branch.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape))
    post = model.branch.register_forward_hook(lambda m, args, out: out * 0.0)  # zero the branch
    y = model(x)
    h = F.relu(model.first(x))
    np.testing.assert_allclose(y.numpy(), h.numpy())
    assert shapes == [(2, 4)]
    pre.remove()
    post.remove()
    model(x)
    assert shapes == [(2, 4)] and not model.branch.__dict__["_hooks_of"]["forward"]


def test_full_backward_hook_gives_the_modules_own_input_gradient():
    model = Residual()
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 3)))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    records = {}
    model.branch.register_full_backward_hook(
        lambda m, grad_in, grad_out: records.update(branch=(grad_in[0].numpy(), grad_out[0].numpy())))
    model.first.register_full_backward_hook(lambda m, grad_in, grad_out: records.update(first=grad_in))
    upstream = np.random.default_rng(1).standard_normal((2, 4))
    model(x).backward(upstream)
    grad_in, grad_out = records["branch"]
    np.testing.assert_allclose(grad_out, upstream)
    np.testing.assert_allclose(grad_in, upstream @ model.branch.weight.data)  # the branch's share only
    assert records["first"] == (None,)  # x needs no gradient


def test_backward_hook_may_replace_the_input_gradient():
    layer = nn.Linear(3, 2)
    x = minires.tensor(np.ones((1, 3), np.float32), requires_grad=True)
    layer.register_full_backward_hook(lambda m, grad_in, grad_out: (grad_in[0] * 0.0,))
    layer(x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((1, 3), np.float32))


def test_hooks_match_torch():
    torch = pytest.importorskip("torch")
    model = Residual()
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    t_first, t_branch = torch.nn.Linear(3, 4).double(), torch.nn.Linear(4, 4).double()
    with torch.no_grad():
        for ours, theirs in ((model.first, t_first), (model.branch, t_branch)):
            theirs.weight.copy_(torch.tensor(ours.weight.data))
            theirs.bias.copy_(torch.tensor(ours.bias.data))
    data = np.random.default_rng(2).standard_normal((2, 3))
    ours_seen, theirs_seen = {}, {}
    model.branch.register_full_backward_hook(lambda m, gi, go: ours_seen.update(gi=gi[0].numpy(), go=go[0].numpy()))
    t_branch.register_full_backward_hook(lambda m, gi, go: theirs_seen.update(gi=gi[0].numpy(), go=go[0].numpy()))
    x = minires.tensor(data, requires_grad=True)
    h = F.relu(model.first(x))
    h.register_hook(lambda g: ours_seen.update(h=g.numpy()))
    (model.branch(h) + h).sum().backward()
    tx = torch.tensor(data, requires_grad=True)
    th = torch.relu(t_first(tx))
    th.register_hook(lambda g: theirs_seen.update(h=g.numpy()))
    (t_branch(th) + th).sum().backward()
    for key in ("gi", "go", "h"):
        np.testing.assert_allclose(ours_seen[key], theirs_seen[key], rtol=1e-12)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12)
