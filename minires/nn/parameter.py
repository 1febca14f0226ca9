"""``Parameter``: a Tensor that a Module learns (always a leaf that requires grad)."""
from minires.engine.tensor import Tensor


class Parameter(Tensor):
    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
