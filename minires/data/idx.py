"""The IDX file format (MNIST, Fashion-MNIST), read into NumPy with every field checked.

An IDX file is a tiny header followed by raw numbers, all big-endian:

    bytes 0-1   zero
    byte  2     the element type (0x08 = uint8, 0x09 = int8, 0x0B = int16,
                0x0C = int32, 0x0D = float32, 0x0E = float64)
    byte  3     the number of dimensions, d
    4 * d bytes the size of each dimension, as unsigned 32-bit integers
    the rest    prod(sizes) elements, row-major

MNIST's image file is therefore ``00 00 08 03 | 10000 | 28 | 28 | pixels...``.
Files ending in ``.gz`` (or starting with the gzip signature) are decompressed first.
"""
import gzip
import os
import struct
import zlib

import numpy

# Element type code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: numpy.dtype("u1"),
    0x09: numpy.dtype("i1"),
    0x0B: numpy.dtype(">i2"),
    0x0C: numpy.dtype(">i4"),
    0x0D: numpy.dtype(">f4"),
    0x0E: numpy.dtype(">f8"),
}
_GZIP_SIGNATURE = b"\x1f\x8b"


def _read_bytes(path):
    """The file's bytes, gunzipped when it is a gzip file."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_SIGNATURE):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: the gzip stream is truncated or corrupt ({error})") from error


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a NumPy array in native byte order.

    Raises ``ValueError`` naming the file and the problem for a bad magic number,
    an unknown element type, or a length that does not match the header.
    """
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: only {len(data)} bytes, too short for an IDX header (4 bytes at least)")
    zero1, zero2, code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0:
        raise ValueError(
            f"{path}: bad magic number 0x{data[:4].hex()} (an IDX file starts with two zero bytes); "
            "not an IDX file, or a compressed file that was not recognised"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown element type code 0x{code:02X} in the magic number (known: {known})")
    if ndim == 0:
        raise ValueError(f"{path}: the header says 0 dimensions; an IDX file needs at least one")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise ValueError(
            f"{path}: truncated header: {ndim} dimensions need {header_bytes} header bytes, the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_bytes])
    dtype = IDX_DTYPES[code]
    expected = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
    found = len(data) - header_bytes
    if found < expected:
        raise ValueError(
            f"{path}: truncated: the header promises shape {shape} of {dtype.name} "
            f"({expected} data bytes) but only {found} data bytes follow"
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} unexpected bytes after the data: the header promises shape {shape} "
            f"of {dtype.name} ({expected} data bytes) but {found} follow"
        )
    array = numpy.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_bytes)
    # A writable copy in the machine's own byte order.
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = numpy.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(d.name for d in codes)}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = array.astype(IDX_DTYPES[code]).tobytes()
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)
