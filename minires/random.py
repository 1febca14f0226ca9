"""The random number generators behind dropout and weight initialisation.

One NumPy generator for the CPU and, lazily, one CuPy generator per GPU, all
seeded together by :func:`manual_seed` so runs are repeatable.
"""
import numpy

from minires.backends import cupy, get_array_module

_seed = None
_cpu = numpy.random.default_rng()
_gpu = {}


def manual_seed(seed):
    """Seed every generator minires uses."""
    global _seed, _cpu
    _seed = int(seed)
    _cpu = numpy.random.default_rng(_seed)
    _gpu.clear()


def generator_for(xp):
    """The generator for an array module: NumPy's on the CPU, CuPy's on the current GPU."""
    if xp is numpy:
        return _cpu
    device = cupy.cuda.Device().id
    if device not in _gpu:
        _gpu[device] = cupy.random.default_rng(_seed)
    return _gpu[device]


def generator_like(array):
    return generator_for(get_array_module(array))


def get_rng_state():
    """The CPU generator's state, as a dict (for checkpoints)."""
    return _cpu.bit_generator.state


def set_rng_state(state):
    _cpu.bit_generator.state = state
