"""Data files that cannot be trusted are refused at load, with one message that names the file.

A junk CIFAR-10 archive is caught by its checksum before extraction, labels out of
range are caught when the data set loads (not mid-epoch), and a directory where a
file should be is called a directory. Everything is built by hand in tmp_path.
"""
import gzip
import hashlib
import os

import numpy as np
import pytest

from minires.data import CIFAR10, MNIST, MNISTSample, extract_tar, write_idx
from minires.data import datasets as datasets_module
from minires.data.download import CIFAR10_FILES
from test_data import make_tar

ARCHIVE = "cifar-10-binary.tar.gz"
BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def cifar_archive(path, records=2):
    """A small archive laid out like the official one: cifar-10-batches-bin/*.bin."""
    rng = np.random.default_rng(0)
    files = {}
    for name in BATCHES:
        labels = rng.integers(0, 10, records, dtype=np.uint8)
        images = rng.integers(0, 256, (records, 3072), dtype=np.uint8)
        files["cifar-10-batches-bin/" + name] = np.concatenate([labels[:, None], images], axis=1).tobytes()
    make_tar(path, files)
    return path


def pin(monkeypatch, archive, records=2):
    """Make CIFAR10 expect this archive's own checksums (the official ones are the default)."""
    data = archive.read_bytes()
    monkeypatch.setattr(CIFAR10, "resources",
                        {ARCHIVE: (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())})
    monkeypatch.setattr(CIFAR10, "records_per_batch", records)


def fake_mnist(root, labels, images=None):
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, np.uint8)
    if images is None:
        images = np.zeros((len(labels), 28, 28), np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    return folder


# ------------------------------------------------------------ 1. checksums

def test_junk_archive_in_the_folder_is_refused_by_its_checksum(tmp_path):
    junk = tmp_path / ARCHIVE
    junk.write_bytes(b"<html>404 not found</html>")
    for download in (False, True):     # already there: nothing is downloaded either way
        with pytest.raises(ValueError) as info:
            CIFAR10(root=tmp_path, train=False, download=download)
        message = str(info.value)
        assert str(junk) in message and "corrupt or not the expected file" in message
        sha256, md5 = CIFAR10_FILES[ARCHIVE]
        assert sha256 in message and hashlib.sha256(junk.read_bytes()).hexdigest() in message
        assert md5 in message
        assert "Delete it and rerun with --download" in message and "cs.toronto.edu" in message
    assert not (tmp_path / "cifar-10-batches-bin").exists()   # checked before anything was extracted


def test_a_valid_archive_that_is_not_the_pinned_one_is_refused(tmp_path):
    cifar_archive(tmp_path / ARCHIVE)             # a real tar.gz, but not the official bytes
    with pytest.raises(ValueError, match="corrupt or not the expected file"):
        CIFAR10(root=tmp_path, train=False)


def test_truncated_or_junk_tar_becomes_a_value_error_naming_the_file(tmp_path):
    good = cifar_archive(tmp_path / "good.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar archive at all" * 100)
    bad_gzip = tmp_path / "bad.tar.gz"
    bad_gzip.write_bytes(gzip.compress(b"x" * 10000)[:40])
    for archive in (cut, junk, bad_gzip):
        with pytest.raises(ValueError, match="corrupt or not a tar archive") as info:
            extract_tar(archive, tmp_path / "out")
        assert str(archive) in str(info.value) and "delete it" in str(info.value)


def test_correct_archive_in_the_folder_is_checked_and_extracted(tmp_path, monkeypatch):
    archive = cifar_archive(tmp_path / ARCHIVE)
    pin(monkeypatch, archive)
    test = CIFAR10(root=tmp_path, train=False)     # no download needed: the archive is there
    train = CIFAR10(root=tmp_path, train=True)
    assert len(test) == 2 and len(train) == 10
    assert all((tmp_path / "cifar-10-batches-bin" / n).is_file() for n in BATCHES)


def test_fresh_download_is_checked_and_extracted(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    archive = cifar_archive(server / ARCHIVE)
    pin(monkeypatch, archive)
    monkeypatch.setattr(CIFAR10, "mirrors", [server.as_uri() + "/"])
    ds = CIFAR10(root=tmp_path / "data", train=False, download=True)
    assert len(ds) == 2 and (tmp_path / "data" / ARCHIVE).is_file()


# ------------------------------------------------------------ 2. labels

def test_mnist_label_out_of_range_names_the_file(tmp_path):
    folder = fake_mnist(tmp_path, [0, 1, 200, 3, 255])
    with pytest.raises(ValueError) as info:
        MNIST(root=tmp_path, train=True)
    message = str(info.value)
    assert str(folder / "train-labels-idx1-ubyte.gz") in message
    assert "2 of 5 labels are outside 0..9" in message and "from 200 to 255" in message


def test_mnist_image_and_label_counts_must_agree(tmp_path):
    folder = fake_mnist(tmp_path, [0, 1, 2], images=np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="holds 4 images but .* holds 3 labels") as info:
        MNIST(root=tmp_path, train=True)
    assert str(folder / "train-images-idx3-ubyte.gz") in str(info.value)


def test_cifar_label_out_of_range_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(CIFAR10, "records_per_batch", 3)
    path = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    path.parent.mkdir()
    records = np.zeros((3, 3073), np.uint8)
    records[:, 0] = [1, 12, 200]
    path.write_bytes(records.tobytes())
    with pytest.raises(ValueError, match="outside 0..9, from 12 to 200") as info:
        CIFAR10(root=tmp_path, train=False)
    assert str(path) in str(info.value)


def test_bundled_sample_labels_are_checked(tmp_path, monkeypatch):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 10, 9], np.uint8))
    monkeypatch.setattr(datasets_module, "SAMPLE_DIR", str(tmp_path))
    datasets_module._sample_arrays.cache_clear()
    try:
        with pytest.raises(ValueError, match="1 of 3 labels are outside 0..9") as info:
            MNISTSample(train=True)
        assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in str(info.value)
    finally:
        datasets_module._sample_arrays.cache_clear()   # the real sample for the other tests


# ------------------------------------------------------------ 3. directories

def test_directory_where_an_mnist_file_should_be(tmp_path):
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.mkdir(parents=True)
    for download in (False, True):
        with pytest.raises(FileNotFoundError) as info:
            MNIST(root=tmp_path, train=True, download=download)
        assert f"{path} is a directory, expected the file train-images-idx3-ubyte.gz" in str(info.value)


def test_directory_where_a_cifar_file_should_be(tmp_path):
    batch = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    batch.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="is a directory, expected the file test_batch.bin") as info:
        CIFAR10(root=tmp_path, train=False)
    assert str(batch) in str(info.value)
    os.rmdir(batch)
    (tmp_path / ARCHIVE).mkdir()
    with pytest.raises(FileNotFoundError, match=f"is a directory, expected the file {ARCHIVE}"):
        CIFAR10(root=tmp_path, train=False, download=True)
