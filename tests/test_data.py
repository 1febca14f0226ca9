"""minires.data: file readers, downloads, data sets, the DataLoader and the batch transforms.

Nothing here touches the network: downloads are tested with file:// URLs, and
files are generated in a temporary folder.
"""
import gzip
import hashlib
import importlib
import io
import os
import shutil
import struct
import tarfile
import threading

import numpy as np
import pytest

from minires.data import (
    CIFAR10, MNIST, ArrayDataset, Compose, DataLoader, FashionMNIST, MNISTSample, Normalize, RandomCrop,
    RandomHorizontalFlip, default_root, download, extract_tar, mean_std, read_cifar_batch, read_cifar_batches,
    read_idx, write_idx,
)

# The module, not the function of the same name that minires.data exports.
download_module = importlib.import_module("minires.data.download")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shared_data_dir():
    for candidate in (os.path.join(REPO_ROOT, "..", "shared", "data"), "/work/shared/data"):
        if os.path.isdir(os.path.join(candidate, "mnist")):
            return os.path.abspath(candidate)
    return None


SHARED = _shared_data_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None, reason="the shared data folder (../shared/data next to the repository) is absent")


# ------------------------------------------------------------------ IDX files

def idx_bytes(code, shape, payload):
    """An IDX file by hand: two zero bytes, type code, dimension count, big-endian sizes, data."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.mark.parametrize("code, dtype", [(0x08, "u1"), (0x09, "i1"), (0x0B, ">i2"),
                                         (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")])
@pytest.mark.parametrize("gzipped", [False, True])
def test_read_idx_every_type(tmp_path, code, dtype, gzipped):
    rng = np.random.default_rng(code)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    data = idx_bytes(code, array.shape, array.tobytes())
    path = tmp_path / ("x.idx.gz" if gzipped else "x.idx")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 1   # a writable copy, not a view of the file's bytes


def test_read_idx_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "corrupt-images-idx3-ubyte"
    good = idx_bytes(0x08, (2, 2, 2), bytes(8))
    path.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="magic") as info:
        read_idx(path)
    assert "corrupt-images-idx3-ubyte" in str(info.value)


def test_read_idx_unknown_type_code(tmp_path):
    path = tmp_path / "odd.idx"
    path.write_bytes(idx_bytes(0x07, (4,), bytes(4)))
    with pytest.raises(ValueError, match="0x07") as info:
        read_idx(path)
    assert "odd.idx" in str(info.value)


def test_read_idx_truncated_data_names_the_file(tmp_path):
    path = tmp_path / "short-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(0x08, (10, 28, 28), bytes(10 * 28 * 28))[:-5])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    message = str(info.value)
    assert "short-labels-idx1-ubyte" in message
    assert "7840" in message and "7835" in message   # promised and found data bytes


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "header.idx"
    path.write_bytes(idx_bytes(0x08, (10, 28, 28), b"")[:9])
    with pytest.raises(ValueError, match="header") as info:
        read_idx(path)
    assert "header.idx" in str(info.value)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(0x08, (4,), bytes(4)) + b"xyz")
    with pytest.raises(ValueError, match="3 unexpected bytes") as info:
        read_idx(path)
    assert "long.idx" in str(info.value)


def test_read_idx_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.idx.gz"
    compressed = gzip.compress(idx_bytes(0x08, (100, 10), np.arange(1000, dtype=np.uint8).tobytes()))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="gzip") as info:
        read_idx(path)
    assert "cut.idx.gz" in str(info.value)


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_write_idx_round_trip(tmp_path, name):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 7
    write_idx(tmp_path / name, array)
    raw = (tmp_path / name).read_bytes()
    assert raw.startswith(b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


# ---------------------------------------------------------- CIFAR-10 binary

def cifar_records(labels, images):
    """The CIFAR-10 binary layout by hand: per record, one label byte then R, G, B planes."""
    return b"".join(bytes([label]) + image.tobytes() for label, image in zip(labels, images))


def test_read_cifar_batch(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    images[0, 0], images[0, 1], images[0, 2] = 10, 20, 30   # red, green, blue planes
    labels = [3, 0, 9, 1, 7]
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(cifar_records(labels, images))
    out_images, out_labels = read_cifar_batch(path)
    assert out_images.shape == (5, 3, 32, 32) and out_images.dtype == np.uint8
    assert out_labels.dtype == np.int64
    np.testing.assert_array_equal(out_labels, labels)
    np.testing.assert_array_equal(out_images, images)
    assert out_images[0, 0].max() == 10 and out_images[0, 1].min() == 20 and out_images[0, 2].min() == 30


def test_read_cifar_batch_truncated(tmp_path):
    path = tmp_path / "test_batch.bin"
    path.write_bytes(cifar_records([1, 2, 3], np.zeros((3, 3, 32, 32), np.uint8))[:-100])
    with pytest.raises(ValueError, match="truncated") as info:
        read_cifar_batch(path)
    message = str(info.value)
    assert "test_batch.bin" in message and str(3 * 3073 - 100) in message


def test_read_cifar_batch_bad_label_and_wrong_count(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(cifar_records([1, 10], np.zeros((2, 3, 32, 32), np.uint8)))
    with pytest.raises(ValueError, match="label 10") as info:
        read_cifar_batch(path)
    assert "b.bin" in str(info.value)
    path.write_bytes(cifar_records([1, 2], np.zeros((2, 3, 32, 32), np.uint8)))
    with pytest.raises(ValueError, match="expected 10000"):
        read_cifar_batch(path, num_records=10000)
    with pytest.raises(ValueError, match="empty"):
        (tmp_path / "empty.bin").write_bytes(b"")
        read_cifar_batch(tmp_path / "empty.bin")


def test_read_cifar_batches_keeps_file_order(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.bin").write_bytes(cifar_records([i, i], np.full((2, 3, 32, 32), i, np.uint8)))
    images, labels = read_cifar_batches([tmp_path / "1.bin", tmp_path / "0.bin"])
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])
    assert images.shape == (4, 3, 32, 32) and images[0].min() == 1 and images[3].max() == 0


# --------------------------------------------------------- bundled MNIST

def test_mnist_sample_split():
    train, held_out = MNISTSample(train=True), MNISTSample(train=False)
    assert len(train) == 8000 and len(held_out) == 2000
    assert train.images.shape == (8000, 1, 28, 28) and train.images.dtype == np.uint8
    assert held_out.images.shape == (2000, 1, 28, 28)
    assert train.labels.dtype == np.int64
    counts = np.bincount(train.labels, minlength=10)
    assert len(counts) == 10 and counts.min() >= 600 and counts.max() <= 1000, counts
    assert np.bincount(held_out.labels, minlength=10).min() >= 100
    # The documented split, and the two parts cover the 10,000 test images exactly once.
    order = np.random.default_rng(0).permutation(10000)
    np.testing.assert_array_equal(train.indices, order[:8000])
    assert sorted(np.concatenate([train.indices, held_out.indices]).tolist()) == list(range(10000))
    assert train.classes == [str(d) for d in range(10)]


def test_dataset_getitem_is_float_in_unit_range():
    ds = MNISTSample(train=False)
    image, label = ds[5]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
    assert isinstance(label, int) and label == ds.labels[5]
    np.testing.assert_array_equal(image, ds.images[5] / np.float32(255))


def test_mean_std_per_channel():
    mean, std = mean_std(MNISTSample(train=True))
    assert mean.shape == (1,) and std.shape == (1,)
    assert abs(mean[0] - 0.1326) < 0.002 and abs(std[0] - 0.3106) < 0.002   # MNIST's usual statistics
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (20, 3, 5, 5), dtype=np.uint8)
    images[:, 2] //= 4                                   # give each channel a different spread
    mean, std = mean_std(ArrayDataset(images, np.zeros(20)))
    x = images / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-6)


def test_mnist_sample_readme_has_attribution():
    with open(os.path.join(REPO_ROOT, "minires", "data", "mnist_sample", "README.md")) as f:
        readme = f.read()
    assert "LeCun" in readme and "Cortes" in readme and "Burges" in readme and "CC BY-SA 3.0" in readme
    with open(os.path.join(REPO_ROOT, "setup.py")) as f:
        assert '"minires.data": ["mnist_sample/*.gz"' in f.read()


# ------------------------------------------------------ the shared real data

SHARED_MD5 = {   # of the decompressed IDX files, as listed in shared/data/README.md
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
}


@needs_shared
def test_shared_mnist_files_match_published_md5():
    with open(os.path.join(SHARED, "README.md")) as f:
        readme = f.read()
    for name, md5 in SHARED_MD5.items():
        assert md5 in readme
        with gzip.open(os.path.join(SHARED, "mnist", name), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == md5, name
    # The copy bundled in the package holds the same bytes.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(os.path.join(REPO_ROOT, "minires", "data", "mnist_sample", name), "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == SHARED_MD5[name]


@needs_shared
def test_mnist_reads_the_real_test_files(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(os.path.join(SHARED, "mnist", name), folder / name)
    test = MNIST(root=tmp_path, train=False)
    assert test.images.shape == (10000, 1, 28, 28) and len(test) == 10000
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    sample = MNISTSample(train=False)
    np.testing.assert_array_equal(sample.images, test.images[sample.indices])


# ------------------------------------------------------------- downloading

def test_pinned_checksums_look_right():
    assert download_module.MNIST_MIRRORS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert download_module.MNIST_FILES["t10k-labels-idx1-ubyte.gz"][1] == "ec29112dd5afa0611ce80d1b7f02629c"
    assert download_module.CIFAR10_FILES["cifar-10-binary.tar.gz"][1] == "c32a1d4ab5d03f1284b67883e8d87530"
    tables = (download_module.MNIST_FILES, download_module.FASHION_MNIST_FILES, download_module.CIFAR10_FILES)
    pairs = [pair for table in tables for pair in table.values()]
    assert len(pairs) == 9
    for sha256, md5 in pairs:
        assert len(sha256) == 64 and len(md5) == 32 and int(sha256, 16) >= 0 and int(md5, 16) >= 0


@pytest.fixture
def served_file(tmp_path):
    """A file to 'download' through a file:// URL, and its checksums."""
    source = tmp_path / "server" / "blob.bin"
    source.parent.mkdir()
    content = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    source.write_bytes(content)
    return source, content, hashlib.sha256(content).hexdigest(), hashlib.md5(content).hexdigest()


