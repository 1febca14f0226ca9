"""DenseNet for CIFAR (minires/models/densenet.py): the paper's parameter counts, shapes, the parts
(stem, blocks, head; every dense layer is cat([x, branch(x)])), a dense layer against reference loops
and gradcheck, and the memory-efficient variant: the same numbers as the plain one, less memory kept."""
import os
import subprocess
import sys

import numpy as np
import pytest
import reference

import minires
from minires.engine.checkpoint import graph_bytes
from minires.models.densenet import (
    DenseLayer, DenseNet, Transition, densenet40_k12, densenet_bc100_k12,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parameter_count(depth, k, bottleneck, compression, num_classes=10, in_channels=3):
    """Counted from the paper's description, layer by layer (convolutions have no bias; every batch norm
    has a scale and a shift per channel; the classifier has a bias)."""
    layers = (depth - 4) // (6 if bottleneck else 3)
    channels = 2 * k if bottleneck else 16
    total = in_channels * channels * 3 * 3  # the first convolution
    for block in range(3):
        for _ in range(layers):
            if bottleneck:  # BN, conv1x1 to 4k, BN, conv3x3 to k
                total += 2 * channels + channels * 4 * k + 2 * 4 * k + 4 * k * k * 3 * 3
            else:  # BN, conv3x3 to k
                total += 2 * channels + channels * k * 3 * 3
            channels += k
        if block < 2:  # transition: BN, conv1x1 to floor(compression * channels)
            compressed = int(compression * channels)
            total += 2 * channels + channels * compressed
            channels = compressed
    return total + 2 * channels + channels * num_classes + num_classes  # BN, fully connected


@pytest.mark.parametrize("make,depth,k,bottleneck,compression,paper_millions", [
    (densenet40_k12, 40, 12, False, 1.0, 1.0),
    (densenet_bc100_k12, 100, 12, True, 0.5, 0.8),
])
def test_parameter_counts_match_huang_et_al_2017(make, depth, k, bottleneck, compression, paper_millions):
    expected = parameter_count(depth, k, bottleneck, compression)
    count = make().num_parameters()
    print(f"{make.__name__}: {count:,} parameters (formula {expected:,}; the paper's Table 2: {paper_millions}M)")
    assert count == expected
    assert round(count / 1e6, 1) == paper_millions
    assert make(num_classes=100, in_channels=1).num_parameters() == parameter_count(
        depth, k, bottleneck, compression, num_classes=100, in_channels=1)


@pytest.mark.parametrize("make,shape", [
    (densenet40_k12, (2, 1, 28, 28)),  # MNIST
    (densenet40_k12, (2, 3, 32, 32)),  # CIFAR
    (densenet_bc100_k12, (2, 3, 32, 32)),
])
def test_images_map_to_logits_through_three_blocks(make, shape):
    minires.manual_seed(0)
    model = make(in_channels=shape[1])
    x = minires.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    logits = model(x)
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    side = shape[2]
    resolutions = []
    h = model.stem(x)
    for block in model.blocks:
        h = block(h)
        resolutions.append(h.shape[2])
    assert sorted(set(resolutions), reverse=True) == [side, side // 2, side // 4]


def small_model(bottleneck, memory_efficient=False, seed=0):
    """A DenseNet with two layers per block, in float64."""
    minires.manual_seed(seed)
    depth = 16 if bottleneck else 10
    return DenseNet(depth, growth_rate=3, bottleneck=bottleneck, compression=0.5 if bottleneck else 1.0,
                    memory_efficient=memory_efficient).double()


@pytest.mark.parametrize("bottleneck", [False, True], ids=["densenet", "densenet_bc"])
@pytest.mark.parametrize("memory_efficient", [False, True], ids=["plain", "memory_efficient"])
def test_the_parts_compose_and_every_dense_layer_concatenates_its_input_and_branch(bottleneck, memory_efficient):
    model = small_model(bottleneck, memory_efficient).eval()
    images = minires.tensor(np.random.default_rng(1).standard_normal((2, 3, 16, 16)))
    np.testing.assert_array_equal(model.head(model.blocks(model.stem(images))).numpy(), model(images).numpy())
    kinds = [type(block).__name__ for block in model.blocks]
    assert kinds == ["DenseLayer"] * 2 + ["Transition"] + ["DenseLayer"] * 2 + ["Transition"] + ["DenseLayer"] * 2
    x = model.stem(images)
    for block in model.blocks:
        y = block(x)
        if isinstance(block, DenseLayer):
            assert y.shape[1] == x.shape[1] + 3 == block.out_channels
            np.testing.assert_array_equal(y.numpy()[:, :x.shape[1]], x.numpy())  # the identity, carried
            np.testing.assert_array_equal(y.numpy()[:, x.shape[1]:], block.branch(x).numpy())
        x = y
    np.testing.assert_array_equal(model.head(x).numpy(), model(images).numpy())


def test_a_dense_layer_against_reference_loops():
    minires.manual_seed(0)
    layer = DenseLayer(3, 2).double()
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 4))
    normalized, _, _ = reference.batch_norm(x, None, None, layer.norm1.weight.numpy(), layer.norm1.bias.numpy(),
                                            training=True)
    new = reference.conv2d(reference.relu(normalized), layer.conv1.weight.numpy(), padding=1)
    np.testing.assert_allclose(layer(minires.tensor(x)).numpy(), np.concatenate([x, new], axis=1),
                               rtol=1e-12, atol=1e-12)


