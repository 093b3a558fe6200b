"""DistributedDataParallel and SyncBatchNorm on 2 ranks (mpiexec -n 2, see conftest.py): the
averaged gradient of two half batches against one process's full batch and a float64 torch
oracle, bitwise-identical parameters across ranks, a non-finite gradient on one rank skipping
the step on both."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from mpi_support import (
    U,
    agree,
    build,
    checksum,
    data,
    same_on_every_rank,
    torch_grads,
    torch_twin,
)
from test_compiled_step import _eager_step

import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import nn, optim
from steadygrad.optim._norms import NonFiniteGradientWarning

CASES = [(kind, norm) for kind in ("mlp", "cnn") for norm in (False, True)]


def _step(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    out = np.array(model(x))
    loss(out, y)
    model.backward(loss.backward())
    return out


@pytest.mark.parametrize(("kind", "sync"), CASES, ids=[f"{k}-{'syncbn' if s else 'plain'}" for k, s in CASES])
def test_two_ranks_with_half_batches_match_one_process_with_the_full_batch(kind, sync):
    """Each rank trains on its half of a batch of 16 (with SyncBatchNorm after the first layer
    when sync); the averaged gradient must be as close to torch's float64 gradient of the whole
    batch as one steadygrad process with the whole batch is: within 4 times that process's own
    error plus 8 roundings of the gradient (the two differ only in the order of the batch sums,
    and in SyncBatchNorm's statistics summed per rank first). Running statistics likewise."""
    r = dist.rank()
    sg.manual_seed(3)
    model = build(kind, sync)
    twin = torch_twin(model, kind, sync)
    one = copy.deepcopy(model)
    wrapped = dist.DistributedDataParallel(
        dist.convert_sync_batchnorm(copy.deepcopy(model)) if sync else copy.deepcopy(model))
    x, y = data(kind, 16)
    half = slice(8 * r, 8 * r + 8)
    _step(wrapped, x[half], y[half])
    _step(one, x, y)
    want = torch_grads(twin, x, y)
    bad = []
    mine = dict(one.named_parameters())
    for name, p in wrapped.named_parameters():
        star = want[name]
        bound = 4 * np.max(np.abs(mine[name].grad - star)) + 8 * U * np.max(np.abs(star))
        err = np.max(np.abs(p.grad - star))
        if not err <= bound:
            bad.append(f"{name}: error {err:.3g} > bound {bound:.3g}")
    if sync:
        tb = dict(twin.named_buffers())
        for name, buf in wrapped.named_buffers():
            if buf.dtype == np.float32:
                star = tb[name].numpy()
                bound = 4 * np.max(np.abs(dict(one.named_buffers())[name] - star)) + 8 * U * np.max(np.abs(star))
                if not np.max(np.abs(buf - star)) <= bound:
                    bad.append(f"{name}: {np.max(np.abs(buf - star)):.3g} > {bound:.3g}")
    assert agree(not bad), bad


def test_local_batchnorm_averages_each_ranks_own_statistics():
    """Without SyncBatchNorm each rank normalises by its own half's statistics (torch's DDP):
    the gradient is the float32 mean of the two halves' gradients, bit for bit (a sum of two
    is the same in any order, and halving is exact)."""
    r = dist.rank()
    sg.manual_seed(4)
    model = build("mlp", True)
    wrapped = dist.DistributedDataParallel(copy.deepcopy(model))
    halves = [copy.deepcopy(model), copy.deepcopy(model)]
    x, y = data("mlp", 16, seed=1)
    _step(wrapped, x[8 * r: 8 * r + 8], y[8 * r: 8 * r + 8])
    for i, m in enumerate(halves):
        _step(m, x[8 * i: 8 * i + 8], y[8 * i: 8 * i + 8])
    parts = [dict(m.named_parameters()) for m in halves]
    bad = [name for name, p in wrapped.named_parameters()
           if not np.array_equal(p.grad, (parts[0][name].grad + parts[1][name].grad) / np.float32(2))]
    assert agree(not bad), bad


@pytest.mark.parametrize(("kind", "sync"), [("mlp", True), ("cnn", False)])
def test_parameters_stay_bitwise_identical_across_ranks(kind, sync):
    """5 Adam steps with clipping on different data per rank: the parameters (and SyncBatchNorm's
    running statistics) have the same checksum on both ranks after every step, and differ from
    the start (the steps did train)."""
    r = dist.rank()
    sg.manual_seed(100 + r)  # different initial values: the wrap must broadcast rank 0's
    model = build(kind, False)
    if sync:
        model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
        model = dist.convert_sync_batchnorm(model)
    wrapped = dist.DistributedDataParallel(model, bucket_cap_mb=1e-4)  # several buckets (26 floats)
    storage = model.flat_storage
    assert storage is not None
    start = storage.data.copy()
    opt = optim.Adam(wrapped.parameters(), lr=1e-2, max_grad_norm=1.0)  # the fused clip
    x, y = data(kind, 32, seed=10 + r)
    loss = nn.CrossEntropyLoss()
    same = []
    for _ in range(5):
        opt.zero_grad()
        loss(wrapped(x), y)
        wrapped.backward(loss.backward())
        opt.step()
        bufs = wrapped.buffers() if sync else []
        same.append(same_on_every_rank(checksum([storage.data, *bufs])))
    moved = agree(not np.array_equal(storage.data, start))
    assert all(same), same
    assert moved
    assert len(wrapped._buckets.ranges) > 1


def test_a_non_finite_gradient_on_one_rank_skips_the_step_on_every_rank():
    """Rank 1's batch holds a NaN: the averaged gradient is NaN on both ranks, so both
    optimizers skip the step (parameters unchanged, one skipped step each), and warn."""
    r = dist.rank()
    sg.manual_seed(5)
    model = build("mlp", False)
    wrapped = dist.DistributedDataParallel(model)
    opt = optim.SGD(wrapped.parameters(), lr=0.1)
    x, y = data("mlp", 8, seed=2)
    if r == 1:
        x[3, 2] = np.nan
    storage = model.flat_storage
    assert storage is not None
    before = storage.data.copy()
    loss = nn.CrossEntropyLoss()
    opt.zero_grad()
    loss(wrapped(x), y)
    wrapped.backward(loss.backward())
    with pytest.warns(NonFiniteGradientWarning):
        opt.step()
    ok = np.array_equal(storage.data, before) and opt.skipped_steps == 1
    assert agree(ok)


def test_syncbatchnorm_reduces_only_in_training():
    """Training mode: each rank's output is normalised by the statistics of both ranks'
    batches (one process's BatchNorm on the concatenation, to rounding); eval mode without
    running statistics (batch statistics, as torch): each rank's own batch, bit for bit the
    plain BatchNorm's, with no collective (evaluate may run different batch counts per rank)."""
    r = dist.rank()
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((12, 3)) * 3 + 1).astype(np.float32)
    mine = x[6 * r: 6 * r + 6]
    sync = dist.SyncBatchNorm(3, track_running_stats=False)
    plain = nn.BatchNorm1d(3, track_running_stats=False)
    got_train = np.array(sync(mine))
    want_train = np.array(plain(x))[6 * r: 6 * r + 6]
    sync.eval()
    plain.eval()
    got_eval, want_eval = np.array(sync(mine)), np.array(plain(mine))
    close = np.max(np.abs(got_train - want_train)) <= 64 * U * (np.max(np.abs(want_train)) + 1)
    assert agree(bool(close) and np.array_equal(got_eval, want_eval))