def test_download_success_is_atomic(tmp_path, served_file, monkeypatch):
    source, content, sha256, md5 = served_file
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append((src, dst)), real_replace(src, dst)))
    target = tmp_path / "cache" / "blob.bin"
    assert download([source.as_uri()], target, sha256=sha256, md5=md5) == str(target)
    assert target.read_bytes() == content
    assert os.listdir(target.parent) == ["blob.bin"]                 # no temporary file left
    (src, dst), = replaced                                           # moved into place in one step,
    assert dst == str(target) and os.path.dirname(src) == str(target.parent)   # from the same folder


def test_download_wrong_checksum_leaves_nothing(tmp_path, served_file):
    source, _, _, _ = served_file
    wrong = "0" * 64
    target = tmp_path / "cache" / "blob.bin"
    with pytest.raises(RuntimeError) as info:
        download([source.as_uri()], target, sha256=wrong)
    message = str(info.value)
    assert wrong in message and "blob.bin" in message and source.as_uri() in message
    assert str(target) in message                                    # where to put it by hand
    assert os.listdir(target.parent) == []


def test_download_falls_back_to_the_next_mirror(tmp_path, served_file):
    source, content, sha256, _ = served_file
    target = tmp_path / "cache" / "blob.bin"
    dead = (tmp_path / "server" / "missing.bin").as_uri()
    download([dead, source.as_uri()], target, sha256=sha256)
    assert target.read_bytes() == content
    # A mirror serving the wrong bytes is skipped too.
    bad = tmp_path / "server" / "bad.bin"
    bad.write_bytes(b"not the file")
    target.unlink()
    download([bad.as_uri(), source.as_uri()], target, sha256=sha256)
    assert target.read_bytes() == content