def test_a_transition_against_reference_loops():
    minires.manual_seed(0)
    transition = Transition(4, 2).double()
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 4))
    normalized, _, _ = reference.batch_norm(x, None, None, transition.norm.weight.numpy(),
                                            transition.norm.bias.numpy(), training=True)
    expected = reference.avg_pool2d(reference.conv2d(reference.relu(normalized), transition.conv.weight.numpy()), 2)
    np.testing.assert_allclose(transition(minires.tensor(x)).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bottleneck", [False, True], ids=["basic", "bottleneck"])
@pytest.mark.parametrize("memory_efficient", [False, True], ids=["plain", "memory_efficient"])
def test_gradcheck_one_dense_layer(bottleneck, memory_efficient):
    minires.manual_seed(0)
    layer = DenseLayer(3, 2, bottleneck, memory_efficient).double()
    x = minires.tensor(np.random.default_rng(3).standard_normal((2, 3, 4, 4)), requires_grad=True)
    result = minires.gradcheck(layer, [x], params=list(layer.parameters()))  # random upstream gradient
    assert result.passed and result.comparisons > 0


def test_memory_efficient_dense_layer_on_every_backend(backend):
    # the kernel path concatenates with minires.cat and checkpoints through our kernels (tiny: the emulator)
    rng = np.random.default_rng(9)
    x = backend.tensor(rng.standard_normal((2, 2, 3, 3)), requires_grad=True)
    upstream = backend.array(rng.standard_normal((2, 4, 3, 3)))
    results = []
    for memory_efficient in (False, True):
        minires.manual_seed(0)
        layer = DenseLayer(2, 2, memory_efficient=memory_efficient).double().to(backend.device)
        x.grad = None
        y = layer(x)
        y.backward(upstream)
        results.append([backend.numpy(a) for a in (y, x.grad, layer.conv1.weight.grad, layer.norm1.running_var)])
    for mine, theirs in zip(results[1], results[0]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-12)


def training_step(model, images, upstream):
    """Forward and backward with a random upstream gradient on the logits: logits, graph bytes, gradients."""
    model.zero_grad()
    logits = model(images)
    kept = graph_bytes(logits)
    logits.backward(upstream)
    return logits.numpy(), kept, {name: p.grad.numpy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("bottleneck", [False, True], ids=["densenet", "densenet_bc"])
def test_memory_efficient_gives_the_same_numbers_and_keeps_less(bottleneck):
    rng = np.random.default_rng(4)
    images = minires.tensor(rng.standard_normal((2, 3, 16, 16)))
    upstream = rng.standard_normal((2, 10))
    plain, efficient = small_model(bottleneck), small_model(bottleneck, memory_efficient=True)
    for step in range(2):  # the second step starts from the first one's running statistics
        logits, plain_bytes, plain_grads = training_step(plain, images, upstream)
        logits_efficient, efficient_bytes, efficient_grads = training_step(efficient, images, upstream)
        np.testing.assert_array_equal(logits_efficient, logits)
        for name, grad in plain_grads.items():
            np.testing.assert_allclose(efficient_grads[name], grad, rtol=1e-11, atol=1e-13, err_msg=name)
        assert all(np.abs(g).max() > 0 for g in plain_grads.values())
        print(f"step {step}: the graph keeps {plain_bytes:,} bytes, {efficient_bytes:,} memory-efficient")
        assert efficient_bytes < plain_bytes
    for (name, mine), (_, theirs) in zip(efficient.named_buffers(), plain.named_buffers()):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=name)  # moved once per step
    assert plain.blocks[0].norm1.num_batches_tracked.numpy() == 2


@pytest.mark.parametrize("bottleneck", [False, True], ids=["densenet", "densenet_bc"])
def test_memory_kept_grows_with_the_square_of_the_layers_per_block_and_linearly_when_memory_efficient(bottleneck):
    # With n layers per block the plain network keeps every concatenation and, per layer, batch norm's
    # and ReLU's outputs as wide as it: a quadratic in n. The memory-efficient one keeps one storage
    # per block, as wide as its last output, and per layer only maps of a fixed width: linear in n,
    # so its second difference over n = 1, 2, 3 is exactly zero.
    images = minires.tensor(np.random.default_rng(8).standard_normal((2, 3, 8, 8)).astype(np.float32))
    kept = {}
    for memory_efficient in (False, True):
        for n in (1, 2, 3):
            minires.manual_seed(0)
            depth = 4 + (6 if bottleneck else 3) * n
            model = DenseNet(depth, 4, bottleneck, 0.5 if bottleneck else 1.0, memory_efficient=memory_efficient)
            kept[memory_efficient, n] = graph_bytes(model(images))
    second_difference = {m: kept[m, 3] - 2 * kept[m, 2] + kept[m, 1] for m in (False, True)}
    print(kept)
    assert second_difference[False] > 0 and second_difference[True] == 0


@pytest.mark.parametrize("memory_efficient", [False, True], ids=["plain", "memory_efficient"])
def test_the_gradient_flow_hooks_see_every_dense_layers_input_and_gradient(memory_efficient):
    from minires.experiments.recipe import BlockWatch

    rng = np.random.default_rng(10)
    images = minires.tensor(rng.standard_normal((2, 3, 16, 16)))
    upstream = rng.standard_normal((2, 10))
    watched = {}
    for efficient in (False, memory_efficient):
        model = small_model(bottleneck=True, memory_efficient=efficient)
        with BlockWatch(model) as watch:
            model(images).backward(upstream)
        watched[efficient] = watch
    widths = [x.shape[1] for x in watched[memory_efficient].inputs]
    assert widths == [6, 9, 12, 6, 9, 12, 6, 9, 12]  # 2k, +k per dense layer, halved by each transition
    for mine, theirs in zip(watched[memory_efficient].grads, watched[False].grads):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-11, atol=1e-13)
    for mine, theirs in zip(watched[memory_efficient].inputs, watched[False].inputs):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_memory_efficient_concatenations_of_a_block_share_one_allocation():
    model = small_model(bottleneck=False, memory_efficient=True)
    images = minires.tensor(np.random.default_rng(5).standard_normal((2, 3, 16, 16)), requires_grad=True)
    outputs = []
    for l in (0, 1, 3, 4):
        model.blocks[l].register_forward_hook(lambda block, args, out: outputs.append(out.data))
    model(images)
    owners = [a.base for a in outputs]
    assert owners[0] is owners[1] and owners[2] is owners[3] and owners[1] is not owners[2]
    assert owners[0].shape[0] == model.blocks[1].out_channels  # as wide as the block's last output


