"""The kernels' thread count for the length of a block: one context manager, for the
scikit-learn estimators' n_threads and for the tests; and the training step's guard against
shared cores (`Contention`), which runs a step on one thread while the other cores are busy."""

from __future__ import annotations

import contextlib
import os
import time
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


class Contention:
    """The training step's guard against cores taken by other processes: a step on more
    threads than there are free cores waits at its barriers for a descheduled sibling (a
    2-thread step beside two busy processes measured 1.3-14x slower than the 1-thread step,
    benchmarks/bench_contention.py). `step()` runs the block on at most as many threads as
    there are cores free of other runnable tasks (at least one): the 4th field of
    /proc/loadavg, sampled at most every `interval` seconds, less this thread, against the
    cores this process may use. Results are the same for any thread count (every kernel is
    bitwise thread-count independent); only the speed changes. Without /proc/loadavg (not
    Linux) it never intervenes. `team` is the last step's thread count (None: as set)."""

    LOADAVG = "/proc/loadavg"

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.team: int | None = None
        self._free = 0  # cores free of other tasks at the last sample (0: not sampled)
        self._next = 0.0
        try:
            self._cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._cores = os.cpu_count() or 1

    def _sample(self) -> int:
        try:
            with open(self.LOADAVG, "rb") as f:
                running = int(f.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return self._cores
        return max(1, self._cores - (running - 1))  # this thread is one of the running tasks

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        n = _core.get_num_threads()
        if n < 2:
            self.team = None
            yield
            return
        now = time.monotonic()
        if now >= self._next:
            self._free = self._sample()
            self._next = now + self.interval
        if self._free >= n:
            self.team = None
            yield
            return
        self.team = self._free
        with threads(self._free):
            yield