def test_download_all_mirrors_fail(tmp_path):
    urls = [(tmp_path / "a.bin").as_uri(), (tmp_path / "b.bin").as_uri()]
    with pytest.raises(RuntimeError) as info:
        download(urls, tmp_path / "out" / "x.bin", md5="ab" * 16)
    message = str(info.value)
    assert all(u in message for u in urls) and "ab" * 16 in message and "by hand" in message
    assert os.listdir(tmp_path / "out") == []


def make_tar(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("with_filter", [True, False])
def test_extract_tar(tmp_path, monkeypatch, with_filter):
    if not with_filter:   # the hand-written checks used on Pythons without filter="data"
        monkeypatch.setattr(download_module, "_HAS_FILTER", False)
    elif not download_module._HAS_FILTER:
        pytest.skip("this Python has no tarfile extraction filters")
    archive = tmp_path / "a.tar.gz"
    make_tar(archive, {"top/a.txt": b"hello", "top/sub/b.bin": bytes(range(10))})
    dest = tmp_path / "out"
    extract_tar(archive, dest)
    assert (dest / "top" / "a.txt").read_bytes() == b"hello"
    assert (dest / "top" / "sub" / "b.bin").read_bytes() == bytes(range(10))

    evil = tmp_path / "evil.tar.gz"
    make_tar(evil, {"../escaped.txt": b"gotcha"})
    with pytest.raises(ValueError, match="unsafe") as info:
        extract_tar(evil, dest)
    assert "evil.tar.gz" in str(info.value)
    assert not (tmp_path / "escaped.txt").exists()


# ------------------------------------------------------------- data sets

def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MNIST(root=tmp_path, train=True)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "mnist") in message
    assert "download=True" in message and "https://ossci-datasets.s3.amazonaws.com/mnist/" in message

    with pytest.raises(FileNotFoundError, match="fashion-mnist") as info:
        FashionMNIST(root=tmp_path, train=False)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)

    with pytest.raises(FileNotFoundError) as info:
        CIFAR10(root=tmp_path, train=False)
    message = str(info.value)
    assert "test_batch.bin" in message and str(tmp_path / "cifar-10-batches-bin") in message
    assert "cifar-10-binary.tar.gz" in message and "download=True" in message


