"""Checking a device name before any work starts, so a missing GPU is one clear error."""
from minires.backends import cuda_status, normalize_device


def check_device(device):
    """The normalised device name ("cpu", "cuda:0", ...); RuntimeError saying why when a GPU is not usable."""
    normalized = normalize_device(device)
    if normalized != "cpu":
        usable, reason = cuda_status()
        if not usable:
            raise RuntimeError(f"--device {device} is not usable: {reason}")
    return normalized
