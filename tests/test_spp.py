"""Spatial pyramid pooling (nn.SpatialPyramidPool2d) and the SPP ResNet: output and gradient against a loop
reference on every backend, gradcheck, the fixed output length, one model for several image sizes, errors.
"""
import math

import numpy as np
import pytest

import minires
from minires import nn
from minires.models.cifar_resnet import CifarResNet
from minires.models.spp_resnet import SppResNet, spp_resnet, spp_resnet20

from backend_tools import assert_close, cases_on_backends, float32_exact

# (N, C, H, W, levels)
CASES = [
    (2, 3, 8, 8, (1, 2, 4)),   # the paper's kind of pyramid; every bin an even window
    (2, 2, 7, 9, (1, 2, 3)),   # uneven, overlapping bins, a non-square map
    (1, 2, 3, 5, (1, 2, 4)),   # level 4 is finer than the 3 rows: pixels repeat across bins
    (1, 2, 6, 6, (3, 1)),      # levels in any order: the output follows it
]


def case_id(case):
    return f"N{case[0]}-C{case[1]}-{case[2]}x{case[3]}-levels{''.join(map(str, case[4]))}"


def distinct_values(shape, seed=0):
    """Every value different (exact in float32): no bin has two equal maxima, gradcheck stays off the kinks."""
    n = int(np.prod(shape))
    return float32_exact((np.random.default_rng(seed).permutation(n) * 0.1 - 0.05 * n).reshape(shape))


def bins(length, count):
    """Bin i of ``count`` over ``length`` positions: [floor(i L / count), ceil((i + 1) L / count))."""
    return [(math.floor(i * length / count), math.ceil((i + 1) * length / count)) for i in range(count)]


def spp_reference(x, levels):
    """The pyramid by loops: for each level, each image, channel and bin, the max; laid out level after
    level, and within a level channel-major (c, i, j). Also returns where each output's max sits."""
    N, C, H, W = x.shape
    features, winners = [], []
    for n in range(N):
        row, row_winners = [], []
        for l in levels:
            for c in range(C):
                for h0, h1 in bins(H, l):
                    for w0, w1 in bins(W, l):
                        window = x[n, c, h0:h1, w0:w1]
                        a, b = np.unravel_index(np.argmax(window), window.shape)
                        row.append(window[a, b])
                        row_winners.append((n, c, h0 + a, w0 + b))
        features.append(row)
        winners.append(row_winners)
    return np.array(features), winners


def spp_backward_reference(x, levels, upstream):
    """Each output's gradient added to the pixel that won its bin (several outputs may share a pixel)."""
    _, winners = spp_reference(x, levels)
    grad_x = np.zeros(x.shape)
    for n, row in enumerate(winners):
        for k, where in enumerate(row):
            grad_x[where] += upstream[n, k]
    return grad_x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@cases_on_backends("case", CASES, emulated=CASES[2:3], ids=case_id)
def test_output_and_gradient_match_the_loop_reference(backend, case, dtype):
    levels = case[4]
    x = distinct_values(case[:4])
    expected, _ = spp_reference(x, levels)
    upstream = float32_exact(np.random.default_rng(1).standard_normal(expected.shape))
    tx = backend.tensor(x.astype(dtype), requires_grad=True)
    y = nn.SpatialPyramidPool2d(levels)(tx)
    y.backward(backend.array(upstream.astype(dtype)))
    assert y.shape == (case[0], case[1] * sum(l * l for l in levels)) and y.dtype == dtype
    assert_close(y, expected, dtype)
    assert_close(tx.grad, spp_backward_reference(x, levels, upstream), dtype, grad=True)


@cases_on_backends("case", CASES, emulated=CASES[2:3], ids=case_id)
def test_gradcheck(backend, case):
    x = backend.tensor(distinct_values(case[:4], seed=2), requires_grad=True)  # float64, distinct values
    backend.gradcheck(nn.SpatialPyramidPool2d(case[4]), [x])  # gradcheck draws a random upstream gradient


