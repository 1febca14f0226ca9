"""The GPU kit, proven on the CPU so that a typo cannot waste the GPU's few minutes.

* ``benchmarks/gpu_check.sh --dry-run verify|train`` parses its arguments, finds
  (or clearly reports the absence of) the data, checks the settings of the
  scripts it calls and prints the exact commands, writing its log under $OUT;
* bad arguments get one line and exit 2;
* ``MINIRES_REQUIRE_GPU=1`` turns a skipped ``gpu`` test into a failure;
* ``python -m minires doctor`` explains the missing GPU on the CPU, and its
  trial compile loop (run here through the kernel emulator) reports each file;
* ``benchmarks/time_to_accuracy.py`` plans its epochs from the budget and stops.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types

import pytest

from minires.backends import cuda_status

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
TESTS = os.path.dirname(os.path.abspath(__file__))
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
no_gpu_here = pytest.mark.skipif(cuda_status()[0], reason="a GPU is usable here; this checks the CPU-only answer")


def kit(*args, out=None, env=None):
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    environment.pop("OUT", None)
    if out is not None:
        environment["OUT"] = str(out)
    return subprocess.run(["bash", KIT, *args], capture_output=True, text=True, env=environment, timeout=120)


def commands(stdout):
    """The commands the kit printed (its lines starting with '+ ')."""
    return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


# ------------------------------------------------------------------ gpu_check.sh
@needs_bash
def test_dry_run_verify_prints_the_exact_commands_and_logs_them(tmp_path):
    result = kit("--dry-run", "verify", out=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = commands(result.stdout)
    python = sys.executable
    assert f"timeout -k 10 45 {python} -m minires doctor" in printed
    assert (f"env MINIRES_REQUIRE_GPU=1 timeout -k 10 300 {python} -m pytest -m gpu -q -rfEs "
            "-p no:cacheprovider tests") in printed
    assert (f"timeout -k 10 150 {python} benchmarks/bench_gpu.py --repeats 20 --steps 20 --batches 128 512 "
            "--depths 20 56") in printed
    # The pytest selection was really collected and bench_gpu.py really accepted its settings.
    collected = [line for line in result.stdout.splitlines() if "tests collected" in line]
    assert collected and int(collected[0].split("/")[0]) >= 100
    assert "dry run: would time per-op table at batch 128" in result.stdout
    assert (tmp_path / "verify-dry-run.log").read_text() == result.stdout


@needs_bash
def test_dry_run_train_reports_missing_data_and_says_how_to_stage_it(tmp_path):
    result = kit("--dry-run", "train", "--data", str(tmp_path / "nowhere"), out=tmp_path)
    assert result.returncode == 2
    assert "CIFAR-10 not found" in result.stderr and "gpu_check.sh stage" in result.stderr
    assert "carry" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@needs_bash
def test_dry_run_train_with_the_archive_prints_conversion_and_training(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10-jpeg.tar.gz").write_bytes(b"")
    (data / "prepare_cifar10.py").write_text("")
    result = kit("--dry-run", "train", "--data", str(data), "--budget-minutes", "6", out=tmp_path)
    if "missing Python modules" in result.stderr and "PIL" in result.stderr:
        pytest.skip("Pillow is not installed here (the conversion needs it; the GPU machine has it)")
    assert result.returncode == 0, result.stderr
    convert, train = commands(result.stdout)
    assert convert == f"timeout -k 10 120 {sys.executable} {data}/prepare_cifar10.py {data}"
    assert train.startswith("timeout -k 10 ") and f"benchmarks/time_to_accuracy.py --data-root {data} " in train
    budget = int(train.split("--budget-seconds ")[1].split()[0])
    assert 6 * 60 - 30 <= budget <= 6 * 60 - 20  # the phase's budget less start-up and loading
    assert "dry run: resnet20 on cifar10" in result.stdout and "target 91.00%" in result.stdout


@needs_bash
def test_dry_run_train_uses_converted_data_without_converting(tmp_path):
    binary = tmp_path / "cifar-10-batches-bin"
    binary.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (binary / name).write_bytes(b"")
    result = kit("--dry-run", "train", "--data", str(tmp_path), out=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already converted" in result.stdout
    assert [c for c in commands(result.stdout) if "prepare_cifar10" in c] == []


@needs_bash
@pytest.mark.parametrize("args, message", [
    ((), "say which phase"),
    (("check",), "unknown argument 'check'"),
    (("verify", "train"), "give one phase"),
    (("train", "--budget-minutes", "12"), "from 1 to 9"),
    (("train", "--budget-minutes", "x"), "from 1 to 9"),
    (("verify", "--budget-minutes", "5"), "belongs to the train phase"),
    (("stage", "--from", "/nonexistent"), "cifar10-jpeg.tar.gz not found"),
])
def test_bad_arguments_get_one_line_and_exit_2(args, message, tmp_path):
    result = kit(*args, out=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@needs_bash
def test_stage_copies_the_archive_and_the_converter(tmp_path):
    source, dest = tmp_path / "shared", tmp_path / "dest"
    source.mkdir()
    (source / "cifar10-jpeg.tar.gz").write_bytes(b"archive")
    (source / "prepare_cifar10.py").write_text("print('convert')\n")
    result = kit("stage", "--from", str(source), "--data", str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "cifar10-jpeg.tar.gz").read_bytes() == b"archive"
    assert (dest / "prepare_cifar10.py").read_text() == "print('convert')\n"
    assert "carry" in result.stdout


@needs_bash
def test_without_out_the_log_goes_to_a_new_folder_under_runs():
    runs = os.path.join(ROOT, "runs", "gpu-check")
    before = set(os.listdir(runs)) if os.path.isdir(runs) else set()
    result = kit("--dry-run", "verify")
    assert result.returncode == 0, result.stderr
    made = set(os.listdir(runs)) - before
    try:
        assert len(made) == 1
        assert os.path.isfile(os.path.join(runs, made.pop(), "verify-dry-run.log"))
    finally:
        for folder in set(os.listdir(runs)) - before:
            shutil.rmtree(os.path.join(runs, folder))


def test_the_data_folder_is_ignored_by_git():
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", ".data/cifar10-jpeg.tar.gz"], cwd=ROOT)
    assert result.returncode == 0, ".data/ must be ignored so that it travels only when carried"


# ------------------------------------------------------------------ MINIRES_REQUIRE_GPU
GUARDED_TESTS = textwrap.dedent("""
    import pytest

    @pytest.mark.gpu
    def test_skips_for_a_missing_package():
        pytest.skip("no such package")

    @pytest.mark.gpu
    def test_runs():
        assert True
