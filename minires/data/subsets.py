"""Subsets of a data set for transfer learning: keep some classes, keep a fraction of each class.

    pretrain = keep_classes(CIFAR10(train=True), [0, 1, 2, 3, 4])
    finetune = take_fraction(keep_classes(CIFAR10(train=True), parse_classes("5-9")), 0.1, seed=0)

**Why relabel.** A network trained on k classes ends in a classifier with k outputs,
and cross-entropy wants every target in 0 .. k-1: output j is "the j-th chosen
class". Kept as they were, the labels 5..9 would point past the end of a 5-way head.
So ``keep_classes`` renumbers the chosen classes 0 .. k-1 *in the order given*
(``[3, 1]``: 3 -> 0, 1 -> 1), and its ``.classes`` lists their names in that order,
so ``subset.classes[label]`` still names each image.

**Why stratified.** A plain random 10% of the images gives each class roughly, not
exactly, 10% of its images; a small class can come out with a handful or none, and
two seeds then differ in their class balance as well as in their images.
``take_fraction`` draws from every class on its own: ``round(fraction * n)`` of a
class's n images (Python's ``round``, halves to the even neighbour; at least 1),
so the subset keeps the full set's class proportions and an experiment that varies
the fraction changes how much data there is, not which classes dominate.

Both return a new ``ArrayDataset`` cut out with fancy indexing, which copies:
the subset's arrays are its own (writable, even when the source's are read-only),
its images keep their dtype, and its samples keep their original order.
"""
import collections
import math
import numbers
import re

import numpy

from minires.data.datasets import ArrayDataset

# take_fraction's random stream is default_rng([seed, SUBSET_STREAM]). The DataLoader
# draws epoch e's order from default_rng([seed, e]); a constant no epoch number reaches
# keeps the two streams apart when both are given the same seed.
SUBSET_STREAM = 1_000_015


# ------------------------------------------------------------------ keep_classes

def _check_class_list(classes, names):
    """``classes`` as a list of distinct Python ints in 0 .. len(names) - 1, else ``ValueError``."""
    if isinstance(classes, str):
        raise ValueError(f"classes is the string {classes!r}; pass a list of ints, "
                         f"e.g. parse_classes({classes!r}) turns the command-line form into one")
    try:
        classes = list(classes)
    except TypeError:
        raise ValueError(f"classes must be a sequence of ints such as [5, 6, 7], got {classes!r}") from None
    if not classes:
        raise ValueError("classes is empty: choose at least one class, e.g. [0, 1]")
    not_int = [c for c in classes if isinstance(c, bool) or not isinstance(c, numbers.Integral)]
    if not_int:
        raise ValueError(f"classes must be ints (class indices), got {not_int[0]!r} "
                         f"of type {type(not_int[0]).__name__} in {classes!r}")
    classes = [int(c) for c in classes]
    repeated = sorted(c for c, n in collections.Counter(classes).items() if n > 1)
    if repeated:
        raise ValueError(f"classes lists {repeated} more than once in {classes}; give each class once")
    if not names:
        raise ValueError("the data set has no class names (.classes is empty), so the valid classes are unknown; "
                         "build it as ArrayDataset(images, labels, classes=[...names...])")
    outside = [c for c in classes if not 0 <= c < len(names)]
    if outside:
        raise ValueError(f"class {outside[0]} is outside the valid range 0..{len(names) - 1} "
                         f"(this data set has {len(names)} classes)")
    return classes


