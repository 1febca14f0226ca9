"""Squeeze-and-Excitation (squeeze_excitation.py): the SE module against a NumPy computation and a gradcheck,
SE on the branch before the addition, parameter counts by formula (SE-ResNet-50: 28.1M in Hu et al. 2018),
and the models' output shapes."""
import numpy as np
import pytest

from backend_tools import assert_close, cases_on_backends
import minires
import minires.functional as F
from minires.models.cifar_resnet import BasicBlock, resnet20, resnet56
from minires.models.imagenet_resnet import Bottleneck
from minires.models.squeeze_excitation import (
    SEBasicBlock, SEBottleneck, SqueezeExcitation, se_resnet20, se_resnet50, se_resnet56,
)

RESNET50_PARAMETERS = 25_557_032  # torchvision's resnet50 (tests/test_imagenet_resnet.py)


def se_parameters(channels, reduction=16):
    """fc1: C -> C/r and fc2: C/r -> C, each with a bias; C/r is at least 1."""
    hidden = max(1, channels // reduction)
    return channels * hidden + hidden + hidden * channels + channels


def se_reference(x, w1, b1, w2, b2, g):
    """The SE module and the gradients of L = sum(g * y), worked by hand in float64.
    Returns y, dL/dx, [dL/dw1, dL/db1, dL/dw2, dL/db2] and fc1's pre-activation (to stay off ReLU's kink)."""
    height, width = x.shape[2:]
    z = x.mean(axis=(2, 3))  # squeeze: (N, C)
    a1 = z @ w1.T + b1
    r = np.maximum(a1, 0)
    a2 = r @ w2.T + b2
    s = 1 / (1 + np.exp(-a2))  # excitation: (N, C)
    y = x * s[:, :, None, None]  # scale
    # Backward, one step at a time: y = x s  ->  ds = sum_hw g x;  s = sigmoid(a2)  ->  da2 = ds s (1 - s);
    # a2 = r w2^T + b2  ->  dr = da2 w2;  r = relu(a1)  ->  da1 = dr [a1 > 0];  a1 = z w1^T + b1  ->  dz = da1 w1;
    # z = mean_hw x  ->  each pixel gets dz / (H W), on top of the direct g s.
    ds = (g * x).sum(axis=(2, 3))
    da2 = ds * s * (1 - s)
    dr = da2 @ w2
    da1 = dr * (a1 > 0)
    dz = da1 @ w1
    dx = g * s[:, :, None, None] + dz[:, :, None, None] / (height * width)
    return y, dx, [da1.T @ z, da1.sum(axis=0), da2.T @ r, da2.sum(axis=0)], a1


def se_module(channels, reduction, seed=0):
    """A float64 SE module whose fc1 pre-activations are well away from 0 for the test data."""
    minires.manual_seed(seed)
    return SqueezeExcitation(channels, reduction).double()


SHAPES = [(2, 8, 3, 3, 4), (3, 16, 4, 5, 16), (2, 32, 2, 2, 8)]  # N, C, H, W, reduction


def shape_id(shape):
    return "x".join(map(str, shape[:4])) + f"-r{shape[4]}"


@cases_on_backends("shape", SHAPES, emulated=SHAPES[:1], ids=shape_id)
def test_squeeze_excitation_matches_a_numpy_computation(backend, shape):
    n, c, h, w, reduction = shape
    se = se_module(c, reduction).to(backend.device)
    rng = np.random.default_rng(1)
    x_data, g = rng.standard_normal((n, c, h, w)) + 0.5, rng.standard_normal((n, c, h, w))
    parameters = [se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias]
    y_ref, dx_ref, dparams_ref, a1 = se_reference(x_data, *[backend.numpy(p) for p in parameters], g)
    assert np.abs(a1).min() > 1e-3  # no pre-activation at ReLU's kink
    x = backend.tensor(x_data, requires_grad=True)
    y = se(x)
    assert_close(y, y_ref, np.float64)
    y.backward(backend.array(g))
    assert_close(x.grad, dx_ref, np.float64, grad=True)
    for p, expected in zip(parameters, dparams_ref):
        assert_close(p.grad, expected, np.float64, grad=True)


@cases_on_backends("shape", SHAPES[:2], emulated=SHAPES[:1], ids=shape_id)
def test_squeeze_excitation_gradcheck(backend, shape):
    n, c, h, w, reduction = shape
    se = se_module(c, reduction).to(backend.device)
    rng = np.random.default_rng(2)
    x_data = rng.standard_normal((n, c, h, w)) + 0.5
    parameters = [se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias]
    a1 = se_reference(x_data, *[backend.numpy(p) for p in parameters], np.zeros_like(x_data))[3]
    assert np.abs(a1).min() > 1e-3  # central differences of eps = 1e-5 stay on one side of ReLU's kink
    # A random upstream gradient; on the (slow) emulator only the input's (the parameters' are compared above).
    x = backend.tensor(x_data, requires_grad=True)
    backend.gradcheck(se, [x], params=() if backend.uses_kernels else parameters)


def test_squeeze_excitation_matches_pytorch():
    torch = pytest.importorskip("torch")
    se = se_module(16, 4)
    rng = np.random.default_rng(3)
    x_data, g = rng.standard_normal((2, 16, 3, 3)) + 0.5, rng.standard_normal((2, 16, 3, 3))
    tx = torch.tensor(x_data, requires_grad=True)
    w1, b1, w2, b2 = (torch.tensor(p.numpy()) for p in (se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias))
    s = torch.sigmoid(torch.relu(tx.mean(dim=(2, 3)) @ w1.T + b1) @ w2.T + b2)
    expected = tx * s[:, :, None, None]
    expected.backward(torch.tensor(g))
    x = minires.tensor(x_data, requires_grad=True)
    y = se(x)
    y.backward(g)
    np.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-11, atol=1e-11)


