"""Data-parallel training on real MPI ranks (``mpiexec -n 2``; skipped, saying why, without MPI).

What is checked, and against what:
* SyncBatchNorm's forward and running statistics against batch norm of both ranks' images put
  together, and its backward against central differences, float64 (NumPy and kernel paths);
* with SyncBatchNorm, 2 ranks x batch 32 against 1 process x batch 64 for several steps: equal to
  float64 rounding. Without it each rank normalises with its own 32 images, so the 2 ranks are
  checked instead against one process that accumulates the gradients of the same two 32-image
  batches, each normalised on its own (and shown to differ from 1 x 64);
* the collectives, the shards, a crashing rank, and ``train --distributed`` end to end.
"""
import json
import os
import time

import numpy
import pytest
from mpi_launch import json_result, launch, requires_mpi

import minires
from minires.backends.emulator import emulator_status
from minires.distributed.world import THREAD_VARIABLES
from minires.serialization import load_checkpoint

pytestmark = requires_mpi


def relative_difference(a, b, keys=None):
    """max over the arrays of max|a - b| / max|b|."""
    worst = 0.0
    for key in keys or a:
        x, y = numpy.asarray(a[key], numpy.float64), numpy.asarray(b[key], numpy.float64)
        worst = max(worst, float(numpy.abs(x - y).max() / max(numpy.abs(y).max(), 1e-30)))
    return worst


@pytest.mark.parametrize("path", ["numpy", "emulated"])
def test_sync_batch_norm_is_batch_norm_of_all_ranks_images_and_its_gradients_check(path):
    if path == "emulated" and not emulator_status()[0]:
        pytest.skip(emulator_status()[1])
    result = json_result(launch(2, "sync_bn_gradcheck.py", path))
    assert result["ranks"] == 2
    assert result["forward_error"] < 1e-12 and result["stats_error"] < 1e-12
    assert result["grad_x_error"] < 1e-6 and result["grad_param_error"] < 1e-6
    assert result["grad_x_scale"] > 0.1  # a gradient that is not zero everywhere


def gpus():
    """How many GPUs CuPy sees here (0 without a usable one)."""
    from minires.backends import cuda_status

    if not cuda_status()[0]:
        return 0
    import cupy

    return cupy.cuda.runtime.getDeviceCount()


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_collectives_sum_mean_broadcast_and_gather_across_buckets_and_dtypes_and_the_shards_cover(device):
    if device == "cuda" and not gpus():
        pytest.skip("no usable GPU: NCCL (with a GPU per rank) and the MPI-via-host fallback are not tested here")
    r = json_result(launch(2, "collectives_check.py", "--device", device))
    assert r["engine"] == ("mpi" if device == "cpu" else "nccl" if gpus() >= 2 else "mpi via host")
    assert r["buckets"] == 4  # tiny buckets: the call spans several, of three dtypes
    assert r["summed"][0] == [[3.0] * 4] * 3 and r["summed"][1] == (numpy.arange(30) * 3.0).tolist()
    assert r["summed"][2] == 11 and r["summed"][3] == [1.0] * 4  # int64 0-d; a strided view
    assert r["means"][0] == [[1.5] * 4] * 3 and r["means"][2] == [0.5] * 4
    assert r["broadcast"] == [[1.0] * 5, 1] and r["gathered"] == [[0.0, 0.0], [1.0, 10.0]]
    assert r["name"] == "chosen by rank 0"
    first, second = r["shards"]
    assert len(first) == len(second) == 51  # 101 images, padded to 102
    assert set(first) | set(second) == set(range(101)) and len(set(first) & set(second)) == 1


SHARE = """
import json, os
from minires import distributed
from minires.backends.cpu_threads import slab_threads
distributed.init()
distributed.share_cores()
if distributed.is_main():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(json.dumps({"threads": slab_threads(), "cores": cores,
                      "local": distributed.local_size()}))
"""


