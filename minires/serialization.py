"""Saving and loading: nested state (dicts, lists, numbers, strings, arrays, Tensors) in
one ``.npz`` file that loads with ``allow_pickle=False``.

``minires.save(model.state_dict(), "model.npz")`` / ``minires.load("model.npz")`` are
PyTorch's ``torch.save`` / ``torch.load`` for state dicts; the training command's
checkpoints (``save_checkpoint`` / ``load_checkpoint``) are the same format. Unlike
``torch.load``, loading can never run code: there is no pickle, only arrays and JSON.

Arrays are stored as npz entries; everything else goes into one JSON text entry,
where each array is replaced by a reference ``{"__array__": "<entry name>"}``.
Files are written to a temporary name in the same folder and renamed into place,
so a crash while saving never leaves a half-written checkpoint behind.
"""
import json
import os
import tempfile
import zipfile

import numpy

from minires.backends import to_device
from minires.engine.tensor import Tensor

_JSON_KEY = "__tree__.json"


def _split(tree, arrays, path):
    """Replace every array in ``tree`` by a reference, collecting the arrays."""
    if isinstance(tree, dict):
        if any(not isinstance(k, str) for k in tree):  # JSON keys are strings: remember the ints
            if not all(isinstance(k, int) for k in tree):
                raise TypeError(f"checkpoint entry {path} mixes key types; use all-str or all-int keys")
            return {"__int_keys__": [[k, _split(v, arrays, f"{path}/{k}")] for k, v in tree.items()]}
        return {k: _split(v, arrays, f"{path}/{k}") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, arrays, f"{path}/{i}") for i, v in enumerate(tree)]
    if isinstance(tree, Tensor):
        tree = tree.data  # saved as its array; it loads back as a NumPy array
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):  # a NumPy or CuPy array
        array = numpy.asarray(to_device(tree, "cpu"))
        if array.dtype == object:
            raise TypeError(f"checkpoint entry {path} is an object array, which cannot be saved without pickle")
        name = path.lstrip("/") or "root"
        arrays[name] = array
        return {"__array__": name}
    if isinstance(tree, (numpy.integer, numpy.floating, numpy.bool_)):
        return tree.item()
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"checkpoint entry {path} has type {type(tree).__name__}, which cannot be saved")


def _join(tree, arrays):
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        if set(tree) == {"__int_keys__"}:
            return {k: _join(v, arrays) for k, v in tree["__int_keys__"]}
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def save_checkpoint(path, state):
    """Write ``state`` (a nested dict) to ``path`` atomically."""
    arrays = {}
    tree = _split(state, arrays, "")
    arrays[_JSON_KEY] = numpy.array(json.dumps(tree))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".npz.tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle involved)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ValueError(f"checkpoint {path} is corrupt or not a minires checkpoint: {err}") from None
    if _JSON_KEY not in arrays:
        raise ValueError(f"checkpoint {path} is not a minires checkpoint (no {_JSON_KEY} entry)")
    tree = json.loads(str(arrays.pop(_JSON_KEY)))
    return _join(tree, arrays)


def save(obj, path):
    """Save a state dict (or any nested dict of arrays, Tensors, numbers and strings) to ``path``,
    atomically; PyTorch's ``torch.save`` for state dicts, without pickle."""
    if not isinstance(obj, dict):
        raise TypeError(f"minires.save saves a dict (a state_dict(), say), got {type(obj).__name__}; "
                        "whole models are not saved: save model.state_dict() and load it into a new model")
    save_checkpoint(path, obj)


def load(path):
    """Load what :func:`save` wrote: the same nested dict, arrays as NumPy arrays."""
    return load_checkpoint(path)
