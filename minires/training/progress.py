"""The progress bar every loop in minires shows: tqdm on stderr, and only when wanted."""
import sys

REFRESH = 20  # steps between updates of the numbers shown on a bar


def progress_bar(iterable, total, description, enabled=None):
    """``iterable`` wrapped in a tqdm bar on stderr when ``enabled`` (None: only when stderr is
    a terminal, so logs stay clean); otherwise ``iterable`` itself."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)