def test_the_ranks_of_one_machine_share_its_cores_unless_told_otherwise():
    free = json_result(launch(2, "-c", SHARE, env={name: None for name in THREAD_VARIABLES}))
    assert free["local"] == 2 and free["threads"] == max(1, free["cores"] // 2)
    told = json_result(launch(2, "-c", SHARE, env={"OMP_NUM_THREADS": "2"}))
    assert told["threads"] == min(2, told["cores"])  # the user's count (BLAS takes no more than the cores)


@pytest.fixture(scope="module")
def data_parallel_runs(tmp_path_factory):
    """Four steps of the MNIST ResNet in float64, run four ways (see data_parallel_steps.py)."""
    folder = tmp_path_factory.mktemp("data_parallel")
    runs = {"2x32 sync": (2, "--batch", "32", "--sync-bn"), "1x64": (0, "--batch", "64"),
            "2x32": (2, "--batch", "32"), "1 accumulating 2x32": (0, "--batch", "32", "--accumulate", "2")}
    models = {}
    for name, (ranks, *args) in runs.items():
        out = str(folder / f"{name.replace(' ', '_')}.npz")
        done = launch(ranks, "data_parallel_steps.py", *args, out)
        assert done.returncode == 0, done.stderr[-3000:]
        models[name] = minires.load(out)
    return models


def test_two_ranks_with_sync_bn_reproduce_one_process_with_twice_the_batch(data_parallel_runs):
    two, one = data_parallel_runs["2x32 sync"], data_parallel_runs["1x64"]
    assert sorted(two) == sorted(one)
    assert relative_difference(two, one) < 1e-12  # weights, and the running statistics too


def test_without_sync_bn_two_ranks_equal_one_process_accumulating_the_two_rank_batches(data_parallel_runs):
    two, accumulated = data_parallel_runs["2x32"], data_parallel_runs["1 accumulating 2x32"]
    weights = [key for key in two if "running" not in key and "num_batches" not in key]
    assert relative_difference(two, accumulated, weights) < 1e-12
    # ... and that is not what one process with batch 64 computes: the statistics differ
    assert relative_difference(two, data_parallel_runs["1x64"], weights) > 1e-3


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_within_seconds_and_is_named(how):
    start = time.perf_counter()
    done = launch(2, "crash.py", how, timeout=60)
    elapsed = time.perf_counter() - start
    assert done.returncode != 0 and "rank 0 was not stopped" not in done.stdout
    assert elapsed < 30, f"the job took {elapsed:.0f} s to end"
    if how == "raise":
        assert "error: rank 1 of 2 failed, so every rank stops: RuntimeError: the data of rank 1" in done.stderr
    else:
        assert "Killed (signal 9)" in done.stdout + done.stderr


# ---- python -m minires train --distributed --------------------------------------------------------

TINY = ("--train-fraction", "0.008", "--quiet")  # 64 images of the bundled MNIST sample: one step per epoch


def train(ranks, out, *flags, timeout=180):
    distributed_flags = ("--distributed",) if ranks else ()
    return launch(ranks, "-m", "minires", "train", *distributed_flags, *TINY, "--out", str(out), *flags,
                  timeout=timeout)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_train_on_two_ranks_with_sync_bn_matches_one_process_and_only_rank_0_prints_and_writes(tmp_path):
    two = train(2, tmp_path / "two", "--sync-bn", "--batch-size", "32", "--epochs", "2", "--lr", "0.1")
    one = train(0, tmp_path / "one", "--batch-size", "64", "--epochs", "2", "--lr", "0.1")
    assert two.returncode == 0 and one.returncode == 0, two.stderr[-3000:] + one.stderr[-3000:]
    lines = json_lines(two.stdout)
    assert lines[0] == {"distributed": {"world_size": 2, "batch_per_rank": 32, "global_batch": 64, "lr": 0.1,
                                        "warmup_epochs": 0, "lr_rule": "lr as given", "sync_bn": True,
                                        "all_reduce": "mpi"}}
    assert [row["epoch"] for row in lines[1:]] == [1, 2]  # printed once, by rank 0
    assert two.stderr.count("done: epoch 2") == 1
    assert sorted(os.listdir(tmp_path / "two")) == ["checkpoint.npz", "curves.png", "metrics.jsonl"]
    a, b = load_checkpoint(str(tmp_path / "two" / "checkpoint.npz")), load_checkpoint(str(tmp_path / "one" / "checkpoint.npz"))
    assert relative_difference(a["model"], b["model"]) < 1e-4  # float32: the sums are added in another order
    for row_two, row_one in zip(a["history"], b["history"]):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert row_two[key] == pytest.approx(row_one[key], rel=1e-3, abs=1e-3), key
    assert json.loads(a["config"])["world_size"] == 2


def test_train_scales_the_lr_resumes_on_as_many_ranks_and_refuses_another_number(tmp_path):
    out = tmp_path / "run"
    first = train(2, out, "--batch-size", "32", "--epochs", "6", "--stop-after", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    described = json_lines(first.stdout)[0]["distributed"]
    assert described["lr"] == pytest.approx(0.2) and described["warmup_epochs"] == 2
    assert described["lr_rule"] == "linear scaling rule (Goyal et al. 2017): lr 0.1 x 2 ranks = 0.2, warm-up 2 epochs"
    checkpoint = str(out / "checkpoint.npz")
    alone = launch(0, "-m", "minires", "train", "--resume", checkpoint, "--quiet")
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines() == [(
        f"error: the run of {checkpoint} was trained on 2 processes and this is 1: its data shards, global batch "
        f"and lr depend on that number, so resume it with mpiexec -n 2 python -m minires train --distributed "
        f"--resume {checkpoint}")]
    resumed = launch(2, "-m", "minires", "train", "--distributed", "--resume", checkpoint, "--stop-after", "2",
                     "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json_lines(resumed.stdout)[0]["distributed"] == described  # the lr chosen when the run started
    history = load_checkpoint(checkpoint)["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["lr"] for row in history] == pytest.approx([0.1, 0.2, 0.2])  # from the one-process lr, up to 2 x


def test_command_line_mistakes_on_several_ranks_are_one_line_from_rank_0(tmp_path):
    alone = launch(2, "-m", "minires", "train", *TINY, "--out", str(tmp_path / "a"))
    assert alone.returncode != 0
    assert alone.stderr.strip().splitlines() == [(
        "error: this is one of 2 processes started by an MPI launcher, without --distributed: each would train "
        "alone, into the same folder. Add --distributed, or run one process")]
    sync_alone = launch(0, "-m", "minires", "train", "--sync-bn", "--quiet")
    assert sync_alone.returncode == 2 and sync_alone.stderr.startswith("error: --sync-bn shares batch-norm")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    taken = train(2, tmp_path / "b", timeout=60)
    assert taken.returncode != 0
    assert "error: rank 0 of 2 failed, so every rank stops: ValueError: --out" in taken.stderr
    assert "already holds a run" in taken.stderr and "Traceback" not in taken.stderr
    diverged = train(2, tmp_path / "c", "--lr", "1e8", "--epochs", "2")
    assert diverged.returncode == 1  # as a diverged run of one process
    assert "error: rank 0 of 2 failed, so every rank stops: TrainingDiverged: after epoch 1" in diverged.stderr