def test_squeeze_excitation_shapes_and_bad_input():
    se = SqueezeExcitation(64)
    assert se.fc1.weight.shape == (4, 64) and se.fc2.weight.shape == (64, 4)
    assert SqueezeExcitation(8).fc1.weight.shape == (1, 8)  # the hidden width is at least 1
    assert se.num_parameters() == se_parameters(64)
    with pytest.raises(ValueError, match="channels must be a positive int"):
        SqueezeExcitation(0)
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        SqueezeExcitation(16, reduction=0)
    with pytest.raises(ValueError, match=r"expects \(N, 64, H, W\) input, got shape \(2, 32, 4, 4\)"):
        se(minires.tensor(np.zeros((2, 32, 4, 4), dtype=np.float32)))


# ---- SE in the blocks: on the branch, before the addition ------------------------------------------------------

@pytest.mark.parametrize("make,plain", [
    (lambda: SEBasicBlock(8, 16, stride=2, shortcut="A", reduction=4), BasicBlock),
    (lambda: SEBottleneck(32, 16, stride=2), Bottleneck),
], ids=["cifar_basic", "imagenet_bottleneck"])
def test_se_scales_the_branch_before_the_addition(make, plain):
    minires.manual_seed(0)
    block = make().eval()
    x = minires.tensor(np.random.default_rng(4).standard_normal((2, block.conv1.in_channels, 8, 8)).astype(np.float32))
    assert "se.fc1.weight" in block.state_dict()
    # Excitation of 0: the branch is switched off and only the shortcut is left, through the final ReLU.
    block.se.fc2.bias.data[...] = -1e3
    np.testing.assert_array_equal(block(x).numpy(), F.relu(block.shortcut(x)).numpy())
    assert np.all(block.branch(x).numpy() == 0)
    # Excitation of 1: exactly the block without SE.
    block.se.fc2.bias.data[...] = 1e3
    np.testing.assert_array_equal(block(x).numpy(), F.relu(plain.branch(block, x) + block.shortcut(x)).numpy())
    # In between, the block is relu(se(F(x)) + shortcut(x)).
    block.se.fc2.bias.data[...] = 0.3
    expected = F.relu(block.se(plain.branch(block, x)) + block.shortcut(x))
    np.testing.assert_allclose(block(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


# ---- the models ------------------------------------------------------------------------------------------------

def test_se_resnet50_count_is_resnet50_plus_se_and_rounds_to_the_papers_28_1_million():
    model = se_resnet50()
    count = model.num_parameters()
    print(f"SE-ResNet-50: {count:,} parameters")
    channels = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3  # each bottleneck's output width
    assert count == RESNET50_PARAMETERS + sum(se_parameters(c) for c in channels)
    assert round(count / 1e6, 1) == 28.1  # Hu et al. 2018, table 2
    keys = model.state_dict()
    assert keys["layer1.0.se.fc1.weight"].shape == (16, 256) and keys["layer4.2.se.fc2.bias"].shape == (2048,)
    assert len(model.blocks) == 16 and all(isinstance(block, SEBottleneck) for block in model.blocks)
    assert not any(key.split(".")[0] in ("stem", "blocks", "head") for key in keys)


@pytest.mark.parametrize("make,plain,n", [(se_resnet20, resnet20, 3), (se_resnet56, resnet56, 9)])
def test_se_cifar_resnet_count_is_the_resnets_plus_se(make, plain, n):
    channels = [16] * n + [32] * n + [64] * n
    model = make()
    assert model.num_parameters() == plain().num_parameters() + sum(se_parameters(c) for c in channels)
    assert len(model.blocks) == 3 * n and all(isinstance(block, SEBasicBlock) for block in model.blocks)


@pytest.mark.parametrize("make,shape,classes", [
    (se_resnet20, (2, 3, 32, 32), 10),
    (se_resnet56, (2, 3, 16, 16), 10),
    (se_resnet50, (2, 3, 64, 64), 1000),
], ids=["se_resnet20", "se_resnet56", "se_resnet50"])
def test_se_models_map_images_to_logits(make, shape, classes):
    minires.manual_seed(0)
    model = make()
    x = minires.tensor(np.random.default_rng(5).standard_normal(shape).astype(np.float32))
    if make is se_resnet50:
        model.eval()
    logits = model(x)
    assert logits.shape == (2, classes) and logits.dtype == np.float32
    np.testing.assert_array_equal(model.head(model.blocks(model.stem(x))).numpy(), logits.numpy())
    if make is se_resnet20:
        F.cross_entropy(logits, np.array([1, 2])).backward()
        assert all(p.grad is not None for p in model.parameters())
