"""The data sets: MNIST, Fashion-MNIST, CIFAR-10, and a small MNIST bundled with minires.

Every data set holds all of its images in memory as one array:

    ds.images    uint8, N x C x H x W
    ds.labels    int64, N
    ds.classes   the class names, ds.classes[label]
    ds[i]        (float32 C x H x W image in [0, 1], int label)

Files live under a root folder: the ``root`` argument, else the environment
variable ``MINIRES_DATA``, else ``~/.cache/minires``.
"""
import functools
import os

import numpy

from minires.data.download import (
    CIFAR10_FILES, CIFAR10_MIRRORS, FASHION_MNIST_FILES, FASHION_MNIST_MIRRORS, MNIST_FILES, MNIST_MIRRORS,
    download as download_file, extract_tar, verify_file,
)
from minires.data.cifar import read_cifar_batches
from minires.data.idx import read_idx


def default_root():
    """``$MINIRES_DATA`` if set, else ``~/.cache/minires``."""
    return os.path.expanduser(os.environ.get("MINIRES_DATA") or os.path.join("~", ".cache", "minires"))


class ArrayDataset:
    """Images and labels held as two arrays; the base of every data set here."""

    classes = []

    def __init__(self, images, labels, classes=None):
        images, labels = numpy.asarray(images), numpy.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.astype(numpy.int64)
        if classes is not None:
            self.classes = list(classes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        """(float32 C x H x W image, int label); uint8 pixels are scaled to [0, 1]."""
        image = self.images[index].astype(numpy.float32)
        if self.images.dtype == numpy.uint8:
            image /= 255
        return image, int(self.labels[index])

    def __repr__(self):
        n, c, h, w = self.images.shape
        return f"{type(self).__name__}({n} images, {c}x{h}x{w}, {len(self.classes)} classes)"


def _resolve_root(root):
    return os.path.abspath(os.path.expanduser(os.fspath(root))) if root is not None else default_root()


def _is_file(dataset, path):
    """True when ``path`` is a file, False when nothing is there; a directory in its place is an error."""
    if os.path.isdir(path):
        raise FileNotFoundError(
            f"{dataset}: {path} is a directory, expected the file {os.path.basename(path)}; "
            "remove or rename that directory, then put the file there or rerun with --download (download=True)"
        )
    return os.path.isfile(path)


def _check_labels(labels, num_classes, path):
    """Raise ``ValueError`` naming ``path`` unless every label is an integer in 0 .. num_classes - 1."""
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: the labels are {labels.dtype.name} numbers, expected integer class indices")
    bad = numpy.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} of {len(labels)} labels are outside 0..{num_classes - 1} "
            f"(bad values range from {labels[bad].min()} to {labels[bad].max()}; the first, {labels[bad[0]]}, "
            f"is at index {bad[0]}): the file is corrupt or not a {num_classes}-class label file"
        )


def _check_counts(dataset, images, images_path, labels, labels_path):
    """Raise ``ValueError`` naming both files unless they are N x H x W images and N labels."""
    if images.ndim != 3:
        raise ValueError(f"{dataset}: {images_path} has shape {images.shape}, expected N x H x W images")
    if labels.ndim != 1:
        raise ValueError(f"{dataset}: {labels_path} has shape {labels.shape}, expected N labels")
    if len(images) != len(labels):
        raise ValueError(
            f"{dataset}: {images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "one of them is truncated or they come from different data sets"
        )


def _missing_file(dataset, filename, folder, how_by_hand):
    return FileNotFoundError(
        f"{dataset}: {filename} was not found in {folder}\n"
        f"Pass download=True to fetch it, or {how_by_hand}.\n"
        "(The root folder is the root= argument, else $MINIRES_DATA, else ~/.cache/minires.)"
    )


