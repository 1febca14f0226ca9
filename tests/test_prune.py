"""Pruning (minires/prune): masks that keep pruned weights at zero through training, checkpoints
and resume; magnitude selection against a sort by hand; network slimming that removes exactly the
channels it says, keeps the function where it should, and gives a smaller model that loads."""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import models, nn, optim, prune
from minires.prune.masks import apply_mask
from minires.serialization import load_checkpoint, save_checkpoint


def small_resnet(seed=0, **kwargs):
    minires.manual_seed(seed)
    return models.CifarResNet(8, width=4, num_classes=5, **kwargs).double()


def batch(seed=1, n=4, size=8):
    rng = np.random.default_rng(seed)
    return minires.tensor(rng.standard_normal((n, 3, size, size))), rng.integers(0, 5, n)


def effective(module, name="weight"):
    return getattr(module, name).data


# ---- masks --------------------------------------------------------------------------------------

def test_a_mask_reparametrizes_with_pytorchs_keys_and_keeps_the_parameter_order():
    conv = nn.Conv2d(3, 4, 3, bias=True)
    weight = conv.weight
    order = [id(p) for p in conv.parameters()]
    mask = (np.random.default_rng(0).random(weight.shape) > 0.5).astype(np.float32)
    prune.custom_from_mask(conv, "weight", mask)
    assert list(conv.state_dict()) == ["weight_orig", "bias", "weight_mask"]
    assert conv.weight_orig is weight  # the same Parameter: an optimizer built before keeps working
    assert [id(p) for p in conv.parameters()] == order
    np.testing.assert_array_equal(conv.weight.data, weight.data * mask)
    assert prune.is_pruned(conv)


def test_the_mask_applies_in_forward_and_to_the_gradient():
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    mask = (rng.random(conv.weight.shape) > 0.4).astype(np.float64)
    plain = nn.Conv2d(3, 4, 3, padding=1).double()
    plain.weight.data = conv.weight.data * mask
    plain.bias.data = conv.bias.data.copy()
    prune.custom_from_mask(conv, "weight", mask)
    x = minires.tensor(rng.standard_normal((2, 3, 5, 5)))
    upstream = rng.standard_normal((2, 4, 5, 5))
    (conv(x) * minires.tensor(upstream)).sum().backward()
    (plain(x) * minires.tensor(upstream)).sum().backward()
    np.testing.assert_allclose(conv.weight.data, plain.weight.data)
    # d(w_orig * m)/d(w_orig) = m: the pruned entries get exactly 0, the others the plain gradient
    np.testing.assert_allclose(conv.weight_orig.grad.data, plain.weight.grad.data * mask, rtol=1e-12)
    assert np.all(conv.weight_orig.grad.data[mask == 0] == 0)


def test_pruned_weights_stay_zero_through_sgd_with_momentum_and_weight_decay():
    model = small_resnet()
    prune.magnitude_prune(model, 0.6)
    zero_before = {key: mask == 0 for key, mask in prune.masks(model).items()}
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, labels = batch()
    for _ in range(4):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    modules = dict(model.named_modules())
    for (prefix, name), zero in zero_before.items():
        assert np.all(effective(modules[prefix], name)[zero] == 0), prefix
    assert prune.sparsity(model) >= 0.6


def test_a_pruned_state_dict_loads_into_a_fresh_model_through_a_checkpoint(tmp_path):
    model = small_resnet()
    prune.magnitude_prune(model, 0.5, scope="layer")
    path = str(tmp_path / "pruned.npz")
    save_checkpoint(path, {"model": model.state_dict()})
    state = load_checkpoint(path)["model"]
    fresh = small_resnet(seed=7)
    prune.prepare_to_load(fresh, state)
    fresh.load_state_dict(state)
    x, _ = batch()
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(fresh(x).data, model(x).data)
    assert prune.masks(fresh).keys() == prune.masks(model).keys()


def test_a_pruned_state_dict_without_preparing_names_the_extra_keys():
    model = small_resnet()
    prune.magnitude_prune(model, 0.5)
    with pytest.raises(RuntimeError, match="weight_orig"):
        small_resnet().load_state_dict(model.state_dict())


