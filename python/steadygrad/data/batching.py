"""Batch b of an epoch over aligned arrays (Batcher) and the background prefetch of the next
batch (prefetched). DataLoader iterates with fresh arrays per shuffled batch; sg.fit, which
knows a batch is dead once the next step begins, reuses a ring of buffers."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Generator, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
Batch = tuple[np.ndarray, ...]


def prefetched(produce: Callable[[int], T], start: int, stop: int) -> Generator[T, None, None]:
    """produce(b) for b in [start, stop), each computed in a background thread while the
    caller uses the previous one: taking item b requests b + 1, so at most one item is being
    made ahead. An exception in produce is raised here, at the item it was making; closing
    the iterator early (a `break`, garbage collection, an exception in the caller) stops the
    thread and waits for it, so nothing runs after the iteration is abandoned."""
    if start >= stop:
        return
    requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[tuple[T | None, BaseException | None]] = queue.SimpleQueue()

    def work() -> None:
        while (b := requests.get()) is not None:
            try:
                results.put((produce(b), None))
            except BaseException as e:  # handed to the consumer, which raises it
                results.put((None, e))
                return

    thread = threading.Thread(target=work, name="steadygrad-prefetch", daemon=True)
    requests.put(start)
    thread.start()
    try:
        for b in range(start, stop):
            item, err = results.get()
            if err is not None:
                raise err
            if b + 1 < stop:
                requests.put(b + 1)
            yield item  # type: ignore[misc]  # err is None, so item is a T
    finally:
        requests.put(None)
        thread.join()


def shard_bounds(n: int, rank: int, ranks: int) -> tuple[int, int]:
    """The [lo, hi) of `rank`'s contiguous share of n items split between `ranks`: shares
    differ by at most one, and together they are the n items once, in order."""
    return n * rank // ranks, n * (rank + 1) // ranks


class Batcher:
    """Batch b of an epoch over `arrays` (aligned: the same first dimension), taking the
    first `n_used` samples of the order (the rest are a dropped final batch).

    Without an order (no shuffling) a batch is a tuple of slices: views of the arrays, no copy.
    With an order it is gathered (np.take): into new arrays when `slots` is 0, so a yielded
    batch stays valid for as long as it is held; with `slots` > 0 full batches gather into a
    ring of that many reused buffers per array, batch b into slot b % slots, so a batch is
    rewritten `slots` batches later (fit: 1 slot, 2 when prefetching).

    shard=(rank, ranks): batch b is the rank's part of the b-th `batch_size` samples of the
    order (shard_bounds), as sg.fit trains a DistributedDataParallel model: the ranks'
    parts of every batch together are the batch one process would take."""

    def __init__(self, arrays: Sequence[np.ndarray], batch_size: int, n_used: int,
                 slots: int = 0, shard: tuple[int, int] = (0, 1)) -> None:
        self.arrays, self.batch_size, self.n_used = tuple(arrays), batch_size, n_used
        self.shard = shard
        first, last = shard_bounds(batch_size, *shard)
        self.ring = [tuple(np.empty((last - first, *a.shape[1:]), a.dtype) for a in self.arrays)
                     for _ in range(slots)]

    def __len__(self) -> int:
        return math.ceil(self.n_used / self.batch_size)

    def get(self, b: int, order: np.ndarray | None) -> Batch:
        lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n_used)
        full = hi - lo == self.batch_size
        if self.shard[1] > 1:
            lo, hi = (lo + k for k in shard_bounds(hi - lo, *self.shard))
        if order is None:
            return tuple(a[lo:hi] for a in self.arrays)
        idx = order[lo:hi]
        if self.ring and full:
            slot = self.ring[b % len(self.ring)]
            # mode="clip": numpy buffers a take with out= under the default mode="raise" (a
            # second copy, 2x the time); the indices are a permutation's, in range anyway
            return tuple(np.take(a, idx, axis=0, out=buf, mode="clip")
                         for a, buf in zip(self.arrays, slot, strict=True))
        return tuple(np.take(a, idx, axis=0) for a in self.arrays)

    def batches(self, order: np.ndarray | None, start: int = 0,
                prefetch: bool = False) -> Generator[Batch, None, None]:
        """Batches start, start + 1, ... of the epoch in `order` (prefetched: see prefetched)."""
        if prefetch and order is not None:  # slices cost nothing: no thread to make them
            return prefetched(lambda b: self.get(b, order), start, len(self))
        return (self.get(b, order) for b in range(start, len(self)))
