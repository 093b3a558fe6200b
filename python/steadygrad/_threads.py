"""The kernels' thread count for the length of a block: one context manager, for the
scikit-learn estimators' n_threads and for the tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from steadygrad import _core


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Runs the block with the kernels on n threads, then restores the count it found (None:
    the block runs with the count as it is)."""
    if n is None:
        yield
        return
    before = _core.get_num_threads()
    _core.set_num_threads(n)
    try:
        yield
    finally:
        _core.set_num_threads(before)