def test_root_comes_from_argument_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "from-env"))
    assert default_root() == str(tmp_path / "from-env")
    with pytest.raises(FileNotFoundError, match="from-env"):
        MNIST()
    with pytest.raises(FileNotFoundError, match="from-arg"):
        MNIST(root=tmp_path / "from-arg")
    monkeypatch.delenv("MINIRES_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == str(tmp_path / "home" / ".cache" / "minires")


def test_mnist_download_into_root(tmp_path, monkeypatch):
    # A fake mirror: small IDX files in a local folder, reached through file://.
    server = tmp_path / "server"
    server.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5], np.uint8)
    write_idx(server / "train-images-idx3-ubyte.gz", images)
    write_idx(server / "train-labels-idx1-ubyte.gz", labels)
    resources = {}
    for p in server.iterdir():
        data = p.read_bytes()
        resources[p.name] = (hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
    monkeypatch.setattr(MNIST, "mirrors", [(tmp_path / "nowhere").as_uri() + "/", server.as_uri() + "/"])
    monkeypatch.setattr(MNIST, "resources", resources)
    ds = MNIST(root=tmp_path / "data", train=True, download=True)
    assert (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    np.testing.assert_array_equal(ds.images[:, 0], images)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64 and ds.images.shape == (6, 1, 28, 28)


def test_cifar10_download_extract_and_read(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    files, expected = {}, []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, 4)
        files["cifar-10-batches-bin/" + name] = cifar_records(labels, images)
        expected.append((images, labels))
    server = tmp_path / "server"
    server.mkdir()
    make_tar(server / "cifar-10-binary.tar.gz", files)
    data = (server / "cifar-10-binary.tar.gz").read_bytes()
    monkeypatch.setattr(CIFAR10, "mirrors", [server.as_uri() + "/"])
    monkeypatch.setattr(CIFAR10, "resources", {"cifar-10-binary.tar.gz": (hashlib.sha256(data).hexdigest(), None)})
    monkeypatch.setattr(CIFAR10, "records_per_batch", 4)
    train = CIFAR10(root=tmp_path / "data", train=True, download=True)
    test = CIFAR10(root=tmp_path / "data", train=False)          # already there: no download needed
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 4
    np.testing.assert_array_equal(train.images, np.concatenate([e[0] for e in expected[:5]]))
    np.testing.assert_array_equal(test.labels, expected[5][1])
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    monkeypatch.setattr(CIFAR10, "records_per_batch", 10000)    # the real count catches short files
    with pytest.raises(ValueError, match="expected 10000"):
        CIFAR10(root=tmp_path / "data", train=False)


# ---------------------------------------------------------------- DataLoader

def numbered_dataset(n=103, shape=(1, 4, 4)):
    """Random images whose label is their own index, so batches can be traced back."""
    images = np.random.default_rng(n).integers(0, 256, (n,) + shape, dtype=np.uint8)
    return ArrayDataset(images, np.arange(n))


def epoch_order(loader):
    return np.concatenate([y for _, y in loader])


def test_loader_batches_are_the_datasets_pixels():
    ds = numbered_dataset()
    loader = DataLoader(ds, batch_size=10, shuffle=True)
    assert len(loader) == 11
    for x, y in loader:
        assert x.dtype == np.float32 and x.flags.c_contiguous and y.dtype == np.int64
        assert x.shape == (len(y), 1, 4, 4)
        np.testing.assert_array_equal(x, ds.images[y] / np.float32(255))


def test_loader_sees_every_sample_once_per_epoch():
    loader = DataLoader(numbered_dataset(), batch_size=16, shuffle=True, prefetch=0)
    for _ in range(3):
        order = epoch_order(loader)
        assert sorted(order.tolist()) == list(range(103))
    plain = DataLoader(numbered_dataset(), batch_size=16, shuffle=False)
    np.testing.assert_array_equal(epoch_order(plain), np.arange(103))


def test_loader_shuffle_is_seeded_and_changes_each_epoch():
    ds = numbered_dataset()
    a, b = DataLoader(ds, 16, shuffle=True, seed=7), DataLoader(ds, 16, shuffle=True, seed=7)
    a0, a1 = epoch_order(a), epoch_order(a)
    np.testing.assert_array_equal(a0, epoch_order(b))            # same seed, same order
    assert not np.array_equal(a0, a1)                            # a new order every epoch
    assert not np.array_equal(a0, epoch_order(DataLoader(ds, 16, shuffle=True, seed=8)))
    np.testing.assert_array_equal(a0, ds.labels[np.random.default_rng([7, 0]).permutation(103)])
    a.set_epoch(0)
    np.testing.assert_array_equal(epoch_order(a), a0)


def test_loader_state_dict_resumes():
    ds = numbered_dataset()
    first = DataLoader(ds, 16, shuffle=True, seed=3)
    epoch_order(first)
    state = first.state_dict()
    assert state == {"epoch": 1}
    expected = epoch_order(first)
    resumed = DataLoader(ds, 16, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(epoch_order(resumed), expected)


def test_loader_drop_last():
    ds = numbered_dataset(103)
    keep = DataLoader(ds, batch_size=10)
    assert len(keep) == 11 and [len(y) for _, y in keep][-1] == 3
    drop = DataLoader(ds, batch_size=10, drop_last=True, shuffle=True)
    sizes = [len(y) for _, y in drop]
    assert len(drop) == 10 and sizes == [10] * 10
    assert len(set(epoch_order(drop).tolist())) == 100


def test_loader_does_not_index_image_by_image():
    class NoItems(ArrayDataset):
        def __getitem__(self, index):
            raise AssertionError("the DataLoader must slice the arrays, not call __getitem__")

    ds = numbered_dataset()
    loader = DataLoader(NoItems(ds.images, ds.labels), batch_size=32, shuffle=True)
    assert sum(len(y) for _, y in loader) == 103


def test_prefetch_gives_the_same_batches_as_no_thread():
    ds = numbered_dataset(200, (3, 8, 8))
    augment = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
    runs = []
    for prefetch in (0, 3):
        loader = DataLoader(ds, 32, shuffle=True, seed=1, prefetch=prefetch, transform=augment)
        runs.append([batch for _ in range(2) for batch in loader])
    assert len(runs[0]) == len(runs[1]) == 14
    for (x0, y0), (x1, y1) in zip(*runs):
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(x0, x1)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "minires-prefetch" and t.is_alive()]


def test_early_break_stops_the_thread():
    # Threads of loaders from other tests (kept alive by a stored traceback, say) are not ours.
    others = set(_prefetch_threads())
    loader = DataLoader(numbered_dataset(1000), batch_size=1, prefetch=1)

    def consume():
        for _ in loader:
            break

    consumer = threading.Thread(target=consume, daemon=True)   # a hang fails the test, not the run
    consumer.start()
    consumer.join(timeout=10)
    assert not consumer.is_alive(), "breaking out of the loop hung"
    assert set(_prefetch_threads()) - others == set()
    it = iter(loader)
    next(it)
    it.close()
    assert set(_prefetch_threads()) - others == set()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_worker_exception_reaches_the_consumer(prefetch):
    calls = []

    def failing(batch, rng):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("boom in transform")
        return batch

    loader = DataLoader(numbered_dataset(), batch_size=10, prefetch=prefetch, transform=failing)
    seen = []
    with pytest.raises(ValueError, match="boom in transform"):
        for _, y in loader:
            seen.append(y)
    assert len(seen) == 2
    assert _prefetch_threads() == []


def test_loader_rejects_bad_arguments():
    with pytest.raises(TypeError, match="images"):
        DataLoader([1, 2, 3])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(numbered_dataset(), batch_size=0)


# ---------------------------------------------------------------- transforms

def random_batch(n=16, c=3, h=8, w=8, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


def test_flip_is_an_exact_mirror():
    x = random_batch()
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x, rng), x[:, :, :, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x, rng), x)
    out = RandomHorizontalFlip(p=0.5)(x, np.random.default_rng(5))
    flipped = np.random.default_rng(5).random(len(x)) < 0.5     # the same coin tosses
    assert 0 < flipped.sum() < len(x)
    for i in range(len(x)):
        np.testing.assert_array_equal(out[i], x[i, :, :, ::-1] if flipped[i] else x[i])


def test_crop_is_a_window_of_the_padded_image():
    x = random_batch(n=40) + 1.0           # every pixel >= 1, so padding zeros are visible
    out = RandomCrop(8, padding=3)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (3, 3), (3, 3)))
    offsets = set()
    for i in range(len(x)):                # find the window each output came from
        found = [(t, l) for t in range(7) for l in range(7)
                 if np.array_equal(out[i], padded[i, :, t:t + 8, l:l + 8])]
        assert len(found) == 1, f"image {i} is not a window of its padded input"
        offsets.add(found[0])
    assert len(offsets) > 10               # each image got its own offset
    # And exactly the windows the generator's draws pick: tops first, then lefts.
    rng = np.random.default_rng(0)
    top, left = rng.integers(0, 7, size=40), rng.integers(0, 7, size=40)
    for i in (0, 17, 39):
        np.testing.assert_array_equal(out[i], padded[i, :, top[i]:top[i] + 8, left[i]:left[i] + 8])


