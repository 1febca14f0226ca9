"""``Module``: the base class of every layer and model.

Assigning a Parameter, a Module or (through ``register_buffer``) a buffer to an
attribute registers it, so ``parameters()``, ``state_dict()``, ``to()`` and
``train()/eval()`` reach every part of a model without extra bookkeeping:

    class Block(Module):
        def __init__(self):
            super().__init__()
            self.conv = Conv2d(16, 16, 3, padding=1)   # a sub-module
            self.scale = Parameter(numpy.ones(16))     # a parameter

State-dict keys are dotted paths: ``layer1.0.bn1.running_mean``.
"""
from collections import OrderedDict

import numpy

from minires.backends import normalize_device, to_device
from minires.engine.tensor import RemovableHandle, Tensor, require_tensor
from minires.nn.hooks import call_with_hooks
from minires.nn.parameter import Parameter

_SHOWN_KEYS = 5  # how many keys of each kind a load_state_dict error names


def _first_few(items, separator):
    """``items`` joined, the first few only, then how many more: a model mismatch names
    hundreds of keys, and the first ones tell what went wrong."""
    shown = separator.join(items[:_SHOWN_KEYS])
    more = len(items) - _SHOWN_KEYS
    return f"{shown} ... and {more} more ({len(items)} in all)" if more > 0 else shown


class Module:
    def __init__(self):
        # object.__setattr__ skips our own __setattr__, which needs these dicts to exist.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration --------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call super().__init__() in {type(self).__name__}.__init__ before assigning {name!r}")
        if isinstance(value, Parameter):
            target = self._parameters
        elif isinstance(value, Module):
            target = self._modules
        elif name in self.__dict__.get("_buffer_names", ()):
            target = self._buffers
        else:
            target = None
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not target:
                registry.pop(name, None)
        if target is not None:
            target[name] = value  # a name already there keeps its place, as in PyTorch
        object.__setattr__(self, name, value)

    def register_buffer(self, name, tensor):
        """State that is saved and moved with the module but not learned (e.g. running means)."""
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        setattr(self, name, tensor)

    # ---- calling ---------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        if args and not isinstance(args[0], Tensor):  # a NumPy batch straight from a loader, say
            require_tensor(type(self).__name__, "the input", args[0])
        if not self.__dict__.get("_hooks_of"):  # the usual case: no hooks
            return self.forward(*args, **kwargs)
        return call_with_hooks(self, args, kwargs)

    # ---- hooks (see minires/nn/hooks.py) -----------------------------------------
    def register_forward_pre_hook(self, hook):
        """``hook(module, args)`` before each forward; it may return replacement args."""
        return RemovableHandle(self._hook_list("forward_pre"), hook)

    def register_forward_hook(self, hook):
        """``hook(module, args, output)`` after each forward; it may return a replacement output."""
        return RemovableHandle(self._hook_list("forward"), hook)

    def register_full_backward_hook(self, hook):
        """``hook(module, grad_input, grad_output)`` once backward has computed the gradients of
        this module's tensor inputs (None for inputs that need none) from its output's gradient."""
        return RemovableHandle(self._hook_list("backward"), hook)

    def _hook_list(self, kind):
        return self.__dict__.setdefault("_hooks_of", {}).setdefault(kind, [])

    # ---- walking the tree ------------------------------------------------------
    def named_modules(self, prefix=""):
        """This module and every sub-module, depth first, with dotted names."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def apply(self, fn):
        """Call ``fn(module)`` on every sub-module, then on this one (e.g. to initialise weights); returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def named_parameters(self):
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{prefix}.{name}" if prefix else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # ---- modes, gradients, devices ------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to ``device`` in place; returns self."""
        device = normalize_device(device)
        for _, tensor in self.named_tensors():
            tensor.data = to_device(tensor.data, device)
            if tensor.grad is not None:
                tensor.grad = Tensor(to_device(tensor.grad.data, device))
        return self

    def double(self):
        """Cast every floating-point parameter and buffer to float64, in place; returns self."""
        return self._cast_floats(numpy.float64)

    def float(self):
        """Cast every floating-point parameter and buffer to float32, in place; returns self."""
        return self._cast_floats(numpy.float32)

    def _cast_floats(self, dtype):
        for _, tensor in self.named_tensors():
            if tensor.dtype.kind == "f":
                tensor.data = tensor.data.astype(dtype)
                if tensor.grad is not None:
                    tensor.grad = Tensor(tensor.grad.data.astype(dtype))
        return self

    # ---- saving and loading ---------------------------------------------------------
    def state_dict(self):
        """Every parameter and buffer as a NumPy array (on the CPU), under its dotted name."""
        return OrderedDict((name, to_device(t.data, "cpu").copy()) for name, t in self.named_tensors())

    def named_tensors(self):
        """Parameters and buffers, module by module (each module's parameters, then its buffers)."""
        for prefix, module in self.named_modules():
            for name, t in list(module._parameters.items()) + list(module._buffers.items()):
                if t is not None:
                    yield (f"{prefix}.{name}" if prefix else name), t

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers. With ``strict``, any missing,
        unexpected or wrongly shaped key raises one RuntimeError that names them, the first
        few of each kind and how many more (PyTorch's error, and its first line)."""
        own = dict(self.named_tensors())
        missing = [k for k in own if k not in state_dict and k not in self.optional_keys()]
        unexpected = [k for k in state_dict if k not in own]
        wrong_shape = [
            f"{k}: checkpoint {tuple(numpy.shape(state_dict[k]))} vs model {tuple(own[k].shape)}"
            for k in own
            if k in state_dict and tuple(numpy.shape(state_dict[k])) != tuple(own[k].shape)
        ]
        if wrong_shape or (strict and (missing or unexpected)):
            problems = []
            if missing:
                problems.append("missing keys: " + _first_few(missing, ", "))
            if unexpected:
                problems.append("unexpected keys: " + _first_few(unexpected, ", "))
            if wrong_shape:
                problems.append("wrongly shaped keys: " + _first_few(wrong_shape, "; "))
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  " + "\n  ".join(problems))
        for name, t in own.items():
            if name in state_dict:
                value = state_dict[name]
                value = value.data if isinstance(value, Tensor) else value
                t.data = to_device(numpy.asarray(to_device(value, "cpu"), dtype=t.dtype), t.device).copy()
        return missing, unexpected

    def optional_keys(self):
        """State-dict keys that ``load_state_dict`` does not require: each module's ``optional_state`` names
        (batch norm's ``num_batches_tracked``, which older state dicts lack)."""
        return {f"{prefix}.{name}" if prefix else name
                for prefix, module in self.named_modules() for name in getattr(module, "optional_state", ())}

    # ---- printing --------------------------------------------------------------
    def extra_repr(self):
        return ""

    def num_parameters(self):
        return sum(p.numel() for p in self.parameters())

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()})" if not self._modules else f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_lines = repr(child).split("\n")
            count = child.num_parameters()
            suffix = f"  # {count:,} parameters" if count else ""
            lines.append(f"  ({name}): {child_lines[0]}{suffix if len(child_lines) == 1 else ''}")
            lines.extend("  " + line for line in child_lines[1:])
        if self._modules:
            lines.append(f")  # {self.num_parameters():,} parameters in total")
        return "\n".join(lines)
