"""minires.data.subsets: keep_classes, take_fraction and parse_classes.

Most tests use a hand-built data set of 30 images whose first pixel is the
image's index, so a subset says exactly which samples it took, in which order.
"""
import numpy as np
import pytest

from minires.data import ArrayDataset, MNISTSample
from minires.data.subsets import SUBSET_STREAM, keep_classes, parse_classes, take_fraction

NAMES = ["zero", "one", "two", "three", "four"]
COUNTS = [7, 3, 12, 8, 0]          # class 4 has no samples


def small_dataset(dtype=np.uint8):
    """30 images 1 x 2 x 2: pixel [0, 0] is the index, pixel [1, 1] the label; labels in a mixed order."""
    labels = np.random.default_rng(123).permutation(np.repeat(np.arange(5), COUNTS))
    images = np.zeros((30, 1, 2, 2), dtype=dtype)
    images[:, 0, 0, 0] = np.arange(30)
    images[:, 0, 1, 1] = labels
    images.setflags(write=False)    # like MNISTSample's shared arrays
    return ArrayDataset(images, labels, classes=NAMES)


def ids(dataset):
    """The original index of every sample of a subset of small_dataset()."""
    return dataset.images[:, 0, 0, 0].astype(np.int64)


# ---------------------------------------------------------------- keep_classes

def test_keep_classes_worked_by_hand():
    labels = np.array([2, 0, 1, 2, 1, 0])
    images = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
    sub = keep_classes(ArrayDataset(images, labels, classes=["a", "b", "c"]), [2, 0])
    np.testing.assert_array_equal(sub.images.ravel(), [0, 1, 3, 5])
    np.testing.assert_array_equal(sub.labels, [0, 1, 0, 1])      # 2 -> 0, 0 -> 1
    assert sub.classes == ["c", "a"]


@pytest.mark.parametrize("classes", [[3, 1], [1, 3], [0, 1, 2, 3], [2], np.array([3, 0])])
def test_keep_classes_relabels_in_the_given_order(classes):
    ds = small_dataset()
    sub = keep_classes(ds, classes)
    chosen = np.asarray(classes)
    expected_ids = np.flatnonzero(np.any(ds.labels[:, None] == chosen[None, :], axis=1))
    np.testing.assert_array_equal(ids(sub), expected_ids)                  # original order kept
    np.testing.assert_array_equal(chosen[sub.labels], ds.labels[expected_ids])   # new label j is classes[j]
    np.testing.assert_array_equal(np.bincount(sub.labels, minlength=len(chosen)),
                                  np.asarray(COUNTS)[chosen])
    assert sub.classes == [NAMES[c] for c in chosen]
    assert sub.labels.dtype == np.int64
    np.testing.assert_array_equal(sub.images[:, 0, 1, 1], ds.labels[expected_ids])   # images travel with labels


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_subsets_keep_dtype_and_own_their_memory(dtype):
    ds = small_dataset(dtype)
    for sub in (keep_classes(ds, [3, 1]), take_fraction(ds, 0.5, seed=0), take_fraction(ds, 1, seed=0)):
        assert sub.images.dtype == dtype
        assert not np.shares_memory(sub.images, ds.images)
        assert not np.shares_memory(sub.labels, ds.labels)
        assert sub.images.flags.writeable           # the source is read-only; the copy is not
        sub.images[:] = 99
        assert ids(ds).max() == 29                   # the source is untouched


@pytest.mark.parametrize("classes, message", [
    ([], "empty"),
    ([1, 3, 1], r"\[1\] more than once"),
    ([5], r"class 5 is outside the valid range 0\.\.4"),
    ([0, -1], r"class -1 is outside the valid range 0\.\.4"),
    ([1.0], "must be ints"),
    (["2"], "must be ints"),
    ([True], "must be ints"),
    ("5-9", r"parse_classes\('5-9'\)"),
    (3, "sequence of ints"),
    ([2, 4], r"class 4 \('four'\) has no samples"),
])
def test_keep_classes_errors(classes, message):
    with pytest.raises(ValueError, match=message):
        keep_classes(small_dataset(), classes)


def test_keep_classes_needs_class_names():
    ds = ArrayDataset(np.zeros((3, 1, 1, 1)), [0, 1, 0])
    with pytest.raises(ValueError, match="no class names"):
        keep_classes(ds, [0])


# --------------------------------------------------------------- take_fraction

def reference_take_fraction(labels, fraction, seed):
    """Loop reference: in the seeded permutation, the first max(1, round(fraction * n)) of each class."""
    order = np.random.default_rng([seed, SUBSET_STREAM]).permutation(len(labels))
    chosen = []
    for c in np.unique(labels):
        in_class = [i for i in order if labels[i] == c]
        chosen += in_class[:max(1, round(fraction * len(in_class)))]
    return sorted(chosen)


