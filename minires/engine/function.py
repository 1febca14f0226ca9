"""``Function``: one differentiable operation, a node of the graph.

Calling a Function on Tensors runs its forward on the raw arrays and, when any
input requires a gradient, links the output to this node (``output.grad_fn``)
and keeps the inputs (``self.inputs``) so that
:func:`minires.engine.autograd.backward` can walk back. There are two ways to
write one:

* An op with no kernels of its own (arithmetic, reductions, shapes) writes
  ``forward(*arrays)`` and ``backward(grad_output)`` once, on whatever array
  module its inputs use (``self.xp(array)``: NumPy or CuPy).
* An op with CUDA kernels of its own (conv, batch norm, ReLU, sigmoid, pooling and
  adaptive pooling, the loss, the option-A shortcut, channel scaling and channel
  concatenation) writes two pairs, side by side in its file:
  ``forward_numpy``/``backward_numpy``, the NumPy path, and
  ``forward_kernels``/``backward_kernels``, the *kernel path* (our
  ``kernels/*.cu`` through CuPy on a GPU, or through the kernel emulator on
  NumPy arrays). Both paths save the same named state. ``__call__`` chooses the
  path once, from the first input, and remembers it in ``self.path``;
  ``backward`` takes the same path again and refuses a gradient from the other.

``backward`` returns one gradient per input (``None`` where an input needs none).
"""
import contextlib

from minires.backends import get_array_module
from minires.backends.cpu_threads import single_threaded_blas
from minires.backends.cuda import uses_kernels
from minires.backends.cuda.loader import device_scope
from minires.engine import grad_mode
from minires.engine.tensor import Tensor, require_tensor

NUMPY_PATH, KERNEL_PATH = "numpy", "kernel"


def path_for(array):
    """Which path an op on ``array`` takes: the kernel path for CuPy arrays or while emulating, else NumPy."""
    return KERNEL_PATH if uses_kernels(array) else NUMPY_PATH


class Function:
    path = None  # NUMPY_PATH or KERNEL_PATH, chosen by __call__
    inputs = ()
    saved_tensors = ()
    retained = None  # the output Tensor, when it asked to keep its gradient (retain_grad)
    output_hooks = ()  # hooks on the output's gradient (Tensor.register_hook): a list once one is added

    def __call__(self, *inputs):
        try:
            self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        except AttributeError:  # not a Tensor (a NumPy array, say): say which, and what to do
            for position, t in enumerate(inputs):
                require_tensor(type(self).__name__, f"argument {position}", t)
            raise
        devices = {t.device for t in inputs}
        if len(devices) > 1:
            names = ", ".join(sorted(devices))
            raise RuntimeError(
                f"{type(self).__name__}: inputs are on different devices ({names}); "
                "move them to one device with .to(device) first"
            )
        requires_grad = grad_mode.is_grad_enabled() and any(self.needs_input_grad)
        self.requires_grad = requires_grad  # forward may skip saving when False
        arrays = [t.data for t in inputs]
        self.path = path_for(arrays[0]) if arrays else NUMPY_PATH
        with self.threads():
            output_data = self.forward(*arrays)
        # NumPy turns 0-d results (a sum, a loss) into scalars; keep them arrays.
        output_data = get_array_module(output_data).asarray(output_data)
        output = Tensor(output_data, requires_grad=requires_grad)
        if requires_grad:
            self.inputs = inputs
            output.grad_fn = self
        return output

    def threads(self):
        """The context forward and backward run in: on the NumPy path, BLAS on one thread while our
        slab threads use the cores (minires/backends/cpu_threads.py); nothing on the kernel path."""
        return single_threaded_blas() if self.path == NUMPY_PATH else contextlib.nullcontext()

    def save_for_backward(self, *arrays):
        """Keep arrays for backward; they are released once backward has used them."""
        self.saved_tensors = arrays

    def release(self):
        """Drop the saved arrays and the links to the inputs (frees the graph)."""
        self.saved_tensors = None
        self.inputs = None

    def forward(self, *arrays):
        """The output array; ops with kernels of their own dispatch to the chosen path."""
        if self.path == KERNEL_PATH:
            with device_scope(arrays[0]):  # allocate and launch on the GPU that holds the input
                return self.forward_kernels(*arrays)
        return self.forward_numpy(*arrays)

    def backward(self, grad_output):
        """The gradient(s) of the inputs; ops with kernels of their own dispatch to forward's path."""
        path = path_for(grad_output)
        if path != self.path:
            raise RuntimeError(
                f"{type(self).__name__}: forward ran on the {self.path} path but backward got a gradient for the "
                f"{path} path; run forward and backward with the kernel emulator in the same state "
                "(both inside or both outside minires.backends.emulator.emulate_kernels())"
            )
        if path == KERNEL_PATH:
            with device_scope(grad_output):
                return self.backward_kernels(grad_output)
        return self.backward_numpy(grad_output)

    def forward_numpy(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__} defines neither forward nor forward_numpy")

    def backward_numpy(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} defines neither backward nor backward_numpy")

    def forward_kernels(self, *arrays):
        raise NotImplementedError(f"{type(self).__name__} has no kernel path")

    def backward_kernels(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} has no kernel path")

    @staticmethod
    def xp(array):
        """The array module (numpy or cupy) for ``array``."""
        return get_array_module(array)

    def __repr__(self):
        return f"<{type(self).__name__}>"