@pytest.mark.parametrize("size", [(4, 4), (13, 13), (32, 20)])
def test_the_output_length_does_not_depend_on_the_input_size(size):
    pool = nn.SpatialPyramidPool2d((1, 2, 4))
    y = pool(minires.tensor(distinct_values((2, 5) + size)))
    assert y.shape == (2, 5 * 21) == (2, pool.output_features(5))
    assert pool.bins == 21 and pool.levels == (1, 2, 4)


def test_level_one_is_the_global_max_of_each_channel():
    x = distinct_values((2, 3, 6, 5))
    y = nn.SpatialPyramidPool2d((1,))(minires.tensor(x)).numpy()
    np.testing.assert_array_equal(y, x.max(axis=(2, 3)))


def test_one_spp_resnet_classifies_images_of_several_sizes():
    model = spp_resnet20(num_classes=7, in_channels=3)
    model.eval()
    assert isinstance(model, CifarResNet) and isinstance(model.head[0], nn.SpatialPyramidPool2d)
    assert model.head[2].in_features == 64 * 21
    plain_head_model = CifarResNet(20, "A", 16, 7, 3)  # the same network with its usual head
    spp_head = 2 * 64 * 21 + (64 * 21 * 7 + 7)  # BatchNorm1d's gamma and beta, then the classifier
    assert model.num_parameters() == plain_head_model.num_parameters() - (64 * 7 + 7) + spp_head
    with minires.no_grad():
        for shape in [(2, 3, 32, 32), (2, 3, 48, 48), (1, 3, 40, 56)]:
            x = minires.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
            logits = model(x)
            assert logits.shape == (shape[0], 7) and np.isfinite(logits.numpy()).all()
            np.testing.assert_array_equal(logits.numpy(), model.head(model.blocks(model.stem(x))).numpy())


def test_the_depth_taking_builder_and_its_gradient_reach_every_parameter():
    model = spp_resnet(8, num_classes=3, in_channels=1, levels=(1, 2), width=4)
    assert isinstance(model, SppResNet) and model.depth == 8 and model.head[2].in_features == 16 * 5
    x = minires.tensor(np.random.default_rng(0).standard_normal((2, 1, 12, 10)).astype(np.float32))
    minires.functional.cross_entropy(model(x), np.array([0, 2])).backward()
    assert all(p.grad is not None and np.abs(p.grad.numpy()).sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("levels,error,message", [
    ((), ValueError, "levels is empty"),
    ((1, 0), ValueError, "got 0 in levels"),
    ((1, 2.5), ValueError, "got 2.5 in levels"),
    ((True,), ValueError, "must be a positive int"),
    (4, TypeError, "levels must be a sequence"),
])
def test_bad_levels_are_refused_with_what_to_give(levels, error, message):
    with pytest.raises(error, match=message):
        nn.SpatialPyramidPool2d(levels)
    with pytest.raises(error, match=message):
        spp_resnet20(levels=levels)


def test_input_that_is_not_a_batch_of_maps_is_refused():
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\) feature maps, got shape \(2, 8\)"):
        nn.SpatialPyramidPool2d()(minires.tensor(np.zeros((2, 8), np.float32)))


def test_the_resnet_recipe_does_not_blow_up_the_spp_head():
    # Without the BatchNorm1d after the pyramid, the second SGD step at lr 0.1 took this loss from 3 to 350.
    from minires import optim
    from minires.data import MNISTSample

    minires.manual_seed(0)
    model = spp_resnet20(num_classes=10, in_channels=1)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = MNISTSample(train=True).images[:32].astype(np.float32) / 255.0
    labels = MNISTSample(train=True).labels[:32]
    losses = []
    for _ in range(3):
        loss = minires.functional.cross_entropy(model(minires.tensor(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.data))
    assert max(losses) < 5.0, losses
