"""The data sets the training command and the experiments know by name, with their default recipes.

(Not to be confused with ``minires/data/datasets.py``, which defines the data set classes.)
"""
import numpy

from minires import data

# name -> (loader of (train, test) data sets, augment with pad-crop + flip?, default epochs)
DATASETS = {
    "mnist_sample": (lambda root, download: (data.MNISTSample(train=True), data.MNISTSample(train=False)), False, 6),
    "mnist": (lambda root, download: (data.MNIST(root, True, download), data.MNIST(root, False, download)), False, 10),
    "fashion_mnist": (lambda root, download: (data.FashionMNIST(root, True, download), data.FashionMNIST(root, False, download)), False, 20),
    "cifar10": (lambda root, download: (data.CIFAR10(root, True, download), data.CIFAR10(root, False, download)), True, 182),
}


def load_datasets(name, root=None, download=False):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name][0](root, download)


def prepare_datasets(config, datasets=None):
    """(train, validation or None, test) of a run: its data set (or the loaded ``datasets`` pair),
    with ``config["classes"]`` only (relabelled 0..k-1, in the test set too), ``config["train_fraction"]``
    of the training images (stratified, seeded), and the validation split taken from what remains."""
    train_set, test_set = datasets or load_datasets(config["dataset"], config["data_root"], config["download"])
    if config.get("classes"):
        train_set, test_set = (data.keep_classes(ds, config["classes"]) for ds in (train_set, test_set))
    if config.get("train_fraction", 1.0) < 1:
        train_set = data.take_fraction(train_set, config["train_fraction"], config["seed"])
    val_set = None
    if config["val_fraction"] > 0:
        train_set, val_set = split_off_validation(train_set, config["val_fraction"], config["seed"])
    return train_set, val_set, test_set


def split_off_validation(dataset, fraction, seed):
    """Split a training set into (train, validation) with a seeded permutation."""
    order = numpy.random.default_rng([seed, 12345]).permutation(len(dataset))
    n_val = int(round(fraction * len(dataset)))
    if not 0 < n_val < len(dataset):
        raise ValueError(f"--val-fraction {fraction} leaves no validation or no training data ({len(dataset)} samples)")
    val, train = order[:n_val], order[n_val:]
    make = lambda idx: data.ArrayDataset(dataset.images[idx], dataset.labels[idx], dataset.classes)  # noqa: E731
    return make(train), make(val)