def keep_classes(dataset, classes):
    """The samples whose label is in ``classes``, relabelled 0 .. k-1 in the order of ``classes``.

    dataset   an ``ArrayDataset`` (``.images``, ``.labels``, ``.classes``)
    classes   distinct class indices, e.g. ``[5, 6, 7, 8, 9]`` (5 becomes 0, ...)

    Returns a new ``ArrayDataset`` whose ``.classes`` are the chosen names in that
    order; the samples keep their original order.
    """
    names = list(dataset.classes)
    classes = _check_class_list(classes, names)
    labels = numpy.asarray(dataset.labels)
    counts = numpy.bincount(labels[(labels >= 0) & (labels < len(names))], minlength=len(names))
    empty = [c for c in classes if counts[c] == 0]
    if empty:
        raise ValueError(f"class {empty[0]} ({names[empty[0]]!r}) has no samples in this data set "
                         f"({len(labels)} samples); choose classes it holds")
    # new_label[old] is the position of class old in `classes`, -1 for a class not kept
    new_label = numpy.full(len(names), -1, dtype=numpy.int64)
    new_label[classes] = numpy.arange(len(classes))
    kept = numpy.flatnonzero(numpy.isin(labels, classes))   # ascending: original order
    return ArrayDataset(dataset.images[kept], new_label[labels[kept]], classes=[names[c] for c in classes])


# ----------------------------------------------------------------- take_fraction

def _check_fraction(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f"fraction must be a number in (0, 1], e.g. 0.1 for 10%, got {fraction!r}")
    fraction = float(fraction)
    if not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be a finite number in (0, 1] (0.1 keeps 10% of every class), "
                         f"got {fraction}")
    return fraction


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, e.g. 0, got {seed!r}")
    return int(seed)


def take_fraction(dataset, fraction, seed):
    """A seeded, stratified subset: ``round(fraction * n)`` (at least 1) of each class's n samples.

    dataset    an ``ArrayDataset``
    fraction   in (0, 1]; 1 keeps every sample
    seed       a non-negative int; the same seed picks the same samples

    The samples are picked by one permutation from
    ``numpy.random.default_rng([seed, SUBSET_STREAM])``: each class keeps the ones
    of its samples that come first in that order. The subset keeps the original
    order, labels and ``.classes``.
    """
    fraction, seed = _check_fraction(fraction), _check_seed(seed)
    labels = numpy.asarray(dataset.labels)
    present, counts = numpy.unique(labels, return_counts=True)
    take = numpy.maximum(1, numpy.round(fraction * counts)).astype(numpy.int64)   # per class present

    shuffled = numpy.random.default_rng([seed, SUBSET_STREAM]).permutation(len(labels))
    # A stable sort by label groups the samples class by class, each class in shuffled order.
    grouped = shuffled[numpy.argsort(labels[shuffled], kind="stable")]
    group = numpy.searchsorted(present, labels[grouped])             # which class each one is
    first = numpy.concatenate([[0], numpy.cumsum(counts)[:-1]])      # where each class's run starts
    rank = numpy.arange(len(grouped)) - first[group]                 # 0, 1, ... within its class
    chosen = numpy.sort(grouped[rank < take[group]])
    return ArrayDataset(dataset.images[chosen], labels[chosen], classes=list(dataset.classes))


# ----------------------------------------------------------------- parse_classes

_ITEM = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")
_FORMS = "write a range 'a-b' with a <= b (e.g. '5-9'), a comma-separated list (e.g. '0,2,4'), or both (e.g. '1-3,7')"


def parse_classes(text):
    """The command-line form of a class list: ``"5-9"`` -> [5..9], ``"0,2,4"``, ``"1-3,7"``."""
    if not isinstance(text, str):
        raise TypeError(f"parse_classes reads a string such as '5-9', got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"no classes given ({text!r} is empty): {_FORMS}")
    classes = []
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"cannot read the classes {text!r} (at {item.strip()!r}): {_FORMS}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low > high:
            raise ValueError(f"the range '{low}-{high}' in {text!r} runs backwards: {_FORMS}")
        classes.extend(range(low, high + 1))
    repeated = sorted(c for c, n in collections.Counter(classes).items() if n > 1)
    if repeated:
        raise ValueError(f"{text!r} names class {repeated[0]} more than once: {_FORMS}, each class once")
    return classes
