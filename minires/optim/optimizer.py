"""``Optimizer``: the base class of SGD, Adam and AdamW.

An optimizer holds *parameter groups*, as in PyTorch: a list of dicts, each with
its ``"params"`` and its own hyper-parameters (``"lr"``, ``"weight_decay"``, ...)
so that, say, biases can get no weight decay:

    SGD([{"params": weights, "weight_decay": 5e-4},
         {"params": biases, "weight_decay": 0.0}], lr=0.1, momentum=0.9)

Per-parameter state (momentum buffers, Adam's moments) lives in
``optimizer.state[p]``. Updates work on the raw arrays ``p.data`` and ``p.grad``,
in place, so they build no graph; parameters whose ``grad`` is None are skipped.
"""
import numbers

import numpy

from minires.backends import to_device
from minires.engine.tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # param -> dict (Tensors hash by identity)
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group; hyper-parameters it leaves out are taken from ``defaults``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in group["params"]}) != len(group["params"]) or seen & {id(p) for p in group["params"]}:
            raise ValueError("some parameters appear more than once in the optimizer's groups")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        """Subclasses raise ValueError here for bad hyper-parameters."""

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """One update of every parameter that has a gradient. ``closure``, if given,
        re-evaluates the model and returns the loss (which ``step`` returns)."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, self.state.setdefault(p, {}), group)
        return loss

    def _update(self, p, state, group):
        raise NotImplementedError(f"{type(self).__name__} must define _update()")

    # ---- saving and loading ----------------------------------------------------
    def _all_params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """Plain numbers, strings, lists and NumPy arrays only (savable without pickle).

        ``{"param_groups": [{"lr": 0.1, ..., "params": [0, 1, 2]}, ...],
           "state": {0: {"momentum_buffer": ndarray}, ...}}``: parameters are
        referred to by their position across all groups.
        """
        index = {id(p): i for i, p in enumerate(self._all_params())}
        groups = []
        for group in self.param_groups:
            saved = {k: list(v) if isinstance(v, tuple) else v for k, v in group.items() if k != "params"}
            saved["params"] = [index[id(p)] for p in group["params"]]
            groups.append(saved)
        state = {}
        for p, s in self.state.items():
            state[index[id(p)]] = {
                k: to_device(v, "cpu").copy() if hasattr(v, "shape") else v for k, v in s.items()
            }
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by ``state_dict`` (arrays are copied
        to each parameter's device and dtype). Raises ValueError on any mismatch."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i}: loaded state dict has {len(saved['params'])} parameter(s), "
                    f"this optimizer has {len(group['params'])}"
                )
        params = self._all_params()
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)  # keys may come back as strings from a file
            if not 0 <= i < len(params):
                raise ValueError(f"loaded state refers to parameter {i}, this optimizer has {len(params)}")
            p = params[i]
            new_state[p] = {}
            for name, value in s.items():
                value = to_device(value, "cpu") if hasattr(value, "shape") else value
                if isinstance(value, numbers.Number) or value.dtype.kind != "f":  # a count ("step"),
                    new_state[p][name] = value.item() if hasattr(value, "item") else value  # maybe 0-d
                    continue
                if tuple(numpy.shape(value)) != tuple(p.shape):
                    raise ValueError(
                        f"state {name!r} of parameter {i} has shape {tuple(numpy.shape(value))}, "
                        f"the parameter has shape {tuple(p.shape)}"
                    )
                new_state[p][name] = to_device(numpy.asarray(value, dtype=p.dtype), p.device).copy()
        for saved, group in zip(saved_groups, self.param_groups):
            for name, value in saved.items():
                if name == "params":
                    continue
                if isinstance(group.get(name), tuple):
                    value = tuple(v.item() if hasattr(v, "item") else v for v in value)
                elif hasattr(value, "item") and numpy.ndim(value) == 0:
                    value = value.item()
                group[name] = value
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _check_non_negative(group, *names):
    for name in names:
        value = group[name]
        if not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"Invalid {name}: {value!r} (must be a non-negative number)")