@pytest.mark.parametrize("fraction, per_class", [
    (0.1, [1, 1, 1, 1, 0]),      # 0.7 -> 1; 0.3 rounds to 0, at least 1; 1.2 -> 1; 0.8 -> 1
    (0.3, [2, 1, 4, 2, 0]),      # 2.1, 0.9, 3.6, 2.4
    (0.5, [4, 2, 6, 4, 0]),      # 3.5 and 1.5 round to the even neighbour
    (1.0, COUNTS),
])
def test_take_fraction_counts_per_class(fraction, per_class):
    sub = take_fraction(small_dataset(), fraction, seed=3)
    np.testing.assert_array_equal(np.bincount(sub.labels, minlength=5), per_class)
    assert sub.classes == NAMES


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_take_fraction_against_the_loop_reference(fraction, seed):
    ds = small_dataset()
    sub = take_fraction(ds, fraction, seed)
    np.testing.assert_array_equal(ids(sub), reference_take_fraction(ds.labels, fraction, seed))
    np.testing.assert_array_equal(sub.labels, ds.labels[ids(sub)])
    np.testing.assert_array_equal(sub.images, ds.images[ids(sub)])


def test_take_fraction_one_returns_everything_in_order():
    ds = small_dataset()
    sub = take_fraction(ds, 1.0, seed=5)
    assert sub is not ds
    np.testing.assert_array_equal(sub.images, ds.images)
    np.testing.assert_array_equal(sub.labels, ds.labels)


def test_take_fraction_is_seeded():
    ds = small_dataset()
    np.testing.assert_array_equal(ids(take_fraction(ds, 0.5, seed=4)), ids(take_fraction(ds, 0.5, seed=4)))
    assert not np.array_equal(ids(take_fraction(ds, 0.5, seed=4)), ids(take_fraction(ds, 0.5, seed=5)))


def test_take_fraction_picks_every_sample_of_a_class_equally_often():
    ds = small_dataset()
    picked = np.zeros(30)
    seeds = 400
    for seed in range(seeds):
        picked[ids(take_fraction(ds, 0.5, seed))] += 1
    expected = (np.array([4, 2, 6, 4, 1]) / np.maximum(COUNTS, 1))[ds.labels]   # take / n of its class
    np.testing.assert_allclose(picked / seeds, expected, atol=0.12)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, float("nan"), float("inf"), "0.5", None, True])
def test_take_fraction_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match=r"fraction must be a (finite )?number in \(0, 1\]"):
        take_fraction(small_dataset(), fraction, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_take_fraction_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        take_fraction(small_dataset(), 0.5, seed)


# --------------------------------------------------------------- parse_classes

@pytest.mark.parametrize("text, classes", [
    ("5-9", [5, 6, 7, 8, 9]),
    ("0,2,4", [0, 2, 4]),
    ("1-3,7", [1, 2, 3, 7]),
    (" 1 - 3 , 7 ", [1, 2, 3, 7]),
    ("4", [4]),
    ("0-0", [0]),
    ("7,3", [7, 3]),             # order kept: it is keep_classes's relabelling order
])
def test_parse_classes(text, classes):
    assert parse_classes(text) == classes


@pytest.mark.parametrize("text", ["", "  ", "9-5", "a", "five", "1,,2", "1-", "-1", "1-3-5", "1.5", "1;2", ",",
                                  "1,1", "1-3,2"])
def test_parse_classes_errors_say_the_accepted_forms(text):
    with pytest.raises(ValueError, match="'a-b'") as info:
        parse_classes(text)
    assert "\n" not in str(info.value) and "'0,2,4'" in str(info.value)


def test_parse_classes_names_the_backwards_range():
    with pytest.raises(ValueError, match="'9-5' .* runs backwards"):
        parse_classes("9-5")


def test_parse_classes_wants_a_string():
    with pytest.raises(TypeError, match="string"):
        parse_classes([5, 6])


# ----------------------------------------------------------- the real MNIST sample

def test_mnist_sample_transfer_split():
    ds = MNISTSample(train=True)
    digit_counts = np.bincount(ds.labels, minlength=10)[5:]
    five = keep_classes(ds, parse_classes("5-9"))
    assert five.classes == ["5", "6", "7", "8", "9"]
    np.testing.assert_array_equal(np.bincount(five.labels, minlength=5), digit_counts)
    sub = take_fraction(five, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(sub.labels, minlength=5), [round(0.1 * n) for n in digit_counts])
    assert sub.images.dtype == np.uint8 and sub.images.shape[1:] == (1, 28, 28)
