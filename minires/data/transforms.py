"""Batch transforms for data augmentation, vectorised over the whole batch.

Each transform is a callable ``t(batch, rng)``: ``batch`` is a float32 NumPy array
N x C x H x W and ``rng`` a ``numpy.random.Generator`` that supplies every random
choice, so a seeded generator gives the same augmentation every run. None of
them loops over the images in Python.

    augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
                       Normalize(mean, std)])
    x = augment(x, numpy.random.default_rng(0))
"""
import numpy
from numpy.lib.stride_tricks import sliding_window_view


def _check_batch(batch, who):
    batch = numpy.asarray(batch)
    if batch.ndim != 4:
        raise ValueError(f"{who} expects a batch N x C x H x W, got shape {batch.shape}")
    return batch


def _check_rng(rng, who):
    if not isinstance(rng, numpy.random.Generator):
        raise TypeError(f"{who} needs a numpy.random.Generator, e.g. numpy.random.default_rng(0); got {rng!r}")


class Normalize:
    """Per channel: ``(x - mean[c]) / std[c]``."""

    def __init__(self, mean, std):
        self.mean = numpy.asarray(mean, dtype=numpy.float32).reshape(-1)
        self.std = numpy.asarray(std, dtype=numpy.float32).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: {self.mean.size} means but {self.std.size} standard deviations")
        if numpy.any(self.std <= 0):
            raise ValueError(f"Normalize: every std must be positive, got {self.std.tolist()}")

    def __call__(self, batch, rng=None):
        batch = _check_batch(batch, "Normalize")
        if batch.shape[1] != self.mean.size:
            raise ValueError(f"Normalize has {self.mean.size} channel(s) but the batch has {batch.shape[1]}")
        shape = (1, -1, 1, 1)   # broadcast over N, H, W
        return ((batch - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(numpy.float32, copy=False)

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, independently."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, batch, rng):
        batch = _check_batch(batch, "RandomHorizontalFlip")
        _check_rng(rng, "RandomHorizontalFlip")
        flip = rng.random(len(batch)) < self.p          # one coin per image
        return numpy.where(flip[:, None, None, None], batch[..., ::-1], batch)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero-pad each side by ``padding``, then cut a random ``size`` window from each image.

    Every image gets its own offset. ``sliding_window_view`` presents the padded
    batch as all its windows at once (a view, nothing copied), shaped
    N x C x (rows of offsets) x (columns of offsets) x h x w; fancy indexing then
    picks window (top[i], left[i]) for image i.
    """

    def __init__(self, size, padding=4):
        self.size = (size, size) if numpy.isscalar(size) else tuple(size)
        self.padding = int(padding)
        if len(self.size) != 2 or min(self.size) < 1 or self.padding < 0:
            raise ValueError(f"RandomCrop: size must be positive (h, w) and padding >= 0, got {size}, {padding}")

    def __call__(self, batch, rng):
        batch = _check_batch(batch, "RandomCrop")
        _check_rng(rng, "RandomCrop")
        p, (h, w) = self.padding, self.size
        padded = numpy.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)))     # zeros
        n, _, hp, wp = padded.shape
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: a {h}x{w} crop does not fit in {hp}x{wp} (image plus padding)")
        top = rng.integers(0, hp - h + 1, size=n)
        left = rng.integers(0, wp - w + 1, size=n)
        windows = sliding_window_view(padded, (h, w), axis=(2, 3))    # N x C x offsets x offsets x h x w
        # Indices on axes 0, 2 and 3 around the slice on axis 1: NumPy puts the
        # indexed axis first, giving N x C x h x w.
        return windows[numpy.arange(n), :, top, left]

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class Compose:
    """Apply several transforms in order, sharing one generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, batch, rng=None):
        for t in self.transforms:
            batch = t(batch, rng)
        return batch

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"
