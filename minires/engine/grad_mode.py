"""Switch graph recording on and off (``with minires.no_grad(): ...``).

Evaluation and optimizer updates do not need a graph; skipping it saves the
memory that backward would otherwise keep alive.

The switch belongs to the thread that flips it, as in PyTorch: a ``no_grad()``
block in one thread (an evaluation running beside training, a data-loading
thread) leaves graph recording on in every other thread.
"""
import contextlib
import threading

_state = threading.local()  # _state.enabled: this thread's setting (absent means on)


def is_grad_enabled():
    """Whether ops record the graph in the calling thread."""
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled):
    previous = is_grad_enabled()
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = previous


def no_grad():
    """Context manager: ops inside it record no graph (in this thread)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: record the graph again (inside a ``no_grad`` block)."""
    return _grad_mode(True)
