"""The ``gpu`` marker: skipped, with the reason, where no GPU is usable; required where one must be.

Normally a ``gpu`` test skips on a machine without a usable GPU. With
``MINIRES_REQUIRE_GPU=1`` (set by ``benchmarks/gpu_check.sh verify``) skipping is
not allowed: collection stops with the reason when no GPU is usable, and a ``gpu``
test that skips for any other reason (a missing package, say) is reported as a
failure, so a GPU run cannot pass by testing nothing.
"""
import os

import pytest

from minires.backends import cuda_status


def gpu_required():
    return os.environ.get("MINIRES_REQUIRE_GPU") == "1"


def pytest_collection_modifyitems(config, items):
    usable, reason = cuda_status()
    if usable:
        return
    if gpu_required():
        raise pytest.UsageError(f"MINIRES_REQUIRE_GPU=1, but no GPU is usable: {reason}")
    skip_gpu = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and gpu_required() and "gpu" in item.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"a gpu test skipped while MINIRES_REQUIRE_GPU=1: {reason}"
