"""sg.fit and sg.evaluate on a DistributedDataParallel model over 2 ranks: each rank trains on
its share of every batch of the same seeded permutation (every sample once per epoch, the
ranks' shares together being one process's batch), the logged metrics and the validation are
the whole data's, the training matches one process's, and only rank 0 writes files."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
from mpi_support import U, agree, build, data

import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import nn, optim


class _Seen(nn.Module):
    """Identity that records the sample ids (column 0 of x) of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[np.ndarray] = []

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.training:
            self.batches.append(x[:, 0].astype(np.int64))
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape


def test_fit_shards_every_sample_exactly_once_per_epoch():
    """37 samples, batch_size 8, 3 epochs: the final batch of 5 splits 2 + 3. Counting every
    sample each rank trained on (summed across ranks) gives 3 per sample, and rank r's batch b
    is its share of one process's batch b of the same seed's permutation."""
    r = dist.rank()
    n, epochs, bs = 37, 3, 8
    seen = _Seen()
    x = np.zeros((n, 6), np.float32)
    x[:, 0] = np.arange(n)
    y = np.arange(n) % 4
    sg.manual_seed(1)
    model = dist.DistributedDataParallel(nn.Sequential(seen, nn.Linear(6, 4)))
    sg.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), x, y,
           epochs=epochs, batch_size=bs, seed=11, verbose=0)
    counts = np.bincount(np.concatenate(seen.batches), minlength=n).astype(np.float64)
    dist.communicator().allreduce_(counts)
    rng = np.random.default_rng(11)
    want = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        for lo in range(0, n, bs):
            batch = perm[lo:lo + bs]
            want.append(batch[len(batch) * r // 2: len(batch) * (r + 1) // 2])
    same = len(want) == len(seen.batches) and all(
        np.array_equal(a, b) for a, b in zip(want, seen.batches, strict=True))
    assert agree(same)
    assert agree(bool(np.all(counts == epochs))), counts


def test_fit_on_two_ranks_trains_as_one_process_and_logs_the_whole_data(tmp_path):
    """The same seeded fit (41 samples: an uneven final batch of 9 split 4 + 5, weighted so
    the average is still the batch's gradient) on 2 ranks and in one process: parameters,
    the per-epoch loss and accuracy, and val_loss agree to float32 rounding of the reordered
    batch sums, carried over the 12 steps (a bound of 64 roundings per step of each value's
    size); every rank holds the same History; only rank 0 wrote the CSV log."""
    r = dist.rank()
    x, y = data("mlp", 41, seed=3)
    xv, yv = data("mlp", 13, seed=4)
    sg.manual_seed(2)
    one = build("mlp", True)
    wrapped = dist.DistributedDataParallel(dist.convert_sync_batchnorm(copy.deepcopy(one)))
    common = {"epochs": 3, "batch_size": 16, "seed": 5, "verbose": 0,
              "validation_data": (xv, yv), "metrics": ["accuracy"]}
    h1 = sg.fit(one, nn.CrossEntropyLoss(), optim.SGD(one.parameters(), lr=0.1), x, y, **common)
    log = tmp_path / "log.csv"
    h2 = sg.fit(wrapped, nn.CrossEntropyLoss(), optim.SGD(wrapped.parameters(), lr=0.1), x, y,
                callbacks=[sg.callbacks.CSVLogger(log)], **common)
    steps = 3 * 3
    bad = []
    for name, p in wrapped.named_parameters():
        want = dict(one.named_parameters())[name].data
        bound = 64 * U * steps * (np.max(np.abs(want)) + 1)
        if not np.max(np.abs(p.data - want)) <= bound:
            bad.append(name)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        a, b = np.array(h1[key]), np.array(h2[key])
        if not np.all(np.abs(a - b) <= 64 * U * steps * (np.abs(a) + 1)):
            bad.append(f"{key}: {a} vs {b}")
    mine = np.array(h2["loss"] + h2["val_loss"], np.float64)
    theirs = mine.copy()
    dist.communicator().bcast_(theirs)
    wrote = os.path.exists(log)
    assert agree(not bad), bad
    assert agree(np.array_equal(mine, theirs))
    assert agree(wrote == (r == 0))


def test_evaluate_reduces_across_ranks():
    """sg.evaluate on a wrapped model: each rank evaluates its share; both get the whole
    data's mean loss, as one process computes it (to rounding of the sum)."""
    x, y = data("mlp", 11, seed=6)
    sg.manual_seed(3)
    one = build("mlp", False)
    wrapped = dist.DistributedDataParallel(copy.deepcopy(one))
    a = sg.evaluate(one, nn.CrossEntropyLoss(), x, y)
    b = sg.evaluate(wrapped, nn.CrossEntropyLoss(), x, y)
    ok = all(abs(a[k] - b[k]) <= 16 * U * (abs(a[k]) + 1) for k in a)
    assert agree(ok), (a, b)


def test_fit_refuses_dataloaders_that_shuffle_differently_on_the_ranks():
    """An unseeded DataLoader draws its seed from sg's RNG, seeded per rank here: the ranks
    would split different orders (samples twice or never), so fit raises on every rank before
    any step, naming the fix."""
    r = dist.rank()
    x, y = data("mlp", 16, seed=7)
    sg.manual_seed(50 + r)
    loader = sg.data.DataLoader(x, y, batch_size=8, shuffle=True)
    sg.manual_seed(0)
    model = dist.DistributedDataParallel(build("mlp", False))
    before = model.flat_storage.data.copy()
    with pytest.raises(ValueError, match="DataLoader's shuffling generator differs between ranks"):
        sg.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader,
               epochs=1, verbose=0)
    assert agree(np.array_equal(model.flat_storage.data, before))
    same = sg.data.DataLoader(x, y, batch_size=8, shuffle=True, seed=3)
    h = sg.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), same,
               epochs=1, verbose=0)
    assert agree(len(h["loss"]) == 1)