""")


def run_guarded(tmp_path, pretend_gpu, require):
    """Run GUARDED_TESTS under tests/gpu_guard.py, pretending (or not) that a GPU is usable."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        import gpu_guard
        gpu_guard.cuda_status = lambda: ({pretend_gpu}, "pretend")
        from gpu_guard import pytest_collection_modifyitems, pytest_runtest_makereport

        def pytest_configure(config):
            config.addinivalue_line("markers", "gpu: needs a GPU")
    """))
    (tmp_path / "test_guarded.py").write_text(GUARDED_TESTS)
    env = {**os.environ, "MINIRES_REQUIRE_GPU": "1" if require else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           "-c", os.devnull, str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path)


def test_a_skipped_gpu_test_fails_when_a_gpu_is_required(tmp_path):
    result = run_guarded(tmp_path, pretend_gpu=True, require=True)
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout
    assert "a gpu test skipped while MINIRES_REQUIRE_GPU=1: Skipped: no such package" in result.stdout


def test_a_skipped_gpu_test_is_only_a_skip_otherwise(tmp_path):
    result = run_guarded(tmp_path, pretend_gpu=True, require=False)
    assert result.returncode == 0 and "1 passed, 1 skipped" in result.stdout


def test_requiring_a_gpu_where_none_is_usable_stops_at_collection(tmp_path):
    result = run_guarded(tmp_path, pretend_gpu=False, require=True)
    assert result.returncode != 0
    assert "MINIRES_REQUIRE_GPU=1, but no GPU is usable: pretend" in result.stdout + result.stderr


# ------------------------------------------------------------------ doctor
@no_gpu_here
def test_doctor_on_the_cpu_exits_0_and_says_why_there_is_no_gpu_path():
    result = subprocess.run([sys.executable, "-m", "minires", "doctor"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Python ") and lines[1].startswith("NumPy ") and "BLAS" in lines[1]
    assert lines[-1].startswith("verdict: no GPU path on this machine")
    assert cuda_status()[1] in lines[-1]


def test_doctor_exits_1_when_a_gpu_is_there_but_cupy_cannot_use_it(monkeypatch):
    from minires import doctor
    from minires.backends import dispatch

    reason = "CuPy cannot load NVRTC, the CUDA compiler our kernels need (OSError: ...)"
    monkeypatch.setattr(doctor, "cuda_status", lambda: (False, reason))
    monkeypatch.setattr(dispatch, "cupy", types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))))
    lines = []
    assert doctor.run_doctor(out=lines.append) == 1
    assert lines[-1] == f"verdict: GPU path BROKEN: {reason}"


@pytest.mark.gpu
def test_doctor_on_a_gpu_compiles_every_kernel_file_and_says_ready():
    result = subprocess.run([sys.executable, "-m", "minires", "doctor"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("verdict: GPU path ready")
    assert "FAILED" not in result.stdout


def test_doctor_trial_compile_reports_each_file_and_counts_failures(emulated_kernels, monkeypatch):
    from minires.backends.cuda import kernel_files
    from minires.doctor import trial_compiles

    files = kernel_files()
    lines = []
    assert trial_compiles(files, lines.append) == 0
    assert len(lines) == 2 * len(files) and all(" ok (" in line for line in lines)

    relu = files["relu.cu"]
    monkeypatch.setattr(relu, "_modules", {})  # compile afresh, from a broken source
    monkeypatch.setattr(relu, "_kernels", {})
    monkeypatch.setattr(relu, "source", lambda: "template <typename T> __global__ void relu_forward(T* y) { y = ; }")
    lines.clear()
    assert trial_compiles({"relu.cu": relu}, lines.append) == 2
    assert all("relu.cu" in line and "FAILED" in line for line in lines)


# ------------------------------------------------------------------ time_to_accuracy.py
def time_to_accuracy(tmp_path, *args):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "time_to_accuracy.py"), "--dataset", "mnist_sample",
               "--model", "mnist_resnet", "--device", "cpu", "--train-limit", "256", "--test-limit", "128",
               "--batch-size", "64", "--out", str(tmp_path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_lr_warms_up_then_decays_linearly_to_the_planned_end():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from time_to_accuracy import lr_at, parse_args
    finally:
        sys.path.pop(0)
    args = parse_args(["--lr", "0.4", "--warmup-epochs", "2"])
    rates = [lr_at(epoch, args, planned_epochs=6) for epoch in range(7)]
    assert rates == pytest.approx([0.2, 0.4, 0.4, 0.3, 0.2, 0.1, 0.0])


def test_time_to_accuracy_runs_the_planned_epochs_and_reports(tmp_path):
    result = time_to_accuracy(tmp_path, "--budget-seconds", "600", "--max-epochs", "3", "--warmup-epochs", "1",
                              "--target", "0.05")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "time_to_accuracy.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[0]["lr"] == rows[1]["lr"] > rows[2]["lr"] > 0  # one warm-up epoch reaches the peak
    assert all(row["images_per_s"] > 0 and 0 <= row["test_acc"] <= 1 for row in rows)
    assert "plan: 3 epochs in all" in result.stdout
    assert "reached 5.00% test accuracy at epoch 1" in result.stdout.splitlines()[-1]
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 0


def test_time_to_accuracy_stops_when_the_budget_is_spent(tmp_path):
    result = time_to_accuracy(tmp_path, "--budget-seconds", "0.01", "--warmup-epochs", "1", "--target", "1.0")
    assert result.returncode == 0, result.stderr
    assert "plan: 1 epochs in all (0 more" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("did not reach 100.00%: best ")
    assert len((tmp_path / "time_to_accuracy.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--budget-seconds", "0"], "--budget-seconds must be positive"),
    (["--target", "91"], "--target is an accuracy"),
    (["--warmup-epochs", "5", "--max-epochs", "5"], "must be fewer than --max-epochs"),
])
def test_time_to_accuracy_rejects_bad_settings_in_one_line(tmp_path, args, message):
    result = time_to_accuracy(tmp_path, *args, "--dry-run")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_time_to_accuracy_names_missing_data(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "time_to_accuracy.py"), "--device", "cpu",
               "--data-root", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "data_batch_1.bin" in result.stderr


def test_doctor_reports_versions_even_when_one_query_fails():
    import types

    from minires.doctor import cuda_versions

    def no_nvrtc():
        raise AttributeError("this CuPy has no nvrtc.getVersion")

    runtime = types.SimpleNamespace(runtimeGetVersion=lambda: 12040, driverGetVersion=lambda: 13010)
    fake_cupy = types.SimpleNamespace(__version__="14.2.0", cuda=types.SimpleNamespace(
        runtime=runtime, nvrtc=types.SimpleNamespace(getVersion=no_nvrtc)))
    assert cuda_versions(fake_cupy) == ("CuPy 14.2.0, CUDA runtime 12.4, driver supports CUDA 13.1, "
                                        "NVRTC unknown (AttributeError: this CuPy has no nvrtc.getVersion)")
