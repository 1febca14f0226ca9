"""Reverse-mode differentiation: walk the graph from the output back to the leaves.

1. Collect every Function reachable from the output in topological order, with an
   explicit stack instead of recursion (a 1,000-layer network must not hit
   Python's recursion limit).
2. Visit them from the output backwards. Each node receives the sum of the
   gradients of everything its output fed (a tensor used twice, as in every
   residual block ``F(x) + x``, gets both contributions), calls its backward,
   and passes the results on to its inputs.
3. Leaves (tensors made by the user, such as parameters) accumulate into
   ``.grad`` (a leaf with hooks collects its contributions and adds their sum at
   the end). Unless ``retain_graph`` is set, each node frees its saved arrays
   right after use, so memory falls as backward proceeds.

Hooks (``Tensor.register_hook``) see a tensor's whole gradient once per pass: a
non-leaf's when its Function is reached (every consumer has contributed by then),
a leaf's at the end, before it is added to ``.grad``.
"""
from minires.backends import cpu_threads, get_array_module
from minires.engine.tensor import run_hooks


def topological_order(root):
    """Functions reachable from ``root`` so that each comes after all its inputs' functions."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        fn, inputs_done = stack.pop()
        if inputs_done:
            order.append(fn)
            continue
        if fn in visited:
            continue
        visited.add(fn)
        stack.append((fn, True))
        for t in fn.inputs or ():  # None once freed; backward() reports that
            if t.grad_fn is not None and t.grad_fn not in visited:
                stack.append((t.grad_fn, False))
    return order


def backward(output, grad=None, retain_graph=False):
    """Compute d(output)/d(leaf) for every leaf that requires grad, weighted by ``grad``."""
    xp = get_array_module(output.data)
    if not output.requires_grad:
        raise RuntimeError("backward() called on a tensor that does not require grad")
    if grad is None:
        if output.numel() != 1:
            raise RuntimeError(
                f"backward() without a gradient needs a single-element output, got shape {output.shape}; "
                "pass grad= with the output's shape"
            )
        grad = xp.ones_like(output.data)
    else:
        grad = grad.data if hasattr(grad, "grad_fn") else grad
        grad = xp.asarray(grad, dtype=output.dtype)
        if grad.shape != output.shape:
            raise ValueError(f"grad has shape {grad.shape} but the output has shape {output.shape}")

    if output.grad_fn is None:  # a leaf: d(output)/d(output) = grad
        output._accumulate(run_hooks(output.__dict__.get("_hooks", ()), grad))
        return

    pending = {output.grad_fn: grad}  # Function -> gradient w.r.t. its output
    leaf_grads = {}  # id(leaf) -> (leaf, its gradient so far in this pass)
    for fn in reversed(topological_order(output.grad_fn)):
        if fn.inputs is None:
            raise RuntimeError(
                "trying to backward through the graph a second time; the saved arrays were freed. "
                "Pass retain_graph=True to the first backward() if you need to call it twice."
            )
        grad_out = pending.pop(fn)
        if fn.output_hooks:
            grad_out = run_hooks(fn.output_hooks, grad_out)
        if fn.retained is not None:
            fn.retained._accumulate(grad_out)
        with fn.threads():
            grads = fn.backward(grad_out)
        if not isinstance(grads, tuple):
            grads = (grads,)
        for t, g in zip(fn.inputs, grads):
            if g is None or not t.requires_grad:
                continue
            if t.grad_fn is None and not t.__dict__.get("_hooks"):
                t._accumulate(g)
            elif t.grad_fn is None:  # a leaf with hooks: they see the pass's sum, at the end
                previous = leaf_grads.get(id(t))
                leaf_grads[id(t)] = (t, g if previous is None else previous[1] + g)  # new array: g may be shared
            elif t.grad_fn in pending:
                pending[t.grad_fn] = cpu_threads.add(pending[t.grad_fn], g)  # new array: g may be shared
            else:
                pending[t.grad_fn] = g
        if not retain_graph:
            fn.release()
    for leaf, g in leaf_grads.values():
        leaf._accumulate(run_hooks(leaf.__dict__.get("_hooks", ()), g))
