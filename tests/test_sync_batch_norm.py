"""nn.SyncBatchNorm in one process: the conversion keeps everything, and in a world of one it is
batch norm. Its statistics over several ranks and its gradients are checked under MPI
(test_distributed.py: tests/mpi/sync_bn_gradcheck.py)."""
import numpy
import pytest

import minires
from minires import models, nn, optim
from minires.ops.sync_batch_norm import combined_statistics


def test_convert_sync_batchnorm_keeps_the_parameters_buffers_and_order():
    minires.manual_seed(0)
    model = models.build_model("resnet20", 3, 10)
    before_names = [name for name, _ in model.named_modules()]
    before = dict(model.named_tensors())
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert [name for name, _ in model.named_modules()] == before_names
    kinds = {type(m).__name__ for m in model.modules()}
    assert "SyncBatchNorm" in kinds and "BatchNorm2d" not in kinds
    after = dict(model.named_tensors())
    assert list(after) == list(before) and all(after[k] is before[k] for k in before)
    assert list(model.parameters()) == optimizer.param_groups[0]["params"]


def test_a_batch_norm_itself_is_returned_converted_with_its_mode():
    bn = nn.BatchNorm1d(4, eps=1e-3, momentum=0.2).eval()
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    assert isinstance(sync, nn.SyncBatchNorm) and not sync.training
    assert (sync.eps, sync.momentum, sync.weight, sync.running_var) == (1e-3, 0.2, bn.weight, bn.running_var)


@pytest.mark.parametrize("training", [True, False])
def test_in_a_world_of_one_it_is_batch_norm(training):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5)).astype(numpy.float32)
    plain, sync = nn.BatchNorm2d(3), nn.SyncBatchNorm(3)
    for m in (plain, sync):
        m.train(training)
    outputs = [m(minires.tensor(x)).data for m in (plain, sync)]
    numpy.testing.assert_array_equal(outputs[0], outputs[1])
    numpy.testing.assert_array_equal(plain.running_var.data, sync.running_var.data)
    assert int(sync.num_batches_tracked.data) == int(training)


def test_combined_statistics_of_one_rank_are_its_own():
    mean, var = numpy.array([1.0, -2.0]), numpy.array([0.5, 3.0])
    total, m2, v2 = combined_statistics(7, mean, var)
    assert total == 7
    numpy.testing.assert_allclose(m2, mean)
    numpy.testing.assert_allclose(v2, var)


def test_a_3d_input_is_refused_with_its_shape():
    with pytest.raises(ValueError, match=r"2-D or 4-D input, got shape \(2, 3, 4\)"):
        nn.SyncBatchNorm(3)(minires.tensor(numpy.zeros((2, 3, 4), numpy.float32)))


def test_setting_an_existing_child_keeps_its_place():
    seq = nn.Sequential(nn.ReLU(), nn.Identity(), nn.ReLU())
    seq.__setattr__("0", nn.Identity())
    assert [type(m).__name__ for m in seq] == ["Identity", "Identity", "ReLU"]
