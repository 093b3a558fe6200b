"""DataLoader: tuples of mini-batches of aligned arrays, in a reproducible order."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from steadygrad import random
from steadygrad._args import count, flag
from steadygrad.data.batching import Batch, Batcher


def _aligned(arrays: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The arrays as numpy arrays (an ndarray is taken as it is, no copy), all with the same
    number of samples along the first dimension."""
    if not arrays:
        raise TypeError("DataLoader: needs at least one array (DataLoader(x, y, batch_size=...))")
    out: list[np.ndarray] = []
    for i, a in enumerate(arrays):
        arr = a if isinstance(a, np.ndarray) else np.asarray(a)
        if arr.ndim == 0 or arr.dtype == object:
            raise TypeError(f"DataLoader: arrays[{i}] must be an array of samples along its first "
                            f"dimension, got {arr.dtype} array of shape {arr.shape}")
        if len(arr) != len(out[0] if out else arr):
            raise ValueError(f"DataLoader: arrays[{i}] has {len(arr)} samples (shape {arr.shape}) but "
                             f"arrays[0] has {len(out[0])} (shape {out[0].shape}): the arrays must be "
                             "aligned, the same first dimension")
        out.append(arr)
    if len(out[0]) == 0:
        raise ValueError("DataLoader: the arrays hold no samples")
    return tuple(out)


class DataLoader:
    """Mini-batches of aligned arrays, as torch.utils.data.DataLoader over a TensorDataset:
    iterating yields one tuple per batch with one entry per array (inputs, targets, sample
    weights, ...), `len()` is the number of batches (n // batch_size with drop_last, else
    ceil(n / batch_size)).

    Order: with shuffle=True each `iter()` (each epoch) draws a new permutation from the
    loader's own numpy Generator, seeded by `seed` (drawn from sg's RNG when None, so
    sg.manual_seed fixes it): the same seed gives the same sequence of epochs. Without
    shuffling the order is the arrays' own.

    Memory: nothing is copied at construction (ndarrays are kept as given; other array-likes
    go through np.asarray). Without shuffling a batch is a tuple of views (slices) of the
    arrays; with shuffling each batch is gathered into new arrays (np.take), which are the
    caller's to keep: the loader never writes into a batch it has yielded.

    prefetch=True gathers the next shuffled batch in a background thread while the caller
    uses the current one (an exception there is raised at that batch; leaving the loop early
    stops the thread). sg.fit accepts a DataLoader in place of (x, y)."""

    def __init__(self, *arrays: Any, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None, prefetch: bool = False) -> None:
        self.arrays = _aligned(arrays)
        self.batch_size = count(batch_size, "DataLoader: batch_size")
        self.shuffle = flag(shuffle, "DataLoader: shuffle")
        self.drop_last = flag(drop_last, "DataLoader: drop_last")
        self.prefetch = flag(prefetch, "DataLoader: prefetch")
        if drop_last and len(self) == 0:
            raise ValueError(f"DataLoader: drop_last=True with batch_size={self.batch_size} leaves no "
                             f"batch of the {self.num_samples} samples")
        self.seed = random.draw_seed() if seed is None else count(seed, "DataLoader: seed", minimum=0)
        self.generator = np.random.Generator(np.random.PCG64(self.seed))

    @property
    def num_samples(self) -> int:
        return len(self.arrays[0])

    def __len__(self) -> int:
        n, bs = self.num_samples, self.batch_size
        return n // bs if self.drop_last else math.ceil(n / bs)

    def next_order(self) -> np.ndarray | None:
        """The next epoch's order (a permutation drawn from the generator), None without
        shuffling."""
        return self.generator.permutation(self.num_samples) if self.shuffle else None

    def __iter__(self) -> Iterator[Batch]:
        used = len(self) * self.batch_size if self.drop_last else self.num_samples
        return Batcher(self.arrays, self.batch_size, used).batches(self.next_order(),
                                                                  prefetch=self.prefetch)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.arrays)
        return (f"DataLoader({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed}, prefetch={self.prefetch})")
