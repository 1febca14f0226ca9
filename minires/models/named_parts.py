"""Views: a model's ``stem``, ``blocks`` and ``head`` when its layers are registered under other names.

Every minires model has the three parts of ``stages.py``, and ``model(x)`` is
``model.head(model.blocks(model.stem(x)))``. Most models simply *are* built from them:
``self.stem = Sequential(...)``, so the state-dict keys read ``stem.0.weight``.

A model that must keep someone else's names cannot do that. torchvision's ImageNet ResNet
registers ``conv1, bn1, relu, maxpool, layer1 .. layer4, avgpool, fc``, and published
weights only load into a model whose state-dict keys are exactly those. Registering
``stem``, ``blocks`` and ``head`` as well would add a second name for every layer
(``stem.0.weight`` next to ``conv1.weight``). So the parts are *views*:

    class Net(Module):
        def __init__(self):
            ...                                                  # conv1, bn1, ..., layer1 .. layer4, fc
            self._views = {"blocks": StagedBlocks(self, ["layer1", "layer2", "layer3", "layer4"])}

        @property
        def blocks(self):
            return self._views["blocks"]

A view keeps a reference to its owner but registers nothing, in the owner or in itself, so
the owner's ``state_dict()``, ``parameters()`` and ``named_modules()`` never see it. It looks
the owner's layers up by name at every use: replace ``model.layer1[0]`` and ``model.blocks[0]``
is the new block; write ``model.blocks[2] = nn.Identity()`` and it lands in ``model.layer2[0]``
(for two blocks per stage). Walking a view (``view.parameters()``, ``view.state_dict()``,
``view.train()``) walks the layers it shows, under the owner's names: ``model.stem.state_dict()``
holds ``conv1.weight``.
"""
from minires.nn.module import Module


class View(Module):
    """What the views share: an owner, parts looked up in it now, and nothing registered.

    A subclass defines ``named_parts()``: (name, module) pairs, in the order ``forward`` applies them."""

    def __init__(self, owner):
        super().__init__()
        object.__setattr__(self, "owner", owner)  # a plain attribute: registering it would make the owner our child

    def named_parts(self):
        raise NotImplementedError(f"{type(self).__name__} must define named_parts()")

    def parts(self):
        return [part for _, part in self.named_parts()]

    def forward(self, x):
        for part in self.parts():
            x = part(x)
        return x

    # Walking a view walks the parts it shows (Module's versions walk ``_modules``, which a view leaves empty).
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, part in self.named_parts():
            yield from part.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return iter(self.parts())

    def __repr__(self):
        names = ", ".join(name for name, _ in self.named_parts())
        owner = type(self.owner).__name__
        return f"{type(self).__name__}(a view of {owner}: {names})  # {self.num_parameters():,} parameters"


class NamedLayers(View):
    """Some of the owner's layers, applied in order: ``NamedLayers(model, ["conv1", "bn1", "relu"])``.

    An entry may also be a ``(name, module)`` pair for a parameter-free step the owner has no
    layer for (torchvision's head flattens with a function call): the view holds that module itself."""

    def __init__(self, owner, steps):
        super().__init__(owner)
        object.__setattr__(self, "steps", tuple(steps))  # not registered, as the owner is not
        for step in self.steps:
            if not isinstance(step, str) and not (isinstance(step, tuple) and len(step) == 2
                                                  and isinstance(step[1], Module)):
                raise TypeError(f"NamedLayers: each step is the name of one of the owner's layers or a "
                                f"(name, Module) pair, got {step!r}")

    def named_parts(self):
        return [(step, getattr(self.owner, step)) if isinstance(step, str) else step for step in self.steps]


class StagedBlocks(View):
    """All blocks of the owner's stages (each a ``Sequential`` of blocks) as one list, in order:
    ``len``, iteration, ``blocks[i]`` and ``blocks[i] = module`` (which writes into the stage
    that holds block i, under the same name, so the state-dict keys of the other blocks stay)."""

    def __init__(self, owner, stage_names):
        super().__init__(owner)
        object.__setattr__(self, "stage_names", tuple(stage_names))

    def places(self):
        """(stage name, index in the stage) of every block, in order, as the stages are now."""
        return [(stage, j) for stage in self.stage_names for j in range(len(getattr(self.owner, stage)))]

    def named_parts(self):
        return [(f"{stage}.{j}", getattr(self.owner, stage)[j]) for stage, j in self.places()]

    def __len__(self):
        return len(self.places())

    def __iter__(self):
        return iter(self.parts())

    def __getitem__(self, index):
        return self.parts()[index]  # an int (negatives count from the end) or a slice, as for a list

    def __setitem__(self, index, module):
        """``blocks[i] = module`` puts ``module`` in block i's place in its stage."""
        if not isinstance(module, Module):
            raise TypeError(f"the blocks are Modules (e.g. nn.Identity()), got {type(module).__name__}")
        places = self.places()
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"blocks[i] = module takes an int index, got {index!r}")
        if not -len(places) <= index < len(places):
            raise IndexError(f"index {index} is out of range for the {len(places)} blocks "
                             f"(in {', '.join(self.stage_names)})")
        stage, j = places[index]
        getattr(self.owner, stage)[j] = module
