"""Switch graph recording on and off (``with minires.no_grad(): ...``).

Evaluation and optimizer updates do not need a graph; skipping it saves the
memory that backward would otherwise keep alive.
"""
import contextlib

_enabled = True


def is_grad_enabled():
    return _enabled


@contextlib.contextmanager
def _grad_mode(enabled):
    global _enabled
    previous = _enabled
    _enabled = enabled
    try:
        yield
    finally:
        _enabled = previous


def no_grad():
    """Context manager: ops inside it record no graph."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: record the graph again (inside a ``no_grad`` block)."""
    return _grad_mode(True)
