"""Downloading data files safely: mirrors, a progress bar, checksums, atomic rename.

``download`` never leaves a half-written file where a good one is expected:
bytes go to a temporary file next to the target, the checksum is verified, and
only then does ``os.replace`` move it into place (a single atomic step).
``verify_file`` checks a file that is already on disk the same way, and
``extract_tar`` turns a junk or truncated archive into a ``ValueError``.

The checksums of the files the data sets use are pinned below; each SHA-256
was cross-checked against several independent public listings that pair it
with the MD5 published by torchvision (MNIST, Fashion-MNIST) or by the
CIFAR-10 page. Both are verified.
"""
import gzip
import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from http.client import HTTPException

from tqdm import tqdm

# ---------------------------------------------------------------- pinned files
# name -> (sha256, md5) of the file as served (the .gz / .tar.gz itself).

MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
]
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                   "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                   "d53e105ee54ea40749a09fcbcd1e9432"),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                                  "9fb629c4189551a2d022fa330f9573f3"),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                                  "ec29112dd5afa0611ce80d1b7f02629c"),
}

FASHION_MNIST_MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                   "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                   "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                  "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                  "bb300cfdad3c16e7a12a480ee83cd310"),
}

CIFAR10_MIRRORS = [
    "https://www.cs.toronto.edu/~kriz/",
    "https://cave.cs.toronto.edu/kriz/",   # the same server's newer name
]
CIFAR10_FILES = {
    "cifar-10-binary.tar.gz": ("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                               "c32a1d4ab5d03f1284b67883e8d87530"),
}

_CHUNK = 1 << 20


def file_checksum(path, algorithm="sha256"):
    """The hex digest of a file (``algorithm``: any name ``hashlib.new`` knows)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path, sha256=None, md5=None, advice="Delete it and fetch it again."):
    """Check a file against its expected SHA-256 and/or MD5 before it is used; returns ``path``.

    A mismatch raises ``ValueError`` naming the file, the expected and the actual
    checksum, followed by ``advice`` (what to do about it).
    """
    path = os.fspath(path)
    expected = {a: v.lower() for a, v in (("sha256", sha256), ("md5", md5)) if v}
    if not expected:
        return path
    digests = {a: hashlib.new(a) for a in expected}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            for d in digests.values():
                d.update(chunk)
    wrong = [f"{a} is {digests[a].hexdigest()}, expected {v}" for a, v in expected.items()
             if digests[a].hexdigest() != v]
    if wrong:
        raise ValueError(f"{path} is corrupt or not the expected file: its " + "; ".join(wrong) + f". {advice}")
    return path


def _fetch(url, tmp_path, name, timeout):
    """Stream ``url`` into ``tmp_path``; returns the {algorithm: hex digest} of what was written."""
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5()}
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp_path, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                   disable=not (sys.stderr and sys.stderr.isatty()), leave=False)
        received = 0
        with bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                for d in digests.values():
                    d.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")
    return {algorithm: d.hexdigest() for algorithm, d in digests.items()}


def download(url_list, path, sha256=None, md5=None, timeout=60):
    """Download a file, trying each URL in ``url_list`` in turn, and verify it.

    The data is streamed to a temporary file in the target's folder; when its
    SHA-256 and/or MD5 match the expected values it is moved to ``path`` with
    ``os.replace``. A mirror that fails, or serves bytes with the wrong checksum,
    is skipped for the next. If none succeeds a ``RuntimeError`` says what was
    tried and how to fetch the file by hand; no partial file is left behind.
    Returns ``path``.
    """
    urls = [url_list] if isinstance(url_list, str) else list(url_list)
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    expected = {a: v.lower() for a, v in (("sha256", sha256), ("md5", md5)) if v}
    failures = []
    for url in urls:
        fd, tmp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        os.close(fd)
        try:
            got = _fetch(url, tmp_path, name, timeout)
            wrong = [f"{a} {got[a]} (expected {v})" for a, v in expected.items() if got[a] != v]
            if wrong:
                failures.append(f"{url}: checksum mismatch, got " + "; ".join(wrong))
                continue
            os.replace(tmp_path, path)
            return path
        except (OSError, ValueError, HTTPException) as error:   # URLError and HTTPError are OSErrors
            failures.append(f"{url}: {type(error).__name__}: {error}")
        finally:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    checks = ", ".join(f"{a} {v}" for a, v in expected.items()) or "none given"
    tried = "\n".join(f"  - {f}" for f in failures) or "  (no URLs were given)"
    raise RuntimeError(
        f"could not download {name} (expected checksum: {checks}).\n"
        f"URLs tried:\n{tried}\n"
        f"To fix it by hand, download {name} from one of those URLs yourself, check its checksum "
        f"(e.g. `sha256sum {name}`), and put it at {path}"
    )


# ------------------------------------------------------------- tar extraction

_HAS_FILTER = hasattr(tarfile, "data_filter")   # Python 3.12+, and 3.8.17+/3.9.17+/3.10.12+/3.11.4+


def _check_member(member, dest):
    """What ``filter="data"`` refuses, for Pythons without it: links, devices, paths outside ``dest``."""
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"{member.name!r} is a link or special file")
    target = os.path.realpath(os.path.join(dest, member.name))
    if os.path.isabs(member.name) or os.path.commonpath([dest, target]) != dest:
        raise ValueError(f"{member.name!r} would be written outside {dest}")


def extract_tar(archive, dest):
    """Extract a (possibly compressed) tar archive into ``dest`` and return ``dest``.

    Uses ``filter="data"`` so that a hostile archive cannot write outside
    ``dest``, create links or device files; on Pythons without extraction filters
    the same rules are checked by hand. An unsafe member raises ``ValueError``,
    and so does an archive that is truncated or not a tar archive at all.
    """
    archive = os.fspath(archive)
    dest = os.path.realpath(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            _extract_all(tar, archive, dest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise ValueError(
            f"{archive} is corrupt or not a tar archive ({type(error).__name__}: {error}); "
            "delete it and fetch it again"
        ) from error
    return dest


def _extract_all(tar, archive, dest):
    """Extract every member of an open ``tar``, refusing unsafe ones with ``ValueError``."""
    if _HAS_FILTER:
        try:
            tar.extractall(dest, filter="data")
        except tarfile.FilterError as error:
            raise ValueError(f"{archive}: refusing to extract an unsafe member: {error}") from error
    else:
        members = tar.getmembers()
        for member in members:
            try:
                _check_member(member, dest)
            except ValueError as error:
                raise ValueError(f"{archive}: refusing to extract an unsafe member: {error}") from None
        tar.extractall(dest, members=members)
