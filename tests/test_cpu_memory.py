"""keep_freed_memory (minires/backends/cpu_memory.py): on glibc, what a step freed stays in the process
and the next step faults no new pages; elsewhere it says it did nothing."""
import subprocess
import sys

import pytest

CHILD = """
import resource, sys
import numpy
from minires.backends.cpu_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults_of_a_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    activations = [numpy.ones(2**20) for _ in range(10)]  # a step's 10 arrays of 8 MB, freed at its end
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_step()
print(kept, faults_of_a_step())
"""


def run_child(mode):
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is on Linux")
def test_freed_memory_is_reused_without_page_faults():
    kept, faults = run_child("keep")
    if not kept:
        pytest.skip("this C library has no mallopt (not glibc)")
    _, faults_by_default = run_child("default")
    assert faults < 500  # the second step's 80 MB came from the process's own free memory
    assert faults_by_default > 2000  # the default gave it back to the system and faulted it in again


def test_keep_freed_memory_answers_with_a_bool_without_raising():
    assert run_child("keep")[0] in (True, False)
