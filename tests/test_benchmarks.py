"""The benchmark scripts run end to end on tiny batches (their numbers are not checked: speed
lives in the benchmarks, not in timed tests), and print the tables their docstrings promise."""
import os
import subprocess
import sys

from mpi_launch import requires_mpi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_train_runs_the_workers_in_lockstep_with_a_baseline_and_a_profile():
    text = run("bench_train.py", "--models", "resnet20", "--batch", "2", "--steps", "2", "--profile",
               "--baseline", ROOT)
    assert "resnet20 training step, batch 2" in text
    rows = {line.split()[0] for line in text.splitlines() if line.split()}
    assert {"minires", "baseline"} <= rows
    assert f"baseline: the minires in {os.path.join(ROOT, 'minires')}" in text
    assert "Conv2dFunction backward" in text and "autograd, Python, the rest" in text


def test_bench_train_inference_mode():
    text = run("bench_train.py", "--models", "resnet20", "--batch", "2", "--steps", "1", "--inference")
    assert "resnet20 inference (eval, no graph), batch 2" in text


def test_bench_train_refuses_an_unknown_model_in_one_line():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_train.py"), "--models", "resnet7"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown model 'resnet7'" in out.stderr and "Traceback" not in out.stderr


def test_bench_ops_prints_every_op_and_the_resnet20_total():
    text = run("bench_ops.py", "--batch", "2", "--repeats", "1")
    for op in ("conv2d 3x3", "batch_norm train", "relu", "max_pool2d"):
        assert op in text


def test_bench_ops_gemm_floor_has_a_row_per_conv_shape_and_a_total():
    text = run("bench_ops.py", "--batch", "2", "--repeats", "1", "--gemm-floor")
    floor_rows = [line for line in text.splitlines() if line.startswith("conv2d GEMMs only")]
    assert len(floor_rows) == 6 + 1  # ResNet-20's six conv shapes and their weighted total
    assert all("(forward's: " in line for line in floor_rows)


def test_bench_prune_times_the_reference_masks_and_the_slimmed_model():
    text = run("bench_prune.py", "--tiny")
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == ["0.50"]]
    assert [row[1] for row in rows] == ["reference", "masks", "slimmed"]
    params = {row[1]: int(row[2].replace(",", "")) for row in rows}
    assert params["masks"] == params["reference"] > params["slimmed"]


@requires_mpi
def test_bench_distributed_measures_one_and_two_processes_and_models_the_ring():
    text = run("bench_distributed.py", "--tiny")
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    rows = [row for row in rows if row.isdigit()]  # the first cell of each table's rows of numbers
    assert rows[:2] == ["1", "2"]  # the measured table: one process, then two
    assert rows[2:] == [str(p) for p in (2, 4, 8, 16, 32, 64)] * 2  # the modelled tables, ResNet-20 and ResNet-50
    assert "resnet50 (25.56M parameters" in text
