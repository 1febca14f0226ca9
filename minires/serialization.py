"""Saving and loading: nested state (dicts, lists, numbers, strings, arrays, Tensors) in
one ``.npz`` file that loads with ``allow_pickle=False``.

``minires.save(model.state_dict(), "model.npz")`` / ``minires.load("model.npz")`` are
PyTorch's ``torch.save`` / ``torch.load`` for state dicts; the training command's
checkpoints (``save_checkpoint`` / ``load_checkpoint``) are the same format. Unlike
``torch.load``, loading can never run code: there is no pickle, only arrays and JSON.

Arrays are stored as npz entries; everything else goes into one JSON text entry,
where each array is replaced by a reference ``{"__array__": "<entry name>"}``.
Files are written to a temporary name in the same folder and renamed into place,
so a crash while saving never leaves a half-written checkpoint behind; the next save
into that folder removes the temporaries such crashes leave (see ``save_checkpoint``).
"""
import glob
import json
import os
import tempfile
import zipfile
import zlib

import numpy

try:
    import fcntl  # POSIX: a save holds a lock on its temporary while it writes it
except ImportError:  # Windows: a file that another process has open cannot be removed anyway
    fcntl = None

from minires.backends import to_device
from minires.engine.tensor import Tensor

_JSON_KEY = "__tree__.json"
_TEMP_PREFIX, _TEMP_SUFFIX = ".checkpoint-", ".npz.tmp"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (the second: an empty one)
_NPY_MAGIC = b"\x93NUMPY"


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
    """Undo :func:`_split`: put the arrays back in place of their references (KeyError: one is missing)."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        if set(tree) == {"__int_keys__"}:
            return {k: _join(v, arrays) for k, v in tree["__int_keys__"]}
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


# ---- saving --------------------------------------------------------------------------------

def save_checkpoint(path, state):
    """Write ``state`` (a nested dict) to ``path`` atomically, with the permissions of any new
    file (``0o666`` less the umask, where ``mkstemp`` alone would give ``0o600``).

    It is written to ``.checkpoint-<random>.npz.tmp`` in the same folder, then renamed into place.
    A save killed before the rename (``kill -9``, a power cut) leaves that temporary behind, so
    each save first removes the folder's abandoned ones: on POSIX, those that no process holds
    locked (a save holds an ``flock`` on its temporary from creation to rename, and the kernel
    drops it when the process dies, however it dies); on Windows, those that no process has open
    (Windows refuses to remove an open file). A temporary that another save is still writing is
    never removed, whatever its age.
    """
    arrays = {}
    tree = _split(state, arrays, "")
    arrays[_JSON_KEY] = numpy.array(json.dumps(tree))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    _remove_abandoned_temporaries(folder)
    handle, temporary = _locked_temporary(folder)
    try:
        with os.fdopen(handle, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.chmod(temporary, 0o666 & ~_umask())
            os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(temporary, path)  # still locked: no other save's clean-up can take it
        if fcntl is None:
            os.replace(temporary, path)  # Windows renames closed files only
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _locked_temporary(folder):
    """``mkstemp``'s (handle, path) for a new temporary in ``folder``, locked where locks exist."""
    while True:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
        if fcntl is None:
            return handle, temporary
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits while another save's clean-up examines it
        except OSError:  # a file system without locks: write unlocked (its clean-ups skip all)
            return handle, temporary
        if os.fstat(handle).st_nlink:
            return handle, temporary
        os.close(handle)  # that clean-up removed it in the instant before we locked it: again


def _remove_abandoned_temporaries(folder):
    """Remove the temporaries of ``folder`` that killed saves left (see :func:`save_checkpoint`)."""
    for temporary in glob.glob(os.path.join(glob.escape(folder), f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}")):
        _remove_if_abandoned(temporary)


def _remove_if_abandoned(temporary):
    """Remove ``temporary`` unless a live save is writing it; any doubt keeps it."""
    if fcntl is None:
        try:
            os.remove(temporary)  # Windows: fails while a live save has it open
        except OSError:
            pass
        return
    try:
        handle = os.open(temporary, os.O_RDONLY)
    except OSError:  # already gone, or not ours to read
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a live save holds it
        os.remove(temporary)
    except OSError:
        pass
    finally:
        os.close(handle)


def _umask():
    """The process's umask, without changing it where the system lets us read it (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # elsewhere: set a strict one for an instant, and put it back
    os.umask(mask)
    return mask


# ---- loading -------------------------------------------------------------------------------

def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle involved).

    A missing file raises FileNotFoundError; anything else that is not a sound minires
    checkpoint (a folder, another kind of file, a damaged archive) raises one ValueError
    that names the file and the problem.
    """
    if os.path.isdir(path):
        inside = os.path.join(path, "checkpoint.npz")
        hint = f"; did you mean {inside}?" if os.path.isfile(inside) else ""
        raise ValueError(f"checkpoint {path} is a folder, not a minires checkpoint (.npz) file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    _check_it_is_a_zip_archive(path)
    try:
        with numpy.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as err:
        raise ValueError(f"checkpoint {path} is corrupt or not a minires checkpoint: {err}") from None
    if _JSON_KEY not in arrays:
        raise ValueError(f"checkpoint {path} is not a minires checkpoint (no {_JSON_KEY} entry)")
    try:
        tree = json.loads(str(arrays.pop(_JSON_KEY)))
    except ValueError as err:
        raise ValueError(f"checkpoint {path} is corrupt: its {_JSON_KEY} entry is not valid JSON ({err})") from None
    try:
        return _join(tree, arrays)
    except KeyError as err:
        raise ValueError(f"checkpoint {path} is corrupt: its {_JSON_KEY} entry refers to an array "
                         f"{err.args[0]!r} that the file does not contain") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path} is corrupt: its {_JSON_KEY} entry is malformed ({err})") from None


def _check_it_is_a_zip_archive(path):
    """Raise a ValueError that says what ``path`` is, unless it starts like a zip archive (.npz)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise ValueError(f"checkpoint {path} cannot be read: {err.strerror}") from None
    if head.startswith(_ZIP_MAGICS):
        return
    if not head:
        raise ValueError(f"checkpoint {path} is an empty file, not a minires checkpoint (.npz) file")
    if head.startswith(_NPY_MAGIC):
        raise ValueError(f"checkpoint {path} is a NumPy .npy file (a single array), not a minires "
                         "checkpoint (.npz) file; write checkpoints with minires.save or save_checkpoint")
    raise ValueError(f"checkpoint {path} is not a minires checkpoint (.npz) file: it is not a zip "
                     f"archive (it starts with {head!r})")


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
