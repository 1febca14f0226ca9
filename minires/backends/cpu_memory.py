"""Keeping freed memory for the next training step (glibc's malloc on Linux).

A training step allocates and frees the same few hundred MB every step. By default glibc's
malloc gives large freed blocks back to the system (it unmaps blocks above its mmap threshold
and trims the top of the heap); the next step then touches fresh pages, and every first
touch of a page is a page fault in which the kernel zeroes 4 KB. Measured on 2 cores: about
33,000 page faults per ResNet-20 step, and 20% of the step's time.

``keep_freed_memory()`` raises both thresholds so that freed blocks stay in the process and
the next step reuses them, as PyTorch's caching allocator does on a GPU. The price: the
process's resident size stays near its peak. ``python -m minires train`` calls it; call it
at the start of your own training script for the same speed.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest on 64-bit: bigger blocks are still mapped fresh
TRIM_THRESHOLD = 2**31 - 1  # never trim the heap


def keep_freed_memory():
    """Keep freed memory in the process; True where that was done (glibc), False elsewhere."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: macOS, Windows, ...
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, since setting either one
    # switches off glibc's own adjustment of both
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


# ---- measuring: how much memory a step adds (Linux) --------------------------------------------

def resident_bytes(field="VmRSS"):
    """The process's resident memory in bytes from /proc/self/status: ``VmRSS`` now, ``VmHWM`` its peak
    ("high water mark") since the start or the last :func:`reset_resident_peak`; 0 where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # the file counts in kB
    except OSError:
        pass
    return 0


def reset_resident_peak():
    """Set the peak (VmHWM) back to the current resident size; True where Linux allowed it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_extra_bytes(run):
    """Call ``run()`` and return how far the resident memory rose above what the process held before it:
    the memory ``run`` needed at its peak (its arrays, and pages it touched), in bytes. Run it in a fresh
    process for a clean number: memory that an earlier step freed and kept (``keep_freed_memory``) is
    reused without raising the peak. 0 where /proc is missing (not Linux)."""
    before = resident_bytes()
    reset_resident_peak()
    run()
    return max(resident_bytes("VmHWM") - before, 0)
