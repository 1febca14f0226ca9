"""Gradient checkpointing: trade compute for memory by recomputing a piece of the graph in backward.

(Not a *training* checkpoint, the saved model and optimizer state of ``minires/serialization.py``:
this is PyTorch's ``torch.utils.checkpoint``, a checkpoint in the graph.)

    y = checkpoint(function, x)        # the same y as function(x), and the same gradients

Normally every op in ``function`` saves what its backward needs (batch norm its input, ReLU its
output, a convolution its input), and all of that stays alive from forward until backward reaches
it. ``checkpoint`` runs ``function`` without recording a graph, so none of it is kept: the node it
makes holds only its inputs. In backward it runs ``function`` again, this time recording the graph,
back-propagates the output gradient through that fresh graph (which frees it again as it goes), and
hands the inputs' gradients on; the parameters inside ``function`` get theirs on the way.

    memory:   the intermediates of ``function`` live only during its own backward, not from
              forward to backward; what stays is its inputs and its output
    compute:  one more forward of ``function`` per backward (for a network of convolutions,
              about a third more work for the checkpointed part)

It pays where the intermediates are large next to the inputs and output and cheap to recompute:
batch norm and ReLU of a DenseNet layer's wide concatenated input, recomputed from that input
(Pleiss et al. 2017, "Memory-Efficient Implementation of DenseNets"; minires/models/densenet.py).

The recompute must not change anything the first run already did:

* **Module state.** A batch norm in training mode updates its running statistics (and
  ``num_batches_tracked``) every time it runs; the recompute would update them a second time.
  When ``function`` is a Module or a method of one (``layer.some_method``), every buffer of that
  Module is copied before the recompute and put back after it, so the state moves once per step.
  A plain function or lambda has no Module to look in: pass a method of the Module that owns the
  layers instead.
* **Random numbers.** With ``preserve_rng_state`` (the default, as in PyTorch) the CPU generator's
  state at the first run is restored for the recompute, so a dropout inside draws the same mask,
  and the generator then continues where it was. The GPU generators are not saved.

Two more things run twice: forward hooks of the modules inside ``function``, and, when a parameter
inside has a gradient hook, that hook sees this recompute's contribution on its own.
"""
from minires.engine import autograd
from minires.engine.function import Function
from minires.engine.grad_mode import enable_grad, is_grad_enabled, no_grad
from minires.engine.tensor import Tensor, require_tensor
from minires.random import get_rng_state, set_rng_state


class CheckpointFunction(Function):
    """One node for all of ``function``: saves nothing, keeps only its inputs (``self.inputs``)."""

    def __init__(self, function, preserve_rng_state):
        self.function = function
        self.rng_state = get_rng_state() if preserve_rng_state else None  # the state the first run starts from

    def forward(self, *arrays):
        with no_grad():  # no graph: none of the intermediates is kept
            output = self.function(*[Tensor(a) for a in arrays])
        require_tensor("checkpoint", "the output of function", output)
        return output.data

    def backward(self, grad_output):
        # The node stands for y = function(x): its gradient dL/dx is what backward through function's
        # own graph gives. So rebuild that graph from fresh leaves holding x's values, run backward
        # on it with dL/dy, and read dL/dx off the leaves (the parameters inside accumulate theirs).
        leaves = [Tensor(t.data, requires_grad=t.requires_grad) for t in self.inputs]
        with self.as_in_the_first_run(), enable_grad():
            output = self.function(*leaves)
        if output.requires_grad:
            autograd.backward(output, grad_output)
        return tuple(leaf.grad.data if leaf.grad is not None else None for leaf in leaves)

    def as_in_the_first_run(self):
        return _SameStateAsTheFirstRun(self.rng_state, buffers_of(self.function))


class _SameStateAsTheFirstRun:
    """Inside: the random generator as at the first run. Outside again: every buffer as before the
    recompute (the first run's updates stay, the recompute's are undone), the generator as it was."""

    def __init__(self, rng_state, buffers):
        self.rng_state, self.buffers = rng_state, buffers

    def __enter__(self):
        self.saved_buffers = [(b, b.data.copy()) for b in self.buffers]
        if self.rng_state is not None:
            self.rng_state_now = get_rng_state()
            set_rng_state(self.rng_state)

    def __exit__(self, *exception):
        for buffer, saved in self.saved_buffers:
            buffer.data[...] = saved  # in place: running_mean and the others stay the same arrays
        if self.rng_state is not None:
            set_rng_state(self.rng_state_now)


def buffers_of(function):
    """The buffers of the Module that ``function`` is, or whose method it is; [] for a plain function."""
    owner = function if hasattr(function, "buffers") else getattr(function, "__self__", None)
    return list(owner.buffers()) if callable(getattr(owner, "buffers", None)) else []


def checkpoint(function, *inputs, preserve_rng_state=True):
    """``function(*inputs)``, computed without keeping its intermediates for backward; backward
    recomputes them (see the module docstring). ``inputs`` are Tensors (bind other arguments with a
    lambda or a method); ``function`` returns one Tensor.

    Without graph recording (``no_grad``) there is nothing to save, and when no input requires a
    gradient the checkpoint node would have nothing to pass a gradient to, so that the parameters
    inside would get none: in both cases ``function`` simply runs as usual."""
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable (a Module or a method), got {type(function).__name__}")
    for position, t in enumerate(inputs):
        require_tensor("checkpoint", f"input {position}", t)
    if not is_grad_enabled() or not any(t.requires_grad for t in inputs):
        return function(*inputs)
    return CheckpointFunction(function, preserve_rng_state)(*inputs)


# ---- measuring what a graph keeps alive ----------------------------------------------------------

def graph_bytes(output):
    """How many bytes of arrays the graph behind ``output`` keeps alive until backward: what its
    Functions saved (``saved_tensors``) and the values of the non-leaf tensors they hold as inputs,
    each block of memory counted once (views count as the array they view). Memory owned by leaves
    (parameters, the input images) is not counted: it stays alive without the graph."""
    if output.grad_fn is None:
        return 0
    held, leaf_memory = {}, set()  # id of the owning array -> that array; ids of the leaves' memory
    for fn in autograd.topological_order(output.grad_fn):
        for t in fn.inputs or ():
            owner = _owner(t.data)
            if t.grad_fn is None:
                leaf_memory.add(id(owner))
            else:
                held[id(owner)] = owner
        for a in fn.saved_tensors or ():
            if hasattr(a, "nbytes"):  # arrays; the shapes and numbers saved beside them are not
                owner = _owner(a)
                held[id(owner)] = owner
    return sum(a.nbytes for key, a in held.items() if key not in leaf_memory)


def _owner(array):
    """The array that owns the memory ``array`` views (the array itself when it owns it)."""
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return array
