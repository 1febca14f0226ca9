"""Shared pytest setup: the ``gpu`` marker skips, saying why, where no GPU is usable."""
import pytest

from minires.backends import cuda_status


def pytest_collection_modifyitems(config, items):
    usable, reason = cuda_status()
    if usable:
        return
    skip_gpu = pytest.mark.skip(reason=f"no usable GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
