"""sg.data.DataLoader: aligned batches of any number of arrays, torch's len(), a reproducible
order (one permutation per epoch from its own seeded generator), views without shuffling and
batches that stay valid with it, and the background prefetch (same batches, one ahead,
exceptions raised at their batch, the thread gone when the loop is abandoned)."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

import steadygrad as sg
from steadygrad.data import DataLoader
from steadygrad.data.batching import prefetched


def _arrays(n=23):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    w = np.linspace(0.0, 1.0, n)
    return x, y, w


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "steadygrad-prefetch"]


@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_are_aligned_and_cover_the_epoch(shuffle, drop_last, prefetch):
    x, y, w = _arrays()
    loader = DataLoader(x, y, w, batch_size=5, shuffle=shuffle, drop_last=drop_last, seed=3,
                        prefetch=prefetch)
    batches = list(loader)
    assert len(batches) == len(loader) == (4 if drop_last else 5)
    seen = np.concatenate([yb for _, yb, _ in batches])
    order = np.random.Generator(np.random.PCG64(3)).permutation(23) if shuffle else np.arange(23)
    np.testing.assert_array_equal(seen, order[: len(seen)])
    for xb, yb, wb in batches:  # every array gathered in the same order
        np.testing.assert_array_equal(xb, x[yb])
        np.testing.assert_array_equal(wb, w[yb])
        assert xb.dtype == x.dtype and wb.dtype == w.dtype and len(xb) <= 5


@pytest.mark.parametrize("n,bs,drop_last", [(10, 3, False), (10, 3, True), (9, 3, False), (9, 3, True),
                                            (2, 5, False), (1, 1, True), (100, 7, False), (100, 7, True)])
def test_len_is_torchs(n, bs, drop_last):
    ds = torch.utils.data.TensorDataset(torch.zeros(n))
    want = len(torch.utils.data.DataLoader(ds, batch_size=bs, drop_last=drop_last))
    loader = DataLoader(np.zeros(n), batch_size=bs, drop_last=drop_last)
    assert len(loader) == want == len(list(loader))


def test_each_epoch_draws_a_new_permutation_from_the_seeded_generator():
    x, y, _ = _arrays(50)
    a = DataLoader(x, y, batch_size=8, shuffle=True, seed=11)
    b = DataLoader(x, y, batch_size=8, shuffle=True, seed=11)
    ref = np.random.Generator(np.random.PCG64(11))
    epochs = []
    for _ in range(3):
        got = np.concatenate([yb for _, yb in a])
        np.testing.assert_array_equal(got, ref.permutation(50))
        np.testing.assert_array_equal(got, np.concatenate([yb for _, yb in b]))
        epochs.append(got)
    assert not np.array_equal(epochs[0], epochs[1])
    other = np.concatenate([yb for _, yb in DataLoader(x, y, batch_size=8, shuffle=True, seed=12)])
    assert not np.array_equal(other, epochs[0])


def test_without_a_seed_the_order_follows_sg_manual_seed():
    x, y, _ = _arrays(40)
    sg.manual_seed(5)
    a = DataLoader(x, y, batch_size=40, shuffle=True)
    sg.manual_seed(5)
    b = DataLoader(x, y, batch_size=40, shuffle=True)
    assert a.seed == b.seed
    np.testing.assert_array_equal(next(iter(a))[1], next(iter(b))[1])


def test_unshuffled_batches_are_views_and_shuffled_ones_stay_valid():
    x, y, _ = _arrays(20)
    for xb, yb in DataLoader(x, y, batch_size=6):
        assert np.shares_memory(xb, x) and np.shares_memory(yb, y)  # no copy
    held = list(DataLoader(x, y, batch_size=6, shuffle=True, seed=0, prefetch=True))
    for xb, yb in held:  # gathered into arrays of their own, never rewritten by later batches
        assert not np.shares_memory(xb, x)
        np.testing.assert_array_equal(xb, x[yb])
    assert len({id(xb) for xb, _ in held}) == len(held)


def test_prefetch_makes_the_next_batch_in_a_thread_while_the_current_one_is_used():
    made: list[tuple[int, str]] = []
    ready = {b: threading.Event() for b in range(4)}

    def produce(b):
        made.append((b, threading.current_thread().name))
        ready[b].set()
        return b * 10

    it = prefetched(produce, 0, 4)
    assert not made and not _prefetch_threads()  # nothing starts before the first next()
    assert next(it) == 0
    assert ready[1].wait(timeout=30)  # batch 1 is made while the caller holds batch 0 ...
    assert [b for b, _ in made] == [0, 1]  # ... and nothing further ahead
    assert [next(it), next(it), next(it)] == [10, 20, 30]
    assert {name for _, name in made} == {"steadygrad-prefetch"}
    with pytest.raises(StopIteration):
        next(it)
    assert not _prefetch_threads()


def test_prefetch_raises_the_producers_exception_at_its_batch():
    def produce(b):
        if b == 2:
            raise MemoryError("cannot gather batch 2")
        return b

    got = []
    with pytest.raises(MemoryError, match="cannot gather batch 2"):
        for item in prefetched(produce, 0, 5):
            got.append(item)
    assert got == [0, 1]
    assert not _prefetch_threads()


@pytest.mark.parametrize("how", ["break", "close", "exception"])
def test_an_abandoned_prefetching_loop_stops_its_thread(how):
    x, y, _ = _arrays(200)
    loader = DataLoader(x, y, batch_size=4, shuffle=True, seed=1, prefetch=True)
    if how == "break":
        for i, _ in enumerate(loader):
            if i == 3:
                break
        gc.collect()
    elif how == "close":
        it = iter(loader)
        next(it)
        it.close()
    else:
        with pytest.raises(KeyError):
            for _ in loader:
                raise KeyError("the training step failed")
        gc.collect()
    assert not _prefetch_threads()


@pytest.mark.parametrize("make,exc,msg", [
    (lambda x, y: DataLoader(x, y[:-1], batch_size=4), ValueError,
     r"DataLoader: arrays\[1\] has 19 samples \(shape \(19,\)\) but arrays\[0\] has 20"),
    (lambda x, y: DataLoader(x, y, np.zeros(21), batch_size=4), ValueError,
     r"arrays\[2\] has 21 samples"),
    (lambda x, y: DataLoader(batch_size=4), TypeError, "needs at least one array"),
    (lambda x, y: DataLoader(x, np.float32(3.0), batch_size=4), TypeError,
     r"arrays\[1\] must be an array of samples"),
    (lambda x, y: DataLoader(x[:0], batch_size=4), ValueError, "hold no samples"),
    (lambda x, y: DataLoader(x, y, batch_size=0), ValueError, "DataLoader: batch_size must be a positive int, got 0"),
    (lambda x, y: DataLoader(x, y, batch_size=2.0), TypeError, r"DataLoader: batch_size must be a positive int, got 2.0 \(float\)"),
    (lambda x, y: DataLoader(x, y, batch_size=4, shuffle=1), TypeError, "shuffle must be True or False"),
    (lambda x, y: DataLoader(x, y, batch_size=4, prefetch="yes"), TypeError, "prefetch must be True"),
    (lambda x, y: DataLoader(x, y, batch_size=4, seed=-1), ValueError, "seed must be an int >= 0"),
    (lambda x, y: DataLoader(x, y, batch_size=21, drop_last=True), ValueError,
     "drop_last=True with batch_size=21 leaves no batch of the 20 samples"),
], ids=["y-short", "w-long", "none", "scalar", "empty", "bs0", "bs-float", "shuffle-int",
        "prefetch-str", "seed-neg", "drop-all"])
def test_bad_arguments_name_themselves(make, exc, msg):
    x, y, _ = _arrays(20)
    with pytest.raises(exc, match=msg):
        make(x, y)