def test_memory_efficient_storage_never_overwrites_an_output_still_in_use():
    # Two layers applied to the same input (or one layer applied twice) must not write into each other's
    # channels: the second finds the storage already filled past its input and starts a new one.
    minires.manual_seed(0)
    first, second, third = (DenseLayer(c, 2, memory_efficient=True, block_width=9).double() for c in (3, 5, 5))
    x = minires.tensor(np.random.default_rng(6).standard_normal((2, 3, 4, 4)), requires_grad=True)
    y = first(x)
    a = second(y)
    a_before = a.numpy().copy()
    b = third(y)  # same input as `second`
    np.testing.assert_array_equal(a.numpy(), a_before)
    assert a.data.base is y.data.base and b.data.base is not y.data.base
    again = second(y)
    np.testing.assert_array_equal(again.numpy(), a_before)
    np.testing.assert_array_equal(a.numpy(), a_before)


def test_memory_efficient_without_a_graph_concatenates_as_usual():
    model = small_model(bottleneck=True, memory_efficient=True).eval()
    reference_model = small_model(bottleneck=True).eval()
    images = minires.tensor(np.random.default_rng(7).standard_normal((2, 3, 16, 16)))
    with minires.no_grad():
        np.testing.assert_array_equal(model(images).numpy(), reference_model(images).numpy())


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="3n\\+4"):
        DenseNet(41)
    with pytest.raises(ValueError, match="6n\\+4"):
        DenseNet(43, bottleneck=True)  # 3n+4, but not 6n+4
    with pytest.raises(ValueError, match="compression must be in \\(0, 1\\]"):
        DenseNet(40, compression=1.5)
    with pytest.raises(ValueError, match="growth_rate must be a positive integer"):
        DenseNet(40, growth_rate=0)


def test_bench_memory_tiny_runs_every_model_in_its_own_process():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_memory.py"), "--tiny"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[2:]}
    assert set(rows) == {"resnet56", "densenet40_k12", "densenet_bc100_k12", "densenet40_k12_efficient",
                         "densenet_bc100_k12_efficient"}
    assert rows["resnet56"][3] == "1.00" and "batch 2" in out.stdout
    assert float(rows["densenet40_k12_efficient"][5]) < float(rows["densenet40_k12"][5])  # graph MB: exact counts
