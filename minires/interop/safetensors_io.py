"""Saving and loading state dicts as ``.safetensors`` files, the format PyTorch users download weights in.

A safetensors file is a flat dict name -> array and nothing else:

    8 bytes        N, the header's length (a little-endian uint64)
    N bytes        a JSON header: {"conv1.weight": {"dtype": "F32", "shape": [64, 3, 7, 7],
                   "data_offsets": [0, 37632]}, ..., "__metadata__": {"some": "text"}}
    the rest       every array's raw bytes, little-endian, C order, one after another

Reading it means parsing JSON and copying bytes, so, like ``minires.load`` and unlike
``torch.load``, it can never run code: there is no pickle. The file holds no nesting,
no numbers outside arrays and no Python objects, which makes it the format to trade
weights with PyTorch: ``safetensors.torch.save_file(model.state_dict(), path)`` there,
``minires.load_safetensors(path)`` here (and ``minires.interop.from_torchvision`` for the names).

The ``safetensors`` package does the reading and writing (its NumPy API, no torch needed).
It is an optional extra, ``pip install "minires[interop]"``, imported only when one of
these functions runs, so ``import minires`` works without it.

Saving is atomic as ``minires.save`` is (``minires/serialization.py``): the file is written
to a temporary in the same folder, then renamed into place, so a crash never leaves half a
file, and a save that fails leaves any file already at ``path`` as it was. The temporaries
are ``minires.save``'s, so the clean-up of either removes those a killed save left.
"""
import os
from collections import OrderedDict

import numpy

from minires.backends import to_device
from minires.engine.tensor import Tensor
from minires.serialization import _locked_temporary, _remove_abandoned_temporaries, _umask

# The NumPy dtypes a safetensors file can hold (its F16, F32, F64, BOOL, I8 ... U64, C64).
SUPPORTED_DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                    "float16", "float32", "float64", "complex64")
_HEADER_KEY = "__metadata__"  # the header's entry for the text metadata: no array may have this name
_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def _import_safetensors():
    """The ``safetensors`` package with its NumPy API, or an ImportError that says how to install it."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as err:
        raise ImportError('reading and writing .safetensors files needs the safetensors package: '
                          'pip install "minires[interop]" (or pip install safetensors)') from err
    return safetensors


# ---- saving --------------------------------------------------------------------------------

def save_safetensors(state_dict, path, metadata=None):
    """Write ``state_dict`` (a flat dict name -> array) to ``path`` as a safetensors file, atomically.

    Values may be NumPy arrays, CuPy arrays (copied to the host) or minires Tensors (their
    ``.data``); 0-d arrays (batch norm's ``num_batches_tracked``) keep their shape ().
    ``metadata`` is an optional dict str -> str stored in the file's header.
    Everything is checked before anything is written: a nested dict, a value that is not an
    array, or a dtype safetensors cannot hold raises a TypeError that names the key.
    The file is built in memory first (as many bytes as the arrays hold), then written.
    """
    arrays = _checked_arrays(state_dict)
    metadata = _checked_metadata(metadata)
    if os.path.isdir(path):
        raise ValueError(f"cannot save to {path}: it is a folder; give a file name such as "
                         f"{os.path.join(path, 'model.safetensors')}")
    payload = _import_safetensors().numpy.save(arrays, metadata=metadata)  # the whole file, as bytes
    _write_atomically(path, payload)


def _checked_arrays(state_dict):
    """name -> C-contiguous NumPy array on the CPU, or a TypeError / ValueError naming the bad entry."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"save_safetensors saves a dict name -> array (a model's state_dict()), "
                        f"got {type(state_dict).__name__}")
    arrays = OrderedDict()
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save_safetensors: key {name!r} is a {type(name).__name__}; "
                            "safetensors names every array with a str")
        if name == _HEADER_KEY:
            raise ValueError(f"save_safetensors: key {name!r} is reserved for the file's metadata; rename the "
                             "array, and pass text through metadata= instead")
        if isinstance(value, dict):
            raise TypeError(f"save_safetensors: entry {name!r} is a nested dict, but a safetensors file holds "
                            f"a flat dict name -> array; flatten it (keys like '{name}.<inner key>'), or save "
                            "nested state with minires.save")
        if isinstance(value, Tensor):
            value = value.data
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):  # not a NumPy or CuPy array (or scalar)
            raise TypeError(f"save_safetensors: entry {name!r} is a {type(value).__name__}, not an array; "
                            "wrap numbers in numpy.array(...), or save such state with minires.save")
        # safetensors copies raw memory, so C order (not ascontiguousarray, which turns a 0-d array into 1-d)
        array = numpy.asarray(to_device(value, "cpu"), order="C")
        if array.dtype.name not in SUPPORTED_DTYPES:
            kind = "an object array, which cannot be saved without pickle" if array.dtype == object \
                else f"of dtype {array.dtype}, which safetensors cannot hold"
            raise TypeError(f"save_safetensors: entry {name!r} is {kind}; "
                            f"use one of {', '.join(SUPPORTED_DTYPES)}")
        arrays[name] = array
    return arrays