def test_remove_makes_it_permanent():
    conv = nn.Conv2d(2, 3, 3)
    prune.l1_unstructured(conv, "weight", amount=0.5)
    pruned = conv.weight.data.copy()
    prune.remove(conv, "weight")
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert isinstance(conv.weight, nn.Parameter)
    np.testing.assert_array_equal(conv.weight.data, pruned)
    assert not prune.is_pruned(conv)
    with pytest.raises(ValueError, match="not pruned"):
        prune.remove(conv, "weight")


def test_bad_masks_are_refused():
    conv = nn.Conv2d(2, 3, 3)
    with pytest.raises(ValueError, match="shape"):
        prune.custom_from_mask(conv, "weight", np.ones((3, 2)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        prune.custom_from_mask(conv, "weight", np.full(conv.weight.shape, 0.5))
    with pytest.raises(ValueError, match="no parameter 'kernel'"):
        prune.custom_from_mask(conv, "kernel", np.ones(3))


# ---- magnitude ------------------------------------------------------------------------------------

def test_l1_unstructured_prunes_the_smallest_magnitudes_of_what_remains():
    rng = np.random.default_rng(3)
    linear = nn.Linear(10, 8)
    linear.weight.data = rng.permutation(80).reshape(8, 10).astype(np.float32) - 40  # distinct |w| but for +-k
    prune.l1_unstructured(linear, "weight", amount=0.25)
    magnitudes = np.abs(linear.weight_orig.data).ravel()
    by_hand = np.argsort(magnitudes, kind="stable")[:20]  # the 20 smallest |w|, ties by position
    np.testing.assert_array_equal(np.flatnonzero(linear.weight_mask.data.ravel() == 0), np.sort(by_hand))
    prune.l1_unstructured(linear, "weight", amount=0.5)  # half of the 60 that remain, as in PyTorch
    assert int((linear.weight_mask.data == 0).sum()) == 50
    prune.l1_unstructured(linear, "weight", amount=3)  # an int: a number of entries
    assert int((linear.weight_mask.data == 0).sum()) == 53


def test_global_pruning_uses_one_threshold_for_all_layers():
    model = small_resnet()
    prune.global_unstructured([(m, n) for _, m, n in prune.prunable_weights(model)], amount=0.7)
    kept, pruned = [], []
    for _, module, name in prune.prunable_weights(model):
        magnitude, mask = np.abs(module.weight_orig.data), module.weight_mask.data
        kept.append(magnitude[mask == 1]), pruned.append(magnitude[mask == 0])
    kept, pruned = np.concatenate(kept), np.concatenate(pruned)
    assert pruned.max() <= kept.min()
    assert len(pruned) == round(0.7 * (len(kept) + len(pruned)))
    per_layer = [float((m.weight_mask.data == 0).mean()) for _, m, _ in prune.prunable_weights(model)]
    assert max(per_layer) - min(per_layer) > 0.1  # layers lose different fractions


def test_magnitude_prune_reaches_its_target_in_every_layer_or_overall_and_masks_only_grow():
    model = small_resnet()
    prune.magnitude_prune(model, 0.3, scope="layer")
    for _, module, _ in prune.prunable_weights(model):
        assert abs(float((module.weight_mask.data == 0).mean()) - 0.3) <= 1 / module.weight_mask.data.size
    first = {key: mask.copy() for key, mask in prune.masks(model).items()}
    prune.magnitude_prune(model, 0.6)  # continue, globally
    assert abs(prune.sparsity(model) - 0.6) < 1e-3
    for key, mask in prune.masks(model).items():
        assert np.all(mask <= first[key])  # nothing pruned comes back
    with pytest.raises(ValueError, match="only grows"):
        prune.magnitude_prune(model, 0.5)


def test_the_iterative_schedule_prunes_the_same_fraction_of_what_remains_each_round():
    steps = prune.iterative_sparsities(0.875, 3)
    np.testing.assert_allclose(steps, [0.5, 0.75, 0.875])
    assert prune.iterative_sparsities(0.3, 1) == [0.3]


# ---- slimming --------------------------------------------------------------------------------------

def silence_every_other_channel(model):
    """gamma = 0 and beta <= 0 on the even channels of every slimmable BN: their ReLU output is 0."""
    rng = np.random.default_rng(5)
    for _, _, bn, _ in prune.internal_channel_groups(model):
        bn.weight.data[::2] = 0
        bn.bias.data[::2] = -np.abs(rng.standard_normal(bn.bias.data[::2].shape))
        bn.weight.data[1::2] = 0.5 + rng.random(bn.weight.data[1::2].shape)  # the kept ones are larger
        bn.running_mean.data[:] = rng.standard_normal(bn.running_mean.shape)
        bn.running_var.data[:] = 0.5 + rng.random(bn.running_var.shape)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("make", [lambda: small_resnet(),
                                  lambda: models.preact_resnet(11, bottleneck=True, width=4, num_classes=5).double(),
                                  lambda: models.resnet18(num_classes=5, small_input=True).double()],
                         ids=["cifar_basic", "preact_bottleneck", "imagenet_basic"])
def test_removing_channels_whose_gamma_is_zero_keeps_the_function_exactly(make, mode):
    model = make()
    silence_every_other_channel(model)
    getattr(model, mode)()
    x, _ = batch(size=16)
    before = model(x).data
    report = prune.slim(model, 0.5)
    assert report["channels"][1] == report["channels"][0] // 2
    for _, producer, bn, consumer in prune.internal_channel_groups(model):
        assert producer.weight.shape[0] == bn.num_features == consumer.weight.shape[1] == consumer.in_channels
        assert np.all(bn.weight.data != 0)  # exactly the silenced ones went
    getattr(model, mode)()
    np.testing.assert_allclose(model(x).data, before, rtol=1e-12, atol=1e-12)


def test_the_slimmed_model_has_the_computed_number_of_parameters():
    model = small_resnet()
    rng = np.random.default_rng(2)
    for _, _, bn, _ in prune.internal_channel_groups(model):
        bn.weight.data[:] = rng.random(bn.weight.shape)
    before = model.num_parameters()
    groups = prune.internal_channel_groups(model)
    old = [(p.weight.shape, c.weight.shape, bn.num_features) for _, p, bn, c in groups]
    report = prune.slim(model, 0.4)
    removed = 0
    for (name, _, _, _), (producer_shape, consumer_shape, width) in zip(groups, old):
        gone = width - report["layers"][name][1]
        c_in, kh, kw = producer_shape[1:]
        removed += gone * c_in * kh * kw  # the producer's filters
        removed += 2 * gone  # the BN's gamma and beta
        removed += gone * consumer_shape[0] * consumer_shape[2] * consumer_shape[3]  # the consumer's input slices
    assert model.num_parameters() == before - removed
    assert report["channels"][0] - report["channels"][1] == round(0.4 * report["channels"][0])
    assert removed > 0


def test_slimming_removes_the_smallest_gammas_over_the_whole_network_and_keeps_one_per_layer():
    model = small_resnet()
    groups = prune.internal_channel_groups(model)
    groups[0][2].weight.data[:] = 1e-3  # the whole first branch is weak: it keeps its strongest channel
    groups[0][2].weight.data[2] = 2e-3
    for _, _, bn, _ in groups[1:]:
        bn.weight.data[:] = np.linspace(0.1, 1.0, bn.num_features)
    gammas_before = np.concatenate([np.abs(bn.weight.data) for _, _, bn, _ in groups])
    report = prune.slim(model, 0.5)
    assert report["layers"][groups[0][0]] == [4, 1]
    np.testing.assert_array_equal(groups[0][2].weight.data, [2e-3])
    kept = np.concatenate([np.abs(bn.weight.data) for _, _, bn, _ in prune.internal_channel_groups(model)][1:])
    assert kept.min() >= report["threshold"]
    assert report["threshold"] == np.sort(gammas_before)[round(0.5 * len(gammas_before)) - 1]


def test_a_slimmed_model_saves_and_loads_as_an_ordinary_checkpoint(tmp_path):
    model = small_resnet()
    for _, _, bn, _ in prune.internal_channel_groups(model):
        bn.weight.data[:] = np.random.default_rng(0).random(bn.weight.shape)
    prune.slim(model, 0.5)
    path = str(tmp_path / "slim.npz")
    save_checkpoint(path, {"model": model.state_dict()})
    state = load_checkpoint(path)["model"]
    fresh = small_resnet(seed=3)
    prune.prepare_to_load(fresh, state)
    fresh.load_state_dict(state)
    x, _ = batch()
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(fresh(x).data, model(x).data)
    assert fresh.num_parameters() == model.num_parameters()


def test_models_without_branch_channels_cannot_be_slimmed():
    with pytest.raises(ValueError, match="network slimming cannot prune it"):
        prune.slim(models.densenet40_k12(num_classes=5), 0.3)


def test_the_l1_subgradient_is_added_to_the_slimmable_gammas_only():
    model = small_resnet()
    x, labels = batch()
    penalty, lr = 0.01, 0.1

    def step(with_penalty):
        twin = small_resnet()
        optimizer = optim.SGD(twin.parameters(), lr=lr)
        loss = F.cross_entropy(twin(x), labels)
        optimizer.zero_grad()
        loss.backward()
        if with_penalty:
            prune.add_bn_l1_subgradient_(twin, penalty)
        optimizer.step()
        return twin

    plain, penalised = step(False), step(True)
    slimmable = {name for name, _, _, _ in prune.internal_channel_groups(model)}
    for (name, a), (_, b) in zip(plain.named_parameters(), penalised.named_parameters()):
        bn_name = name.rsplit(".", 1)[0]
        if name.endswith("weight") and bn_name in slimmable:
            gamma = dict(model.named_parameters())[name].data  # the same initial gammas (seed 0)
            np.testing.assert_allclose(b.data - a.data, -lr * penalty * np.sign(gamma), atol=1e-15)
        else:
            np.testing.assert_array_equal(a.data, b.data)


# ---- every backend ----------------------------------------------------------------------------------

def test_a_masked_and_a_slimmed_model_agree_with_their_dense_twins_on_every_backend(backend):
    """On ``backend`` (the kernel path through the emulator, or a GPU): a masked model gives the logits of
    the dense model holding weight * mask, its weight_orig gets the dense gradient times the mask, and
    after SGD steps (the fused kernel on the kernel path) the pruned weights are still 0; a slimmed model
    whose removed channels had gamma = 0, beta < 0 gives the logits of the model before slimming."""
    from backend_tools import assert_close

    rng = np.random.default_rng(0)
    x = backend.tensor(rng.standard_normal((2, 3, 6, 6)))
    labels = rng.integers(0, 3, 2)

    def tiny(seed=0):
        minires.manual_seed(seed)
        return models.CifarResNet(8, width=2, num_classes=3).double()

    masked, dense = tiny(), tiny()
    prune.magnitude_prune(masked, 0.5)
    for (prefix, name), mask in prune.masks(masked).items():
        weight = dict(dense.named_modules())[prefix].weight
        weight.data = weight.data * mask
    logits = {}
    for name, model in (("masked", masked), ("dense", dense)):
        model.to(backend.device)
        logits[name] = model(x)
        F.cross_entropy(logits[name], labels).backward()
    assert_close(logits["masked"], backend.numpy(logits["dense"]), np.float64)
    stem_mask = backend.numpy(masked.stem[0].weight_mask.data)
    assert_close(masked.stem[0].weight_orig.grad, backend.numpy(dense.stem[0].weight.grad) * stem_mask,
                 np.float64, grad=True)
    optimizer = optim.SGD(masked.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    optimizer.step()  # with the gradients just computed: the fused SGD kernel on the kernel path
    with minires.no_grad():
        apply_mask(masked.stem[0], "weight")  # what the next forward does first
    assert np.all(backend.numpy(masked.stem[0].weight.data)[stem_mask == 0] == 0)
    assert not np.array_equal(backend.numpy(masked.stem[0].weight_orig.data), backend.numpy(dense.stem[0].weight.data))

    if backend.name == "emulated":
        return  # the slimmed model runs the same kernels as any model; on the emulator each costs seconds
    slimmed = tiny()
    silence_every_other_channel(slimmed)
    slimmed.to(backend.device).eval()
    before = backend.numpy(slimmed(x))
    prune.slim(slimmed, 0.5)
    assert_close(slimmed(x), before, np.float64)