class MNIST(ArrayDataset):
    """MNIST handwritten digits: 60,000 training / 10,000 test images, 1 x 28 x 28.

    Files: ``root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
    (uncompressed copies without ``.gz`` are accepted too).
    """

    folder = "mnist"
    mirrors = MNIST_MIRRORS
    resources = MNIST_FILES
    classes = [str(d) for d in range(10)]

    def __init__(self, root=None, train=True, download=False):
        self.root = _resolve_root(root)
        self.train = train
        prefix = "train" if train else "t10k"
        images_path = self._file(f"{prefix}-images-idx3-ubyte.gz", download)
        labels_path = self._file(f"{prefix}-labels-idx1-ubyte.gz", download)
        images, labels = read_idx(images_path), read_idx(labels_path)
        _check_counts(type(self).__name__, images, images_path, labels, labels_path)
        _check_labels(labels, len(self.classes), labels_path)
        super().__init__(images[:, None], labels)

    def _file(self, name, download):
        """The path of ``name`` in this data set's folder, downloading it if asked."""
        folder = os.path.join(self.root, self.folder)
        path = os.path.join(folder, name)
        for candidate in (path, path[:-3]):   # foo.gz, or foo already gunzipped
            if _is_file(type(self).__name__, candidate):
                return candidate
        if not download:
            urls = " or ".join(m + name for m in self.mirrors)
            raise _missing_file(type(self).__name__, name, folder,
                                f"download it by hand from {urls} and put it at {path}")
        sha256, md5 = self.resources[name]
        return download_file([m + name for m in self.mirrors], path, sha256=sha256, md5=md5)


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): 60,000 / 10,000 clothing images, 1 x 28 x 28, in MNIST's format.

    Files: ``root/fashion-mnist/`` with MNIST's file names.
    """

    folder = "fashion-mnist"
    mirrors = FASHION_MNIST_MIRRORS
    resources = FASHION_MNIST_FILES
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class CIFAR10(ArrayDataset):
    """CIFAR-10: 50,000 training / 10,000 test colour images, 3 x 32 x 32, 10 classes.

    Files: ``root/cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``,
    the official *binary* version (``cifar-10-binary.tar.gz``). When they are
    missing, ``root/cifar-10-binary.tar.gz`` is extracted: downloaded first when
    ``download=True`` and it is absent, and always checked against its pinned
    checksum before extraction.
    """

    folder = "cifar-10-batches-bin"
    archive = "cifar-10-binary.tar.gz"
    mirrors = CIFAR10_MIRRORS
    resources = CIFAR10_FILES
    records_per_batch = 10000
    classes = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]

    def __init__(self, root=None, train=True, download=False):
        self.root = _resolve_root(root)
        self.train = train
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        folder = os.path.join(self.root, self.folder)
        paths = [os.path.join(folder, n) for n in names]
        missing = [p for p in paths if not _is_file("CIFAR10", p)]
        if missing:
            self._extract_archive(download, missing[0])
            missing = [p for p in paths if not _is_file("CIFAR10", p)]
            if missing:
                raise FileNotFoundError(
                    f"CIFAR10: {os.path.join(self.root, self.archive)} was extracted but {missing[0]} "
                    f"is still missing; the archive is not the official {self.archive}"
                )
        images, labels = read_cifar_batches(paths, self.records_per_batch)
        super().__init__(images, labels)

    def _extract_archive(self, download, missing):
        """Extract ``root/cifar-10-binary.tar.gz`` (downloading it if asked), after checking its checksum."""
        archive = os.path.join(self.root, self.archive)
        urls = " or ".join(m + self.archive for m in self.mirrors)
        sha256, md5 = self.resources[self.archive]
        if not _is_file("CIFAR10", archive):
            if not download:
                raise _missing_file("CIFAR10", os.path.basename(missing), os.path.dirname(missing),
                                    f"download {self.archive} by hand from {urls} and put it in "
                                    f"{self.root} (it is checked and extracted into {self.folder}/)")
            download_file([m + self.archive for m in self.mirrors], archive, sha256=sha256, md5=md5)
        verify_file(archive, sha256=sha256, md5=md5,
                    advice=f"Delete it and rerun with --download (download=True), "
                           f"or put the official {self.archive} from {urls} there.")
        extract_tar(archive, self.root)   # creates root/cifar-10-batches-bin/


# ------------------------------------------------------- the bundled sample

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_sample")
SAMPLE_TRAIN_SIZE = 8000


@functools.lru_cache(maxsize=1)
def _sample_arrays():
    images_path = os.path.join(SAMPLE_DIR, "t10k-images-idx3-ubyte.gz")
    labels_path = os.path.join(SAMPLE_DIR, "t10k-labels-idx1-ubyte.gz")
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check_counts("MNISTSample", images, images_path, labels, labels_path)
    _check_labels(labels, len(MNIST.classes), labels_path)
    images.setflags(write=False)   # shared between instances: never modified in place
    labels.setflags(write=False)
    return images, labels


class MNISTSample(ArrayDataset):
    """The real MNIST test set (10,000 images) shipped inside minires, so it works offline.

    It is split, once and for all, into 8,000 images for training and 2,000 held
    out: ``numpy.random.default_rng(0).permutation(10000)``, first 8,000 for
    ``train=True``, the last 2,000 for ``train=False``. ``.indices`` says which
    images of the original file each split holds. Good for quick experiments;
    it is not the official MNIST training set.
    """

    classes = MNIST.classes

    def __init__(self, train=True):
        images, labels = _sample_arrays()
        order = numpy.random.default_rng(0).permutation(len(labels))
        self.train = train
        self.indices = order[:SAMPLE_TRAIN_SIZE] if train else order[SAMPLE_TRAIN_SIZE:]
        super().__init__(images[self.indices][:, None], labels[self.indices])


# ------------------------------------------------------------- statistics

def mean_std(dataset):
    """Per-channel mean and standard deviation of a data set's pixels, on the [0, 1] scale.

    Returns two float32 arrays of length C, ready for ``Normalize(mean, std)``.
    For uint8 images it counts how often each of the 256 values occurs in each
    channel, so the result is exact and needs no float copy of the data.
    """
    images = dataset.images
    if images.dtype != numpy.uint8:
        x = images.astype(numpy.float64)
        return (x.mean(axis=(0, 2, 3)).astype(numpy.float32),
                x.std(axis=(0, 2, 3)).astype(numpy.float32))
    values = numpy.arange(256) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = numpy.bincount(images[:, c].ravel(), minlength=256)
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / n
        means.append(mean)
        stds.append(numpy.sqrt(var))
    return numpy.array(means, numpy.float32), numpy.array(stds, numpy.float32)