def _checked_metadata(metadata):
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise TypeError(f"save_safetensors: metadata must be a dict str -> str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save_safetensors: metadata entry {key!r}: {value!r} is not str -> str; "
                            "the header holds text only (write numbers with str(), structures with json.dumps)")
    return dict(metadata)


def _write_atomically(path, payload):
    """Write the bytes ``payload`` to a locked temporary in ``path``'s folder and rename it to ``path``
    (as ``minires.serialization.save_checkpoint`` does; its docstring says why each step)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    _remove_abandoned_temporaries(folder)
    handle, temporary = _locked_temporary(folder)
    rename_while_open = os.name != "nt"  # POSIX: rename while still locked; Windows renames closed files only
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(payload)
            f.flush()
            os.chmod(temporary, 0o666 & ~_umask())
            os.fsync(f.fileno())
            if rename_while_open:
                os.replace(temporary, path)
        if not rename_while_open:
            os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


# ---- loading -------------------------------------------------------------------------------

def load_safetensors(path):
    """Read a safetensors file: an OrderedDict name -> NumPy array, **sorted by name** (the order
    ``safetensors.safe_open(...).keys()`` gives; the file itself keeps no order that means anything).

    A missing file raises FileNotFoundError; a folder, or a file that is not a sound safetensors
    file (a .npz, a .pt, an empty or truncated file), a ValueError that names the file. The
    header's text metadata is not returned: ``safetensors.safe_open(path, "numpy").metadata()`` reads it.
    """
    safetensors = _import_safetensors()
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a safetensors file; give the .safetensors file inside it")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist (looking for a safetensors file)")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{path} is an empty file, not a safetensors file")
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            names = sorted(f.keys())
            return OrderedDict((name, _get_array(f, name, path)) for name in names)
    except (safetensors.SafetensorError, OSError) as err:  # a bad header, a truncated file, ...
        raise ValueError(f"{path} is not a safetensors file, or it is damaged ({err}){_what_it_is(head)}") from None


def _get_array(f, name, path):
    try:
        return f.get_tensor(name)
    except TypeError:  # a dtype NumPy has no type for: bfloat16, the float8s
        dtype = f.get_slice(name).get_dtype()
        raise ValueError(f"{path}: array {name!r} has dtype {dtype}, which NumPy cannot hold; convert the "
                         "file in PyTorch first (tensor.float() for every tensor, then save_file)") from None


def _what_it_is(head):
    """What a file that safetensors refused seems to be, from its first bytes (asked only after it
    refused: a sound file's first 8 bytes are a length, which may happen to look like anything)."""
    convert = ("convert it in PyTorch with "
               "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')")
    if head.startswith(_ZIP_MAGIC):
        return f"; it is a zip archive: a minires .npz (read it with minires.load) or a torch.save .pt file ({convert})"
    if head.startswith(_PICKLE_MAGIC):
        return f"; it starts like a pickle (an old torch.save file, say), which minires never loads ({convert})"
    return ""
