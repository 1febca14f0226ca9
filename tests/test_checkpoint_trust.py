"""Checkpoints you can trust: every bad file is one clear ValueError, killed saves leave no litter
behind after the next save, checkpoints get the usual permissions, and a model mismatch is short."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minires import nn
from minires.serialization import load_checkpoint, save_checkpoint

try:
    import fcntl
except ImportError:
    fcntl = None


def temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".checkpoint-") and name.endswith(".npz.tmp"))


def write_archive(path, tree_text, **arrays):
    """An .npz archive like save_checkpoint's, with ``tree_text`` as its __tree__.json entry."""
    np.savez(str(path), **{"__tree__.json": np.array(tree_text)}, **arrays)


# ---- A: loading problems are one ValueError that names the file and the problem ----------------

def test_an_npy_file_renamed_npz_is_named_as_such(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.npz is a NumPy \.npy file .*not a minires "
                                         r"checkpoint \(\.npz\) file"):
        load_checkpoint(str(path))


def test_a_png_is_not_a_minires_checkpoint_not_pickled_data(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match=r"curves\.png is not a minires checkpoint \(\.npz\) file: it is not a zip") as info:
        load_checkpoint(str(path))
    assert "pickle" not in str(info.value)


def test_a_tree_referring_to_a_missing_array_is_corrupt_not_a_key_error(tmp_path):
    path = tmp_path / "c.npz"
    write_archive(path, json.dumps({"w": {"__array__": "w"}, "b": {"__array__": "b"}}), w=np.zeros(2))
    with pytest.raises(ValueError, match=r"c\.npz is corrupt: .* refers to an array 'b' that the file does not contain"):
        load_checkpoint(str(path))


def test_a_tree_that_is_not_json_is_corrupt(tmp_path):
    path = tmp_path / "c.npz"
    write_archive(path, '{"epoch": 3,')
    with pytest.raises(ValueError, match=r"c\.npz is corrupt: its __tree__\.json entry is not valid JSON"):
        load_checkpoint(str(path))


def test_a_folder_is_not_a_checkpoint_and_the_one_inside_is_suggested(tmp_path):
    with pytest.raises(ValueError, match=r"is a folder, not a minires checkpoint \(\.npz\) file$"):
        load_checkpoint(str(tmp_path))
    save_checkpoint(str(tmp_path / "checkpoint.npz"), {"epoch": 1})
    with pytest.raises(ValueError, match=r"is a folder, .*; did you mean .*checkpoint\.npz\?"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a missing file stays FileNotFoundError
        load_checkpoint(str(tmp_path / "missing.npz"))


def test_an_empty_or_truncated_file_is_a_value_error(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.npz is an empty file"):
        load_checkpoint(str(empty))
    whole = tmp_path / "whole.npz"
    save_checkpoint(str(whole), {"w": np.arange(1000.0)})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"truncated\.npz is corrupt"):
        load_checkpoint(str(truncated))


# ---- B: temporaries left by killed saves -------------------------------------------------------

def test_a_save_removes_the_temporaries_that_killed_saves_left(tmp_path):
    for i in range(3):
        (tmp_path / f".checkpoint-killed{i}.npz.tmp").write_bytes(b"PK\x03\x04 half written")
    (tmp_path / "notes.tmp").write_text("not ours")
    save_checkpoint(str(tmp_path / "checkpoint.npz"), {"epoch": 2, "w": np.ones(3)})
    assert temporaries(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "notes.tmp"]  # nothing else touched
    assert load_checkpoint(str(tmp_path / "checkpoint.npz"))["epoch"] == 2


@pytest.mark.skipif(fcntl is None, reason="POSIX file locks")
def test_a_save_leaves_alone_a_temporary_that_another_save_is_writing(tmp_path):
    live = tmp_path / ".checkpoint-live.npz.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # what a running save holds
        save_checkpoint(str(tmp_path / "checkpoint.npz"), {"epoch": 1})
        assert live.exists()
    save_checkpoint(str(tmp_path / "checkpoint.npz"), {"epoch": 2})  # its writer is gone: now it goes
    assert not live.exists()


SAVE_FOREVER = """
import sys
import numpy as np
from minires.serialization import save_checkpoint
weights = np.arange(1_000_000, dtype=np.float32)  # 4 MB
print("ready", flush=True)
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], {"step": step, "weights": weights + step})
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_every_checkpoint_that_survives_kill_9_loads_and_the_next_save_cleans_up(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    rng = random.Random(0)
    for _ in range(3):
        saver = subprocess.Popen([sys.executable, "-c", SAVE_FOREVER, path], stdout=subprocess.PIPE)
        assert saver.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.3))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saver.stdout.close()
        if os.path.exists(path):
            state = load_checkpoint(path)
            np.testing.assert_array_equal(state["weights"], np.arange(1_000_000, dtype=np.float32) + state["step"])
    save_checkpoint(path, {"step": 0})
    assert temporaries(tmp_path) == []
    assert load_checkpoint(path) == {"step": 0}


# ---- C: permissions ----------------------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path, umask):
    previous = os.umask(umask)
    try:
        save_checkpoint(str(tmp_path / "checkpoint.npz"), {"epoch": 1})
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "checkpoint.npz").st_mode & 0o777 == 0o666 & ~umask


# ---- D: a model mismatch is reported in a few lines --------------------------------------------

def test_a_mismatch_of_a_hundred_keys_names_five_of_each_kind_and_counts_the_rest():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(50)])  # 100 keys
    state = {f"other.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Sequential:\n  ")
    missing, unexpected = message.splitlines()[1:]
    assert missing == "  missing keys: 0.weight, 0.bias, 1.weight, 1.bias, 2.weight ... and 95 more (100 in all)"
    assert unexpected.startswith("  unexpected keys: other.0.weight, ") and unexpected.endswith("... and 95 more (100 in all)")
    assert unexpected.count(",") == 4
    assert len(message) < 400
