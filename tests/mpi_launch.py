"""Running a script as several MPI processes from a test: ``mpiexec -n K python SCRIPT ...``.

The tests skip, saying why, without mpi4py or without an ``mpiexec`` (``pip install ".[mpi]"``
brings both: mpi4py and MPICH's wheel, whose mpiexec sits beside the venv's python).
The scripts run by these tests are in tests/mpi/; they print one JSON line of results.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(HERE, "mpi")
ROOT = os.path.dirname(HERE)


def mpiexec():
    """The mpiexec beside this Python (a venv's), else the first on PATH, else None."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def mpi_missing():
    """Why MPI tests cannot run here, or None."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install \".[mpi]\")"
    if mpiexec() is None:
        return "no mpiexec found beside python or on PATH (pip install \".[mpi]\" brings MPICH's)"
    return None


requires_mpi = pytest.mark.skipif(mpi_missing() is not None, reason=str(mpi_missing()))


def launch(ranks, *args, timeout=180, cwd=None, env=None):
    """``mpiexec -n ranks python *args`` (``ranks`` 0: plain ``python *args``), one BLAS thread per
    process unless ``env`` says otherwise (a value None removes a variable); the CompletedProcess.
    ``args`` starting with "-m" or "-c" are passed on, else the first is a script name in tests/mpi/."""
    if args and args[0] not in ("-m", "-c") and not os.path.isabs(args[0]):
        args = (os.path.join(SCRIPTS, args[0]),) + tuple(args[1:])
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
                   "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **(env or {})}
    environment = {name: value for name, value in environment.items() if value is not None}
    environment.pop("MINIRES_DEBUG", None)
    command = [mpiexec(), "-n", str(ranks), sys.executable, *args] if ranks else [sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=environment)


def json_result(completed):
    """The last JSON line a script printed (rank 0 prints it), failing the test with its stderr if none."""
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert completed.returncode == 0 and lines, (
        f"exit {completed.returncode}\nstdout:\n{completed.stdout[-3000:]}\nstderr:\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])
