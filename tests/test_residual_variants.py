"""The residual units of He et al. 2016 (minires/models/residual_variants.py) and the highway network
(minires/models/highway.py): each unit computes the formula of its docstring (checked against NumPy on
the unit's own parts), lambda^L really multiplies the gradient, parameter counts, gradients (gradcheck),
the parts every model exposes, and errors."""
import numpy as np
import pytest

import minires
from minires import nn
from minires.models import CifarResNet, cifar_resnet, highway_net, resnet20
from minires.models.residual_variants import ACTIVATIONS, SHORTCUT_KINDS, VariantBlock, VariantResNet

RNG = np.random.default_rng(0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def relu(a):
    return np.maximum(a, 0)


def batch_norm(a, bn):
    """Training-mode batch norm of a NumPy array with ``bn``'s gamma and beta (PyTorch's biased variance)."""
    mean = a.mean(axis=(0, 2, 3), keepdims=True)
    var = a.var(axis=(0, 2, 3), keepdims=True)
    gamma, beta = bn.weight.data.reshape(1, -1, 1, 1), bn.bias.data.reshape(1, -1, 1, 1)
    return (a - mean) / np.sqrt(var + bn.eps) * gamma + beta


def conv(a, layer):
    return minires.functional.conv2d(minires.tensor(a), layer.weight, layer.bias, layer.stride,
                                     layer.padding).data


def randomised(module):
    """Random BN gammas and betas (and gate biases near 0), so that no term of a formula hides behind a 1 or a 0."""
    for name, p in module.named_parameters():
        if name.endswith("bias") or "bn" in name:
            p.data = RNG.uniform(0.5, 1.5, p.shape) if name.endswith("weight") else RNG.uniform(-0.5, 0.5, p.shape)
    return module


def unit_by_numpy(block, x):
    """The docstring's formula for one unit with identity-shape input, in NumPy from the unit's weights."""
    a, kind = block.activation, block.kind
    if a == "full_preact":
        f = conv(relu(batch_norm(conv(relu(batch_norm(x, block.bn1)), block.conv1), block.bn2)), block.conv2)
    else:
        inner = relu(x) if a == "relu_only_preact" else x
        f = conv(relu(batch_norm(conv(inner, block.conv1), block.bn1)), block.conv2)
        if a != "bn_after_add":
            f = batch_norm(f, block.bn2)
            f = relu(f) if a == "relu_before_add" else f
    h = x.copy()
    if kind in ("constant_scaling", "constant_scaling_both"):
        h = 0.5 * h
        f = 0.5 * f if kind == "constant_scaling_both" else f
    elif kind in ("exclusive_gating", "shortcut_only_gating"):
        g = sigmoid(conv(x, block.gate.conv))
        h = (1 - g) * h
        f = g * f if kind == "exclusive_gating" else f
    elif kind == "conv1x1":
        h = batch_norm(conv(x, block.shortcut[0]), block.shortcut[1])
    out = f + h
    if a == "original":
        return relu(out)
    if a == "bn_after_add":
        return relu(batch_norm(out, block.bn2))
    return out


@pytest.mark.parametrize("kind,activation", [(k, "original") for k in SHORTCUT_KINDS if k != "dropout"]
                         + [("identity", a) for a in ACTIVATIONS if a != "original"])
def test_each_unit_computes_its_formula(kind, activation):
    block = randomised(VariantBlock(3, 3, 1, kind, activation, gate_bias=0.3)).double()
    x = RNG.standard_normal((2, 3, 5, 5))
    np.testing.assert_allclose(block(minires.tensor(x)).data, unit_by_numpy(block, x), rtol=1e-10, atol=1e-10)


def test_dropout_shortcut_zeroes_half_the_shortcut_in_training_and_is_the_identity_in_eval():
    block = VariantBlock(4, 4, 1, "dropout")
    x = minires.tensor(RNG.uniform(1, 2, (8, 4, 6, 6)).astype(np.float32))
    kept = block.shortcut(x).data
    assert 0.4 < (kept == 0).mean() < 0.6 and np.allclose(kept[kept != 0], 2 * x.data[kept != 0])
    block.eval()
    np.testing.assert_array_equal(block.shortcut(x).data, x.data)


@pytest.mark.parametrize("kind,factor", [("identity", 1.0), ("constant_scaling", 0.5)])
def test_with_the_branches_silenced_l_units_multiply_the_gradient_by_lambda_to_the_l(kind, factor):
    # Zero the last BN's gamma and beta of every branch: F = 0, and for x > 0 each unit is y = ReLU(lambda x),
    # so three units give dL/dx = lambda^3 dL/dy exactly: 1 for the identity, 1/8 for lambda = 0.5.
    model = VariantResNet(20, kind).double()
    units = nn.Sequential(*list(model.blocks)[:3])  # stage 1: no change of shape
    for unit in units:
        unit.bn2.weight.data[:] = 0
        unit.bn2.bias.data[:] = 0
    x = minires.tensor(RNG.uniform(0.5, 1.5, (2, 16, 6, 6)), requires_grad=True)
    upstream = RNG.standard_normal((2, 16, 6, 6))
    units(x).backward(minires.tensor(upstream))
    np.testing.assert_allclose(x.grad.data, factor ** 3 * upstream, rtol=1e-12)


@pytest.mark.parametrize("kind", SHORTCUT_KINDS)
@pytest.mark.parametrize("activation", ["original", "full_preact"])
def test_gradcheck_of_a_unit_that_changes_shape(kind, activation):
    minires.manual_seed(0)
    block = randomised(VariantBlock(2, 4, 2, kind, activation, gate_bias=0.2)).double()
    if kind == "dropout":
        block.eval()  # dropout must be deterministic for finite differences; training-mode zeros are tested above
    x = minires.tensor(RNG.standard_normal((2, 2, 4, 4)), requires_grad=True)
    result = minires.gradcheck(block, [x], params=list(block.parameters()))
    assert result.passed and result.comparisons > 0


def test_parameter_counts_against_the_cifar_resnet():
    base = resnet20().num_parameters()  # 269,722
    units = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    gates = sum(cin * cout + cout for cin, cout in units)  # a 1x1 conv with bias per unit
    projections = sum(cin * cout + 2 * cout for cin, cout in units)  # a 1x1 conv and a BN per unit
    counts = {kind: VariantResNet(20, kind).num_parameters() for kind in SHORTCUT_KINDS}
    assert counts == {"identity": base, "constant_scaling": base, "constant_scaling_both": base,
                      "exclusive_gating": base + gates, "shortcut_only_gating": base + gates,
                      "conv1x1": base + projections, "dropout": base}
    # full pre-activation: each unit's first BN sees its input's channels (16, not 32, where a stage widens
    # to 32; 32, not 64, where it widens to 64), and the head adds a BN of 64
    assert VariantResNet(20, activation="full_preact").num_parameters() == base - 2 * 16 - 2 * 32 + 2 * 64
    assert VariantResNet(20, activation="relu_only_preact").num_parameters() == base


def test_identity_original_is_exactly_the_cifar_resnet_with_option_a():
    assert type(cifar_resnet(20)) is CifarResNet
    reference, variant = CifarResNet(20, "A", 4), VariantResNet(20, width=4)
    variant.load_state_dict(reference.state_dict())  # the same names, the same shapes
    x = minires.tensor(RNG.standard_normal((2, 3, 8, 8)).astype(np.float32))
    np.testing.assert_allclose(variant(x).data, reference(x).data, rtol=1e-5, atol=1e-6)


def test_gates_start_nearly_closed_on_the_branch():
    model = cifar_resnet(20, shortcut_kind="exclusive_gating", width=4)
    block = model.blocks[0]
    assert np.all(block.gate.conv.bias.data == -6.0)
    g = block.gate(minires.tensor(np.zeros((1, 4, 3, 3), dtype=np.float32))).data
    np.testing.assert_allclose(g, 1 / (1 + np.exp(6.0)), rtol=1e-5)


@pytest.mark.parametrize("kind", SHORTCUT_KINDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_combination_has_the_three_parts_and_trains_a_step(kind, activation):
    model = cifar_resnet(8, shortcut_kind=kind, activation=activation, width=2, num_classes=3, in_channels=1)
    x = minires.tensor(RNG.standard_normal((2, 1, 8, 8)).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 3)
    model.eval()
    np.testing.assert_allclose(model.head(model.blocks(model.stem(x))).data, model(x).data, rtol=1e-6)
    model.train()
    minires.functional.cross_entropy(model(x), np.array([0, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(hasattr(block, "branch") and isinstance(block.shortcut, nn.Module) for block in model.blocks)


def test_errors_name_the_choices():
    with pytest.raises(ValueError, match="shortcut must be one of identity, constant_scaling"):
        VariantResNet(20, "scaled")
    with pytest.raises(ValueError, match="activation must be one of original"):
        VariantResNet(20, activation="post")
    with pytest.raises(ValueError, match="built on option A"):
        cifar_resnet(20, "B", shortcut_kind="dropout")
    with pytest.raises(ValueError, match="6n\\+2"):
        VariantResNet(21)


# ---- highway networks ---------------------------------------------------------------------------------------

def test_highway_block_computes_h_t_plus_x_one_minus_t():
    block = randomised(highway_net(8, width=3).blocks[0]).double()
    x = RNG.standard_normal((2, 3, 5, 5))
    H = relu(batch_norm(conv(relu(batch_norm(conv(x, block.conv1), block.bn1)), block.conv2), block.bn2))
    T = sigmoid(conv(x, block.gate.conv))
    np.testing.assert_allclose(block(minires.tensor(x)).data, H * T + x * (1 - T), rtol=1e-10, atol=1e-10)


def test_highway_gate_closed_carries_the_input_and_open_gives_the_transform():
    block = highway_net(8, width=3).blocks[0].double()
    x = minires.tensor(RNG.standard_normal((2, 3, 4, 4)))
    block.gate.conv.weight.data[:] = 0
    block.gate.conv.bias.data[:] = -800.0  # T = sigmoid(-800) = 0 in float64
    np.testing.assert_array_equal(block(x).data, x.data)
    block.gate.conv.bias.data[:] = 800.0  # T = 1
    np.testing.assert_allclose(block(x).data, block.branch(x).data, rtol=1e-14)


def test_highway_parameter_count_gate_bias_and_gradcheck():
    units = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    gates = sum(9 * cin * cout + cout for cin, cout in units)  # a 3x3 conv with bias per unit
    model = highway_net(20)
    assert model.num_parameters() == resnet20().num_parameters() + gates
    assert all(np.all(block.gate.conv.bias.data == -2.0) for block in model.blocks)
    block = randomised(highway_net(8, width=2).blocks[1]).double()  # 2 -> 4 channels, stride 2
    x = minires.tensor(RNG.standard_normal((2, 2, 4, 4)), requires_grad=True)
    result = minires.gradcheck(block, [x], params=list(block.parameters()))
    assert result.passed and result.comparisons > 0
