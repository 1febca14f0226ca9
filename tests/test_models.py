"""The model zoo: parameter counts from the papers, output shapes, the shortcut options,
and the parts every model exposes (stem, blocks, head; each block's branch and shortcut)."""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import nn
from minires.models import (
    BasicBlock, build_model, cifar_resnet, mnist_resnet, plain_net, preact_resnet, preact_resnet164, resnet20,
    resnet32, resnet44, resnet56, resnet110, wide_resnet,
)


@pytest.mark.parametrize("make,paper_millions", [
    (resnet20, 0.27), (resnet32, 0.46), (resnet44, 0.66), (resnet56, 0.85), (resnet110, 1.7),
])
def test_cifar_resnet_parameter_counts_match_he_et_al_2015(make, paper_millions):
    # Table 6 of the paper gives the counts rounded to two digits (option A: no shortcut parameters).
    count = make().num_parameters()
    assert round(count / 1e6, 2 if paper_millions < 1 else 1) == paper_millions


def test_resnet20_exact_count_and_options():
    assert resnet20().num_parameters() == 269_722
    # B adds 1x1 projections (+BN) only at the two stage transitions; C adds them everywhere.
    assert cifar_resnet(20, "B").num_parameters() == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)
    assert cifar_resnet(20, "C").num_parameters() > cifar_resnet(20, "B").num_parameters()
    assert plain_net(20).num_parameters() == 269_722  # option A's shortcuts have no parameters


@pytest.mark.parametrize("make,paper_millions", [
    (preact_resnet164, 1.7), (lambda: wide_resnet(16, 4), 2.7), (lambda: wide_resnet(28, 10), 36.5),
])
def test_preact_and_wide_resnet_parameter_counts(make, paper_millions):
    assert round(make().num_parameters() / 1e6, 1) == paper_millions


def test_plain_net_has_no_shortcuts_and_resnet_has_them():
    assert all(block.shortcut is None for block in plain_net(20).blocks)
    kinds = [type(block.shortcut).__name__ for block in resnet20().blocks]
    assert kinds.count("ZeroPadShortcut") == 2 and kinds.count("Identity") == 7


@pytest.mark.parametrize("model,shape", [
    (resnet20(), (2, 3, 32, 32)),
    (cifar_resnet(8, "B", width=8), (2, 3, 32, 32)),
    (preact_resnet(20), (2, 3, 32, 32)),
    (preact_resnet(11, bottleneck=True, width=4), (2, 3, 16, 16)),
    (wide_resnet(10, 1, dropout=0.3), (2, 3, 16, 16)),
    (mnist_resnet(), (2, 1, 28, 28)),
])
def test_models_map_images_to_ten_logits_and_backpropagate(model, shape):
    x = minires.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    minires.functional.cross_entropy(logits, np.array([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_depths_and_names_are_refused():
    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_resnet(21)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        cifar_resnet(20, "D")
    with pytest.raises(ValueError, match="6n\\+4"):
        wide_resnet(15, 2)
    with pytest.raises(ValueError, match="resnet20"):
        build_model("resnet21")


def test_residual_block_gradient_is_branch_plus_identity():
    # dL/dx = dL/dy (dF/dx + I) in a real block of the model zoo (before the final ReLU).
    minires.manual_seed(0)
    block = BasicBlock(4, 4, shortcut="A")
    for p in block.parameters():
        p.data = p.data.astype(np.float64)
    for b in block.buffers():
        b.data = b.data.astype(np.float64)
    rng = np.random.default_rng(1)
    x = minires.tensor(rng.standard_normal((2, 4, 5, 5)), requires_grad=True)
    g = rng.standard_normal((2, 4, 5, 5))
    (block.branch(x) + block.shortcut(x)).backward(g)
    total = x.grad.clone()
    x.grad = None
    block.branch(x).backward(g)
    np.testing.assert_allclose(total, x.grad + g, rtol=1e-12, atol=1e-12)


# ---- the parts: stem, blocks, head; branch and shortcut ------------------------------------------

PART_MODELS = {  # name: (builder, input channels)
    "resnet": (lambda: cifar_resnet(14, "A", width=4), 3),
    "resnet_b": (lambda: cifar_resnet(8, "B", width=4), 3),
    "plain": (lambda: plain_net(14, width=4), 3),
    "preact": (lambda: preact_resnet(14, width=4), 3),
    "preact_bottleneck": (lambda: preact_resnet(11, bottleneck=True, width=4), 3),
    "wide": (lambda: wide_resnet(10, 1), 3),
    "mnist": (lambda: mnist_resnet(width=4), 1),
}


def model_and_images(name):
    minires.manual_seed(0)
    make, channels = PART_MODELS[name]
    images = np.random.default_rng(0).standard_normal((2, channels, 16, 16)).astype(np.float32)
    return make().eval(), minires.tensor(images)


@pytest.mark.parametrize("name", sorted(PART_MODELS))
def test_forward_is_head_of_blocks_of_stem(name):
    model, x = model_and_images(name)
    walked = model.stem(x)
    for block in model.blocks:
        walked = block(walked)
    np.testing.assert_array_equal(model.head(walked).numpy(), model(x).numpy())
    np.testing.assert_array_equal(model.head(model.blocks(model.stem(x))).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", sorted(PART_MODELS))
def test_every_block_is_its_branch_plus_its_shortcut(name):
    model, images = model_and_images(name)
    post = F.relu if isinstance(model.blocks[0], BasicBlock) else (lambda z: z)  # pre-activation: nothing after
    x = model.stem(images)
    for block in model.blocks:
        y = block(x).numpy()
        summed = block.branch(x) if block.shortcut is None else block.branch(x) + block.shortcut(x)
        np.testing.assert_allclose(post(summed).numpy(), y, rtol=1e-6, atol=1e-6)
        x = block(x)


def test_a_block_can_be_replaced_in_place_and_keeps_its_position():
    model = resnet20().eval()
    x = minires.tensor(np.abs(np.random.default_rng(1).standard_normal((2, 3, 8, 8))).astype(np.float32))
    original, before = model.blocks[4], model(x).numpy()
    model.blocks[4] = nn.Identity()
    assert isinstance(list(model.blocks)[4], nn.Identity) and len(model.blocks) == 9
    assert not any(name.startswith("blocks.4.") for name in model.state_dict())
    assert not np.array_equal(model(x).numpy(), before)
    model.blocks[4] = original
    np.testing.assert_array_equal(model(x).numpy(), before)
    with pytest.raises(IndexError, match="out of range for a Sequential of 9 modules"):
        model.blocks[9] = nn.Identity()
    with pytest.raises(TypeError, match="Sequential holds Modules"):
        model.blocks[0] = lambda t: t


def test_state_dict_keys_name_the_parts():
    keys = list(resnet20().state_dict())
    assert keys[0] == "stem.0.weight" and keys[-2:] == ["head.1.weight", "head.1.bias"]
    assert "blocks.8.conv2.weight" in keys
    preact = list(preact_resnet(20).state_dict())
    assert preact[0] == "stem.weight" and "blocks.3.projection.weight" in preact and "head.0.running_mean" in preact