def test_only_rank_0_prints_progress(capfd):
    r = dist.rank()
    x, y = data("mlp", 16, seed=8)
    sg.manual_seed(0)
    model = dist.DistributedDataParallel(build("mlp", False))
    sg.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y, epochs=1,
           batch_size=8, verbose=2)
    out = capfd.readouterr()
    printed = bool((out.out + out.err).strip())
    assert agree(printed == (r == 0)), (out.out, out.err)


def test_fit_runs_the_compiled_step_on_ranks_bitwise_as_the_eager_one(monkeypatch):
    """A DistributedDataParallel model that compiles trains through the compiled step under
    fit (the tape calls DDP's per-layer hooks): 3 epochs of 4 even batches give the same
    parameters, running statistics and History as the eager fit, bit for bit, on each rank."""
    from steadygrad.compiled import CompiledStep

    x, y = data("mlp", 64, seed=8)
    runs, used = [], []
    real_call = CompiledStep.forward_backward

    def counting(self, *args, **kwargs):
        used.append(self._tape_for(args[0]) is not None)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(CompiledStep, "forward_backward", counting)
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr("steadygrad.training.run.unsupported", lambda m: "eager")
        sg.manual_seed(9)
        model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
        wrapped = dist.DistributedDataParallel(model)
        opt = optim.Adam(wrapped.parameters(), lr=1e-2, max_grad_norm=1.0)
        h = sg.fit(wrapped, nn.CrossEntropyLoss(), opt, x, y, epochs=3, batch_size=16, seed=1,
                   verbose=0)
        assert model.flat_storage is not None
        runs.append((h["loss"], model.flat_storage.data.copy(), [b.copy() for b in model.buffers()]))
    assert used and all(used)  # every compiled run's step went through a tape
    (lc, pc, bc), (le, pe, be) = runs
    same = (lc == le and np.array_equal(pc, pe)
            and all(np.array_equal(a, b) for a, b in zip(bc, be, strict=True)))
    assert agree(same)
