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


def test_import_minires_reaches_every_submodule_and_loads_the_heavy_ones_on_first_use():
    script = (
        "import sys, minires\n"
        "lazy = ('nn', 'optim', 'models', 'data', 'training', 'experiments')\n"
        "assert not any(f'minires.{name}' in sys.modules for name in ('experiments', 'training')), sorted(sys.modules)\n"
        "model = minires.models.cifar_resnet(8, width=4)\n"
        "assert isinstance(model, minires.nn.Module) and minires.optim.SGD and minires.data.DataLoader\n"
        "assert minires.training.train_steps and minires.experiments and minires.functional.relu\n"
        "assert set(lazy) <= set(minires.__all__) and set(lazy) <= set(dir(minires))\n"
        "assert all(hasattr(minires, name) for name in minires.__all__)\n"
        "try:\n"
        "    minires.no_such_thing\n"
        "except AttributeError as err:\n"
        "    assert str(err) == \"module 'minires' has no attribute 'no_such_thing'\"\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