@pytest.mark.parametrize("cap_mb", [1e-4, 1.0], ids=["buckets", "one-bucket"])
def test_the_compiled_step_of_a_ddp_model_is_its_eager_step_bit_for_bit(cap_mb):
    """sg.compile_step compiles a DistributedDataParallel model through the module it wraps:
    the tape calls each layer's gradients-written hook after its backward, so the same buckets
    start in the same order (the ranks' collectives still match) while the rest of the
    backward runs. 4 Adam steps with clipping on different data per rank, compiled against
    eager (Linear, BatchNorm1d with the fused ReLU, Dropout): the same losses, parameters,
    gradients and running statistics bit for bit, the parameters the same on every rank."""
    r = dist.rank()
    runs = []
    for compiled in (True, False):
        sg.manual_seed(7)
        model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.25),
                              nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
        wrapped = dist.DistributedDataParallel(model, bucket_cap_mb=cap_mb)
        opt = optim.Adam(wrapped.parameters(), lr=1e-2, max_grad_norm=1.0)
        loss_fn = nn.CrossEntropyLoss()
        step = sg.compile_step(wrapped, loss_fn, opt)
        assert step.compiled, step.reason
        losses = []
        for i in range(4):
            x, y = data("mlp", 12, seed=20 + 2 * i + r)
            losses.append(step(x, y) if compiled else _eager_step(wrapped, opt, loss_fn, x, y))
        assert model.flat_storage is not None
        runs.append((losses, model.flat_storage.data.copy(), model.flat_storage.grad.copy(),
                     [b.copy() for b in model.buffers()]))
    (lc, pc, gc, bc), (le, pe, ge, be) = runs
    ok = (lc == le and np.array_equal(pc, pe) and np.array_equal(gc, ge)
          and all(np.array_equal(a, b) for a, b in zip(bc, be, strict=True)))
    assert agree(ok)
    # (the running statistics differ between ranks: each folds in its own batch after the
    # forward's broadcast of rank 0's, as in torch's DDP)
    assert same_on_every_rank(checksum([pc]))


def test_a_training_forward_first_copies_rank_0s_buffers_in_one_broadcast():
    """broadcast_buffers: the running statistics (float32) and batch counts (int64) of every
    BatchNorm become rank 0's, through one coalesced broadcast of their bytes."""
    r = dist.rank()
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8),
                          nn.BatchNorm1d(8), nn.Linear(8, 4))
    wrapped = dist.DistributedDataParallel(model)
    calls = []
    comm = wrapped.communicator
    real = comm.bcast_

    def counting(buf, root=0):
        calls.append(buf.nbytes)
        real(buf, root)

    comm.bcast_ = counting  # type: ignore[method-assign]
    try:
        for i, bn in enumerate((model[1], model[4])):
            bn.running_mean[...] = np.arange(8, dtype=np.float32) * (i + 1) if r == 0 else -1.0
            bn.running_var[...] = 2.0 + i if r == 0 else 9.0
            bn.num_batches_tracked[...] = 7 + i if r == 0 else 3
        wrapped.before_forward()
    finally:
        del comm.bcast_
    assert calls == [sum(b.nbytes for b in model.buffers())]
    ok = all(np.array_equal(bn.running_mean, np.arange(8, dtype=np.float32) * (i + 1))
             and np.all(bn.running_var == 2.0 + i) and int(bn.num_batches_tracked) == 7 + i
             for i, bn in enumerate((model[1], model[4])))
    assert agree(ok)
