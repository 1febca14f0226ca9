"""CIFAR-10's binary batch files, read into NumPy with their sizes and labels checked.

Each file (``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``) is a
plain run of fixed-size records, with no header:

    1 byte       the label, 0..9
    1024 bytes   the red plane, 32 x 32, row-major
    1024 bytes   the green plane
    1024 bytes   the blue plane

so a record is 3073 bytes and the planes already sit in N x C x H x W order.
"""
import os

import numpy

CHANNELS, HEIGHT, WIDTH = 3, 32, 32
IMAGE_BYTES = CHANNELS * HEIGHT * WIDTH   # 3072
RECORD_BYTES = 1 + IMAGE_BYTES            # 3073
NUM_CLASSES = 10


def read_cifar_batch(path, num_records=None):
    """Read one CIFAR-10 binary batch file.

    Returns ``(images, labels)``: uint8 N x 3 x 32 x 32 and int64 N. When
    ``num_records`` is given the file must hold exactly that many records (the
    official files hold 10,000 each). Raises ``ValueError`` naming the file for a
    size that is not a whole number of records, a wrong count or a label >= 10.
    """
    path = os.fspath(path)
    raw = numpy.fromfile(path, dtype=numpy.uint8)
    size = raw.size
    if size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected {RECORD_BYTES}-byte CIFAR-10 records")
    if size % RECORD_BYTES != 0:
        whole, rest = divmod(size, RECORD_BYTES)
        raise ValueError(
            f"{path}: {size} bytes is not a whole number of {RECORD_BYTES}-byte records "
            f"({whole} records and {rest} bytes left over): the file is truncated or not a CIFAR-10 binary batch"
        )
    count = size // RECORD_BYTES
    if num_records is not None and count != num_records:
        raise ValueError(
            f"{path}: {size} bytes hold {count} records, expected {num_records} "
            f"({num_records * RECORD_BYTES} bytes): the file is truncated or from another data set"
        )
    records = raw.reshape(count, RECORD_BYTES)
    labels = records[:, 0].astype(numpy.int64)
    bad = numpy.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise ValueError(
            f"{path}: record {bad[0]} has label {labels[bad[0]]} ({bad.size} records have labels outside "
            f"0..{NUM_CLASSES - 1}, from {labels[bad].min()} to {labels[bad].max()}); "
            "not a CIFAR-10 batch (CIFAR-100's binary files have two label bytes)"
        )
    images = numpy.ascontiguousarray(records[:, 1:]).reshape(count, CHANNELS, HEIGHT, WIDTH)
    return images, labels


def read_cifar_batches(paths, num_records=None):
    """Read several batch files and concatenate them, in the order given."""
    parts = [read_cifar_batch(p, num_records) for p in paths]
    images = numpy.concatenate([p[0] for p in parts])
    labels = numpy.concatenate([p[1] for p in parts])
    return images, labels
