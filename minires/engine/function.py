"""``Function``: one differentiable operation, a node of the graph.

A subclass writes two methods on raw arrays (NumPy or CuPy):

* ``forward(*arrays) -> array`` computes the output and saves what backward needs;
* ``backward(grad_output) -> grad or tuple of grads``, one per input (``None`` where
  an input needs no gradient).

Calling a Function on Tensors runs ``forward`` and, when any input requires a
gradient, links the output to this node (``output.grad_fn``) and keeps the inputs
(``self.inputs``) so that :func:`minires.engine.autograd.backward` can walk back.
"""
from minires.backends import get_array_module
from minires.engine import grad_mode
from minires.engine.tensor import Tensor


class Function:
    inputs = ()
    saved_tensors = ()
    retained = None  # the output Tensor, when it asked to keep its gradient (retain_grad)

    def __call__(self, *inputs):
        devices = {t.device for t in inputs}
        if len(devices) > 1:
            names = ", ".join(sorted(devices))
            raise RuntimeError(
                f"{type(self).__name__}: inputs are on different devices ({names}); "
                "move them to one device with .to(device) first"
            )
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        requires_grad = grad_mode.is_grad_enabled() and any(self.needs_input_grad)
        self.requires_grad = requires_grad  # forward may skip saving when False
        output_data = self.forward(*[t.data for t in inputs])
        # NumPy turns 0-d results (a sum, a loss) into scalars; keep them arrays.
        output_data = get_array_module(output_data).asarray(output_data)
        output = Tensor(output_data, requires_grad=requires_grad)
        if requires_grad:
            self.inputs = inputs
            output.grad_fn = self
        return output

    def save_for_backward(self, *arrays):
        """Keep arrays for backward; they are released once backward has used them."""
        self.saved_tensors = arrays

    def release(self):
        """Drop the saved arrays and the links to the inputs (frees the graph)."""
        self.saved_tensors = None
        self.inputs = None

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    @staticmethod
    def xp(array):
        """The array module (numpy or cupy) for ``array``."""
        return get_array_module(array)

    def __repr__(self):
        return f"<{type(self).__name__}>"
