"""Containers that hold sub-modules without calling them: ``ModuleList`` and ``ModuleDict``.

A plain Python list of layers hides them from the model: ``parameters()``,
``state_dict()``, ``to()`` and ``train()`` only see what is registered as a
sub-module. These containers register what they hold (under the names "0", "1",
... or their dictionary keys), and leave the calling to your ``forward``:

    self.blocks = nn.ModuleList([Block() for _ in range(3)])
    ...
    for block in self.blocks:
        x = block(x)

(``nn.Sequential`` is the container that also calls its modules in order.)
"""
from minires.nn.module import Module


def _require_module(container, value):
    if not isinstance(value, Module):
        raise TypeError(f"{container} holds Modules (e.g. nn.Identity()), got {type(value).__name__}")
    return value


class ModuleList(Module):
    """A list of modules, registered under "0", "1", ..."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        setattr(self, str(len(self)), _require_module("ModuleList", module))
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(list(self._modules.values())[index])
        return list(self._modules.values())[index]

    def __setitem__(self, index, module):
        name = list(self._modules)[index]  # keeps the name, so state-dict keys stay
        setattr(self, name, _require_module("ModuleList", module))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, *args):
        raise TypeError("a ModuleList is not called: loop over it in your forward (or use nn.Sequential)")


class ModuleDict(Module):
    """A dictionary of modules, registered under their keys (strings)."""

    def __init__(self, modules=None):
        super().__init__()
        for name, module in dict(modules or {}).items():
            self[name] = module

    def __setitem__(self, name, module):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"ModuleDict keys are non-empty strings without dots (they become state-dict "
                           f"key parts), got {name!r}")
        setattr(self, name, _require_module("ModuleDict", module))

    def __getitem__(self, name):
        return self._modules[name]

    def __contains__(self, name):
        return name in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *args):
        raise TypeError("a ModuleDict is not called: pick its modules by key in your forward")