def test_crop_smaller_than_the_image_and_errors():
    x = random_batch(n=5, h=8, w=8)
    out = RandomCrop((5, 6), padding=0)(x, np.random.default_rng(1))
    assert out.shape == (5, 3, 5, 6)
    for i in range(5):
        assert any(np.array_equal(out[i], x[i, :, t:t + 5, l:l + 6]) for t in range(4) for l in range(3))
    np.testing.assert_array_equal(RandomCrop(8, padding=0)(x, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match="does not fit"):
        RandomCrop(20, padding=2)(x, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        RandomCrop(8)(x, None)


def test_normalize_per_channel():
    x = random_batch(c=3)
    mean, std = [0.1, 0.5, 0.9], [0.2, 0.25, 4.0]
    out = Normalize(mean, std)(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    for c in range(3):
        np.testing.assert_allclose(out[:, c], (x[:, c] - mean[c]) / std[c], rtol=1e-6, atol=1e-6)
    # With the data's own statistics every channel comes out with mean 0 and std 1.
    images = (x * 255).astype(np.uint8)
    standard = Normalize(*mean_std(ArrayDataset(images, np.zeros(len(x)))))(images / np.float32(255))
    np.testing.assert_allclose(standard.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(standard.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError, match="1 means but 2"):
        Normalize([0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="2 channel.*batch has 3"):
        Normalize([0.5, 0.5], [1.0, 1.0])(x)


def test_compose_applies_in_order():
    x = random_batch()
    pipeline = Compose([RandomHorizontalFlip(p=1.0), Normalize([0.5] * 3, [0.5] * 3)])
    out = pipeline(x, np.random.default_rng(0))
    np.testing.assert_allclose(out, (x[..., ::-1] - 0.5) / 0.5, rtol=1e-6)
