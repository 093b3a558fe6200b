"""A helper thread that moves a backward's allreduces on while its layers compute.

MPI libraries (MPICH, Open MPI) advance a non-blocking collective only inside MPI calls. A
bucket whose Iallreduce started before a long layer backward (one GEMM call of tens of ms,
with no MPI call in it) sits still until the next call, so without help it finishes in the
backward's final wait: exposed. The thread tests the oldest unfinished request every
`interval` seconds from a backward's first bucket to the start of its final wait, and sleeps
in between (a few microseconds of its core per test). It only runs where the communicator
says its requests may be tested from another thread (MPI_THREAD_MULTIPLE: mpi4py's default).
It changes no value: which algorithm reduces the buffer, and so the sum, does not depend on
when it is driven."""

from __future__ import annotations

import os
import threading
import time
import weakref

from steadygrad.distributed.comm import Request

__all__ = ["Progress"]

INTERVAL_S = 3e-4  # between tests: short beside a bucket's ms, long beside a test's us

_ALL: weakref.WeakSet[Progress] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A fork copies the lock as it was (held, if the thread was testing then) but not the
    # thread: the child starts afresh.
    for p in list(_ALL):
        p._lock = threading.Lock()
        p._run = threading.Event()
        p._thread = None
        p._requests, p._next = [], 0


os.register_at_fork(after_in_child=_after_fork_in_child)


class Progress:
    """One backward's requests, in the order their buckets started, and what moves them on.
    `add(req, wake=)` as each bucket starts; `poll()` tests the oldest unfinished ones in
    order (called between layers when there is no thread); with `threaded`, an add with
    wake=True starts the thread polling every `interval` seconds. `end()` stops it and hands
    the requests back for the final waits: after it returns no test runs until the next add
    (MPI forbids two threads testing one request at once). `tests`: how many tests were made
    (diagnostics; tests of this module)."""

    def __init__(self, threaded: bool, interval: float = INTERVAL_S) -> None:
        self.threaded = threaded
        self.interval = interval
        self.tests = 0
        self._lock = threading.Lock()
        self._run = threading.Event()
        self._requests: list[Request] = []
        self._next = 0  # the first request not yet seen complete
        self._thread: threading.Thread | None = None
        self._pid = 0  # the process the thread runs in (a forked child starts its own)
        _ALL.add(self)

    def add(self, req: Request, *, wake: bool) -> None:
        self._requests.append(req)
        if wake and self.threaded and not self._run.is_set():
            self._ensure_thread()
            self._run.set()

    def poll(self) -> None:
        reqs = self._requests
        while self._next < len(reqs):
            self.tests += 1
            if not reqs[self._next].test():
                break
            self._next += 1

    def end(self) -> list[Request]:
        self._run.clear()
        with self._lock:  # a test in progress returns; the loop starts none after the clear
            reqs, self._requests, self._next = self._requests, [], 0
        return reqs

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._loop, name="steadygrad-mpi-progress",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._run.wait()
            while self._run.is_set():
                with self._lock:
                    if not self._run.is_set():
                        break
                    self.poll()
                time.sleep(self.interval)
