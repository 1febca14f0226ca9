"""Test-only instruments for the kernel path (not library API).

``poison_outputs()`` fills every float output array the kernel wrappers allocate
with NaN before the kernel runs, so an element a kernel forgets to write shows up
as NaN instead of passing by luck (fresh GPU memory often holds zeros or old
values that happen to be right).

``DeviceArray`` is a NumPy array that behaves as if it lived on a GPU in one
respect: reading a value of it back to the host raises, so a test can show that a
whole training step queues its work without once waiting for the device.
"""
import contextlib

import numpy

from minires.backends.cuda import loader


@contextlib.contextmanager
def poison_outputs():
    previous, loader._poison = loader._poison, True
    try:
        yield
    finally:
        loader._poison = previous


class DeviceArray(numpy.ndarray):
    """A NumPy array that plays an array on a GPU: reading a value of it back to the host
    (``bool``, ``float``, ``int``, ``.item()``, ``.tolist()``, printing) raises HostRead.

    On a GPU each of those waits until every queued kernel has run. Results computed
    from DeviceArrays stay DeviceArrays: ufuncs and methods keep the subclass, and
    ``get_array_module`` hands ops :data:`DEVICE_NUMPY`, whose functions (``empty``,
    ``asarray``, ``matmul``, ...) return DeviceArrays too.
    """

    def __array_wrap__(self, array, context=None, return_scalar=False):
        return numpy.ndarray.__array_wrap__(self, array, context, False)  # a 0-d array, not a scalar

    def _read(self, *args, **kwargs):
        raise HostRead("a value was read back from the (stand-in) device, which waits for the GPU")

    __bool__ = __float__ = __int__ = __index__ = __complex__ = item = tolist = __repr__ = __str__ = _read


class HostRead(AssertionError):
    pass


class _DeviceNumpy:
    """``numpy`` as an array module whose functions return DeviceArrays."""

    def __getattr__(self, name):
        value = getattr(numpy, name)
        if not callable(value) or isinstance(value, type):
            return value  # dtypes, constants, submodules

        def on_device(*args, **kwargs):
            result = value(*args, **kwargs)
            return result.view(DeviceArray) if isinstance(result, numpy.ndarray) else result

        return on_device


DEVICE_NUMPY = _DeviceNumpy()
DeviceArray.array_module = DEVICE_NUMPY


def to_stand_in_device(array):
    """A DeviceArray copy of ``array`` (what ``cupy.asarray`` would give)."""
    return numpy.array(array).view(DeviceArray)
