"""DistributedSampler and the DataLoader with a sampler, in one process: every rank's shard is
computed by giving the sampler its rank (the MPI test of the same is in test_distributed.py)."""
import numpy
import pytest

from minires import data
from minires.distributed import DistributedSampler


def shards(n, ranks, **kw):
    return [numpy.asarray(list(DistributedSampler(range(n), ranks, r, **kw))) for r in range(ranks)]


@pytest.mark.parametrize("n, ranks", [(10, 2), (11, 2), (10, 3), (7, 4), (3, 5), (1000, 8)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_padded_shards_are_equal_in_length_cover_the_data_and_repeat_only_the_padding(n, ranks, shuffle):
    parts = shards(n, ranks, shuffle=shuffle, seed=4)
    per_rank = -(-n // ranks)
    assert all(len(part) == per_rank for part in parts)
    everything = numpy.concatenate(parts)
    assert set(everything.tolist()) == set(range(n))  # covered
    assert len(everything) - len(set(everything.tolist())) == per_rank * ranks - n  # only the padding repeats


@pytest.mark.parametrize("n, ranks", [(10, 2), (11, 2), (10, 3), (1000, 8)])
def test_drop_last_shards_are_disjoint_equal_and_leave_out_fewer_than_the_ranks(n, ranks):
    parts = shards(n, ranks, drop_last=True, seed=1)
    everything = numpy.concatenate(parts)
    assert all(len(part) == n // ranks for part in parts)
    assert len(set(everything.tolist())) == len(everything)  # disjoint
    assert n - len(everything) == n % ranks


@pytest.mark.parametrize("n, ranks", [(10, 3), (2, 5), (1001, 8)])
def test_unpadded_shards_for_evaluation_hold_every_index_exactly_once(n, ranks):
    everything = numpy.concatenate(shards(n, ranks, shuffle=False, pad=False))
    assert sorted(everything.tolist()) == list(range(n))


def test_the_k_rank_batches_of_a_step_are_the_one_process_batch_of_k_times_the_size():
    n, ranks, batch = 200, 4, 8
    one = DistributedSampler(range(n), 1, 0, seed=3)
    order = numpy.asarray(list(one))
    parts = shards(n, ranks, seed=3)
    for step in range(n // (ranks * batch)):
        together = numpy.concatenate([part[step * batch:(step + 1) * batch] for part in parts])
        assert sorted(together.tolist()) == sorted(order[step * ranks * batch:(step + 1) * ranks * batch].tolist())


def test_the_order_changes_with_the_epoch_and_is_the_one_of_a_shuffling_loader():
    sampler = DistributedSampler(range(50), 1, 0, seed=9)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    dataset = data.ArrayDataset(numpy.arange(50, dtype=numpy.float32).reshape(50, 1, 1, 1),
                                numpy.arange(50) % 3, ["a", "b", "c"])
    plain = data.DataLoader(dataset, 50, shuffle=True, seed=9, prefetch=0)
    sampled = data.DataLoader(dataset, 50, sampler=DistributedSampler(dataset, 1, 0, seed=9), prefetch=0)
    for epoch in range(2):
        [(a, _)], [(b, _)] = list(plain), list(sampled)  # one batch each, epoch after epoch
        assert numpy.array_equal(a, b), f"epoch {epoch}"


def test_the_loader_sets_the_sampler_epoch_and_counts_its_batches():
    dataset = data.ArrayDataset(numpy.zeros((21, 1, 2, 2), numpy.float32), numpy.zeros(21, numpy.int64), ["x"])
    sampler = DistributedSampler(dataset, 2, 1, seed=0)
    loader = data.DataLoader(dataset, 4, sampler=sampler, prefetch=0)
    assert len(loader) == 3  # 11 indices: batches of 4, 4 and 3
    loader.set_epoch(5)
    assert sum(len(labels) for _, labels in loader) == 11
    assert sampler.epoch == 5


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="rank 2 is not in"):
        DistributedSampler(range(4), 2, 2)
    with pytest.raises(ValueError, match="cannot give each of 8 ranks"):
        DistributedSampler(range(4), 8, 0, drop_last=True)
    dataset = data.ArrayDataset(numpy.zeros((4, 1, 1, 1), numpy.float32), numpy.zeros(4, numpy.int64), ["x"])
    with pytest.raises(ValueError, match="shuffle=True and a sampler contradict"):
        data.DataLoader(dataset, 2, shuffle=True, sampler=DistributedSampler(dataset, 1, 0))
