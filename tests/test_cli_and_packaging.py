"""The command line's check table, and where the kernel sources are found."""
import os
import subprocess
import sys

import minires
from minires.backends import kernel_dir
from minires.check import run_checks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_check_command_prints_a_passing_table():
    result = subprocess.run([sys.executable, "-m", "minires", "check"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "conv2d 3x3 stride 2 pad 1" in result.stdout
    assert "batch_norm 4-D train" in result.stdout
    assert " 0 failed" in result.stdout


def test_check_reports_a_failure(monkeypatch):
    # Break ReLU's backward on purpose: the table must say FAIL and the run must report failure.
    from minires.ops.activation import ReLUFunction

    monkeypatch.setattr(ReLUFunction, "backward", lambda self, grad: grad)  # forgets the mask
    lines = []
    assert run_checks(out=lines.append) is False
    relu_line = next(line for line in lines if line.startswith("relu "))
    assert "FAIL" in relu_line


def test_kernel_sources_are_found():
    folder = kernel_dir()
    assert os.path.isfile(os.path.join(folder, "__init__.py"))


def test_cuda_status_explains_itself():
    usable, reason = minires.cuda_status()
    assert isinstance(usable, bool) and reason
