"""Module hooks: look at (or change) what flows through a module, without editing it.

    handle = model.blocks[0].register_forward_hook(lambda m, args, out: print(out.shape))
    handle = conv.register_full_backward_hook(lambda m, grad_in, grad_out: ...)
    handle.remove()

``Module.__call__`` runs a module with hooks through :func:`call_with_hooks`:

1. forward pre-hooks ``hook(module, args)`` (a returned tuple replaces the args);
2. for backward hooks, each tensor input that requires grad passes through an
   identity node first (``HookPoint``), so that the gradient arriving there is
   this module's contribution alone, not the sum over every consumer of the
   input (a residual block's input also feeds its shortcut);
3. ``forward``, then forward hooks ``hook(module, args, output)`` (a returned
   value replaces the output);
4. tensor hooks on the output and on the identity nodes collect grad_output and
   grad_input during backward; once the last input gradient has arrived (or, for
   a module none of whose inputs needs a gradient, once grad_output has), the
   backward hooks are called as ``hook(module, grad_input, grad_output)``. Each is
   a tuple of Tensors (None where an input needs no gradient). For a module with
   one tensor input, a returned ``grad_input`` tuple replaces that gradient.
"""
from minires.engine.function import Function
from minires.engine.tensor import Tensor


class HookPoint(Function):
    """The identity, forward and backward: a node where a module's input gradient can be caught."""

    def forward(self, x):
        return x

    def backward(self, grad):
        # y = x: dL/dx = dL/dy.
        return grad


def call_with_hooks(module, args, kwargs):
    hooks = module.__dict__["_hooks_of"]
    for hook in list(hooks.get("forward_pre", ())):
        result = hook(module, args)
        if result is not None:
            args = result if isinstance(result, tuple) else (result,)
    backward_hooks = hooks.get("backward")
    if backward_hooks:
        args, caught = _catch_input_gradients(args)
    output = module.forward(*args, **kwargs)
    for hook in list(hooks.get("forward", ())):
        result = hook(module, args, output)
        if result is not None:
            output = result
    if backward_hooks and isinstance(output, Tensor) and output.requires_grad:
        _call_backward_hooks_when_ready(module, backward_hooks, args, caught, output)
    return output


def _catch_input_gradients(args):
    """Route each tensor input that requires grad through a HookPoint; returns (new args, their positions)."""
    args, caught = list(args), []
    for position, arg in enumerate(args):
        if isinstance(arg, Tensor) and arg.requires_grad:
            args[position] = HookPoint()(arg)
            caught.append(position)
    return tuple(args), caught


def _call_backward_hooks_when_ready(module, backward_hooks, args, caught, output):
    tensor_positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    state = {"grad_output": None, "grad_input": {}}

    def fire():
        grad_input = tuple(state["grad_input"].get(i) for i in tensor_positions)
        replacement = None
        for hook in list(backward_hooks):
            result = hook(module, grad_input, state["grad_output"])
            if result is not None:
                replacement = grad_input = tuple(result)
        return replacement

    def on_output(grad):
        state["grad_output"] = (grad,)
        if not caught:  # no input needs a gradient: nothing more will arrive
            fire()

    def on_input(position):
        def hook(grad):
            state["grad_input"][position] = grad
            if len(state["grad_input"]) == len(caught):
                replacement = fire()
                if replacement is not None and len(caught) == 1:
                    return replacement[tensor_positions.index(position)]
            return None
        return hook

    output.register_hook(on_output)
    for position in caught:
        args[position].register_hook(on_input(position))
