"""steadygrad.distributed in one process (the 2-rank tests are tests/distributed/, run under
mpiexec): nothing is imported until asked for, init() outside MPI is a one-process no-op,
DistributedDataParallel and SyncBatchNorm then behave exactly as the bare model and
BatchNorm, their bad arguments raise; BatchNorm's backward with a whole batch's sums (what
SyncBatchNorm gives it) against the kernel's own reduction; the backward hook DDP starts its
buckets from; fit's batch split between ranks."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

import steadygrad as sg
import steadygrad.distributed as dist
from steadygrad import _core, nn, optim
from steadygrad.data.batching import Batcher, shard_bounds
from steadygrad.training.checks import DroppedBatchWarning, batch_plan

U = float(np.finfo(np.float32).eps) / 2


def test_importing_steadygrad_imports_neither_distributed_nor_mpi4py():
    code = ("import sys, steadygrad, steadygrad.nn, steadygrad.training; "
            "print('steadygrad.distributed' in sys.modules, 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_init_outside_mpi_is_one_process():
    comm = dist.init()
    assert isinstance(comm, dist.SingleProcessCommunicator)
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    dist.barrier()
    buf = np.arange(4, dtype=np.float32)
    comm.allreduce_(buf)
    assert comm.iallreduce_(buf).test()
    np.testing.assert_array_equal(buf, np.arange(4))
    with pytest.raises(TypeError, match="comm must implement"):
        dist.init(object())  # type: ignore[arg-type]


def _mlp(norm: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 8), *([nn.BatchNorm1d(8)] if norm else []), nn.ReLU(),
                         nn.Linear(8, 3))


def _grads(model: nn.Module, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    loss = nn.CrossEntropyLoss()
    model.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward())
    return [p.grad.copy() for p in model.parameters()]


def test_one_process_ddp_and_syncbn_are_the_bare_model_bit_for_bit():
    sg.manual_seed(0)
    bare = _mlp()
    wrapped = dist.DistributedDataParallel(dist.convert_sync_batchnorm(copy.deepcopy(bare)))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)
    for a, b in zip(_grads(bare, x, y), _grads(wrapped, x, y), strict=True):
        np.testing.assert_array_equal(a, b)
    assert list(wrapped.state_dict()) == list(bare.state_dict())
    for k, v in bare.state_dict().items():
        np.testing.assert_array_equal(wrapped.state_dict()[k], v)
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in bare.named_parameters()]
    got, want = wrapped.summary(6, file=None), bare.summary(6, file=None)
    assert got["total_bytes"] == want["total_bytes"]
    assert [{**r, "layer": ""} for r in got["layers"]] == [{**r, "layer": ""} for r in want["layers"]]


def test_ddp_checkpoint_loads_into_the_bare_model(tmp_path):
    sg.manual_seed(1)
    wrapped = dist.DistributedDataParallel(_mlp())
    opt = optim.Adam(wrapped.parameters())
    sg.save(tmp_path / "m.safetensors", wrapped, opt)
    bare = _mlp()
    sg.load(tmp_path / "m.safetensors", bare)
    for k, v in wrapped.state_dict().items():
        np.testing.assert_array_equal(bare.state_dict()[k], v)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_settings():
    bn = nn.BatchNorm2d(4, eps=1e-3, momentum=None, affine=True)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), bn, nn.ReLU())
    model.eval()
    w, rm = bn.weight, bn.running_mean
    out = dist.convert_sync_batchnorm(model)
    assert out is model
    sync = model[1]
    assert isinstance(sync, dist.SyncBatchNorm)
    assert sync.weight is w and sync.running_mean is rm
    assert (sync.eps, sync.momentum, sync.training) == (1e-3, None, False)
    assert model.flat_storage is not None
    alone = dist.convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert isinstance(alone, dist.SyncBatchNorm)


def test_ddp_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"module must be an nn\.Module"):
        dist.DistributedDataParallel([nn.Linear(2, 2)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number, got 0"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=0)
    with pytest.raises(TypeError, match="already wrapped"):
        dist.DistributedDataParallel(dist.DistributedDataParallel(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="progress_thread must be a bool, got str"):
        dist.DistributedDataParallel(nn.Linear(2, 2), progress_thread="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="communicator must implement"):
        dist.DistributedDataParallel(nn.Linear(2, 2), communicator=3)  # type: ignore[arg-type]


def test_the_backward_hook_fires_once_per_layer_in_reverse_order():
    model = _mlp()
    order: list[str] = []
    for m in model:
        m._on_grads_written(lambda mod: order.append(type(mod).__name__))
    x = np.ones((4, 5), np.float32)
    model(x)
    model.backward(np.ones((4, 3), np.float32))
    assert order == ["Linear", "ReLU", "BatchNorm1d", "Linear"]
    for m in model:
        m._on_grads_written(None)
    model(x)
    model.backward(np.ones((4, 3), np.float32))
    assert len(order) == 4
    copy.deepcopy(model)  # a hook is not copied (it may hold a communicator)


def _bn_backward(g: np.ndarray, ctx: _core.BatchNormContext, w: np.ndarray, b: np.ndarray,
                 **kw: object) -> tuple[np.ndarray, np.ndarray]:
    sums = np.zeros((2, len(w)), np.float32)
    dx = _core.batchnorm_backward(g, w, b, ctx, sums[1], sums[0], **kw)
    assert dx is not None
    return dx, sums


@pytest.mark.parametrize("activation", ["none", "relu"])
def test_batchnorm_backward_with_the_whole_batchs_sums(isa, activation):
    """Half of a batch of 16, normalised by the whole batch's statistics and given the whole
    batch's sums of dy and dy * xhat, gets the whole batch's dL/dx for its rows: to the
    roundings of dx = k (dy - mean(dy) - xhat mean(dy xhat)) and of invstd recomputed from the
    float32 variance (a few units of roundoff of each term's size)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 5)).astype(np.float32) * 2 + 1
    g = rng.standard_normal((16, 5)).astype(np.float32)
    w = rng.standard_normal(5).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    mean, invstd = np.empty(5, np.float32), np.empty(5, np.float32)
    ctx = _core.BatchNormContext(mean, invstd, True, activation)
    _core.batchnorm_forward(x, w, b, None, None, None, ctx)
    full, sums = _bn_backward(g, ctx, w, b)
    var = (1 / invstd.astype(np.float64) ** 2 - 1e-5).astype(np.float32)
    hm, hi = np.empty(5, np.float32), np.empty(5, np.float32)
    half = _core.BatchNormContext(hm, hi, False, activation)
    _core.batchnorm_forward(x[:8], w, b, mean, var, None, half)
    dx, _ = _bn_backward(g[:8], half, w, b, batch_sums=sums, batch_count=16)
    k = np.abs(w * invstd).astype(np.float64)
    xhat = (x[:8] - mean) * invstd
    terms = np.abs(g[:8]) + np.abs(sums[0] / 16) + np.abs(xhat * sums[1] / 16)
    np.testing.assert_array_less(np.abs(dx - full[:8]), 16 * U * k * terms + 1e-30)
    alone, _ = _bn_backward(g[:8], half, w, b)  # its own rows, normalised by given statistics
    assert np.max(np.abs(alone - full[:8])) > 1e3 * np.max(16 * U * k * terms)


def test_batchnorm_backward_rejects_bad_sums_and_writes_nothing():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    ctx = _core.BatchNormContext(np.empty(3, np.float32), np.empty(3, np.float32), True)
    _core.batchnorm_forward(x, None, None, None, None, None, ctx)
    dx = np.full((4, 3), 7.0, np.float32)
    for kw, msg in [({"batch_sums": np.zeros((2, 3), np.float32)}, "batch_sums and batch_count go together"),
                    ({"batch_count": 8}, "batch_sums and batch_count go together"),
                    ({"batch_sums": np.zeros((3, 3), np.float32), "batch_count": 8}, "batch_sums"),
                    ({"batch_sums": np.zeros((2, 3), np.float32), "batch_count": 3}, "batch_count must be at least")]:
        with pytest.raises(ValueError, match=msg):
            _core.batchnorm_backward(x, None, None, ctx, None, None, grad_input=dx, **kw)
        assert np.all(dx == 7.0)


@pytest.mark.parametrize("ordered", [False, True])
def test_batches_split_between_ranks_are_the_one_process_batches(ordered):
    n, bs = 23, 8
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    order = np.random.default_rng(0).permutation(n) if ordered else None
    one = Batcher([x], bs, n, slots=1)
    parts = [Batcher([x], bs, n, slots=1, shard=(r, 3)) for r in range(3)]
    for b in range(len(one)):
        whole = one.get(b, order)[0].copy()
        split = np.concatenate([p.get(b, order)[0] for p in parts])
        np.testing.assert_array_equal(split, whole)
    assert [shard_bounds(7, r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 7)]


def test_batch_plan_gives_every_rank_enough_samples():
    model = _mlp(norm=True)
    with pytest.raises(ValueError, match="batch_size=3 is split between 2 ranks"):
        batch_plan(model, 20, 3, False, ranks=2)
    with pytest.warns(DroppedBatchWarning, match="3 sample"):
        assert batch_plan(model, 19, 8, False, ranks=2) == (16, 2)  # 3 < 2 ranks x 2
    assert batch_plan(model, 20, 8, False, ranks=2) == (20, 3)  # 4 = 2 x 2
    with pytest.warns(DroppedBatchWarning, match="1 sample"):
        assert batch_plan(_mlp(norm=False), 17, 8, False, ranks=2) == (16, 2)
