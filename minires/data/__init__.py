"""Data sets, file readers, downloading, batching and augmentation (NumPy only).

    from minires.data import MNISTSample, DataLoader, mean_std, Normalize

    train = MNISTSample(train=True)                  # bundled: works offline
    loader = DataLoader(train, batch_size=128, shuffle=True,
                        transform=Normalize(*mean_std(train)))
    for images, labels in loader:                    # float32 N x 1 x 28 x 28, int64 N
        ...

One idea per file:
    idx.py         the IDX format (MNIST, Fashion-MNIST)
    cifar.py       CIFAR-10's binary batch files
    download.py    mirrors, checksums, atomic downloads, safe tar extraction
    datasets.py    MNIST, FashionMNIST, CIFAR10, MNISTSample, mean_std
    subsets.py     keep_classes (relabelled 0..k-1), take_fraction (stratified), parse_classes
    loader.py      DataLoader: shuffled batches with a prefetch thread
    transforms.py  Normalize, RandomCrop, RandomHorizontalFlip, Compose
"""
from minires.data.idx import read_idx, write_idx
from minires.data.cifar import read_cifar_batch, read_cifar_batches
from minires.data.download import download, extract_tar, file_checksum
from minires.data.datasets import (
    ArrayDataset, MNIST, FashionMNIST, CIFAR10, MNISTSample, mean_std, default_root,
)
from minires.data.loader import DataLoader
from minires.data.subsets import keep_classes, parse_classes, take_fraction
from minires.data.transforms import Normalize, RandomCrop, RandomHorizontalFlip, Compose

__all__ = [
    "read_idx", "write_idx", "read_cifar_batch", "read_cifar_batches",
    "download", "extract_tar", "file_checksum",
    "ArrayDataset", "MNIST", "FashionMNIST", "CIFAR10", "MNISTSample", "mean_std", "default_root",
    "DataLoader", "keep_classes", "take_fraction", "parse_classes", "Normalize", "RandomCrop", "RandomHorizontalFlip", "Compose",
]
