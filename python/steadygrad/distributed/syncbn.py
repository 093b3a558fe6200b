"""SyncBatchNorm: BatchNorm whose training statistics are those of the whole batch across
ranks, so N ranks with batch B/N train exactly like one process with batch B (torch's
nn.SyncBatchNorm). It is BatchNorm's class body and kernels: the forward sums each channel
over its rows, allreduces (count, sums), then the squared deviations from the global mean
(the kernel's two-pass variance), and has the kernel normalise by those statistics; the
backward runs the kernel's reduction alone (the per-channel sums of dL/dy and dL/dy * xhat),
allreduces them, and has the kernel compute dL/dx from the global sums. One process (or eval
mode) is plain BatchNorm."""

from __future__ import annotations

import numpy as np

from steadygrad import _core
from steadygrad.distributed.comm import Communicator
from steadygrad.distributed.ddp import _resolve
from steadygrad.nn.batchnorm import BatchNorm1d, BatchNorm2d, _BatchNorm
from steadygrad.nn.container import _ModuleSequence
from steadygrad.nn.module import Module

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


class SyncBatchNorm(_BatchNorm):
    """torch.nn.SyncBatchNorm: (N, C), (N, C, L) or (N, C, H, W), normalised per channel over
    the batch of every rank of `communicator` (default: steadygrad.distributed.init()'s) in
    training mode; running statistics updated from those, so they stay equal on all ranks."""

    _ranks = (2, 3, 4)
    _expected = "2D, 3D or 4D"
    communicator: Communicator
    _synced_rows: int  # the whole batch's rows when the last forward was synced, else 0

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 communicator: Communicator | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.communicator = _resolve(communicator)
        self._synced_rows = 0

    def _batch_stats(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        comm = self.communicator
        self._synced_rows = 0
        if comm.size == 1 or not self.training:  # eval without running statistics: local
            return None
        c = self.num_features
        sums, ssq, mean64 = (self._scratch(k, (c + 1,) if k == "sums" else (c,), np.float64)
                             for k in ("sums", "ssq", "mean64"))
        mean, var = (self._scratch(k, (c,), np.float32) for k in ("mean", "var"))
        np.sum(rows, axis=0, dtype=np.float64, out=sums[:c])
        sums[c] = len(rows)
        comm.allreduce_(sums)
        n = int(sums[c])
        if n <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"{n} across {comm.size} ranks")
        np.divide(sums[:c], n, out=mean64)
        np.copyto(mean, mean64, casting="same_kind")  # as the kernel: the mean rounded, then
        dev = self._buffer("sync_dev", rows.shape)  # the squared deviations from it, summed
        np.subtract(rows, mean, out=dev)  # in double (in reused buffers: a step allocates
        np.multiply(dev, dev, out=dev)  # nothing)
        np.sum(dev, axis=0, dtype=np.float64, out=ssq)
        comm.allreduce_(ssq)
        if self.track_running_stats:
            self._update_running(mean64, ssq, n)
        self._synced_rows = n
        np.divide(ssq, n, out=mean64)  # mean64 is read no more: the biased variance
        np.copyto(var, mean64, casting="same_kind")
        return mean, var

    def _scratch(self, key: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A per-layer array of the statistics' reduction, made once and reused."""
        d: dict[str, np.ndarray] = self.__dict__.setdefault("_sync_scratch", {})
        a = d.get(key)
        if a is None or a.shape != shape:
            a = d[key] = np.empty(shape, dtype)
        return a

    def _update_running(self, mean: np.ndarray, ssq: np.ndarray, n: int) -> None:
        """The kernel's running update (in double, unbiased variance) from the whole batch."""
        rm, rv, nbt = self.running_mean, self.running_var, self.num_batches_tracked
        if rm is None or rv is None or nbt is None:
            return
        nbt += 1
        # the kernel's factor: a float32, widened
        m = float(np.float32(self.momentum if self.momentum is not None else 1.0 / float(nbt)))
        rm[...] = (1.0 - m) * rm.astype(np.float64) + m * mean
        rv[...] = (1.0 - m) * rv.astype(np.float64) + m * (ssq / (n - 1))

    def _batch_sums(self, g: np.ndarray, ctx: _core.BatchNormContext
                    ) -> tuple[np.ndarray, int] | None:
        if not self._synced_rows:
            return None
        c = self.num_features
        local = self._scratch("local", (2, c), np.float32)  # [sum dy, sum dy * xhat] here
        w, b = self.weight, self.bias
        _core.batchnorm_backward(g, None if w is None else w.data, None if b is None else b.data,
                                 ctx, local[1], local[0], compute_grad_input=False)
        if w is not None and b is not None:  # each rank's own: DDP averages them
            w.accumulate_grad(local[1])
            b.accumulate_grad(local[0])
        total = self._scratch("total", (2, c), np.float32)
        np.copyto(total, local)
        self.communicator.allreduce_(total)
        return total, self._synced_rows


def convert_sync_batchnorm(module: Module, communicator: Communicator | None = None) -> Module:
    """torch's SyncBatchNorm.convert_sync_batchnorm: every BatchNorm1d/BatchNorm2d in `module`
    replaced by a SyncBatchNorm with its settings, parameters and buffers (the same objects);
    returns the module (a new one when `module` itself is a BatchNorm). Convert before
    creating the optimizer and wrapping in DistributedDataParallel."""
    if isinstance(module, (BatchNorm1d, BatchNorm2d)):
        return _synced(module, communicator)
    changed = False
    for parent in module.modules():
        for key, child in list(parent._modules.items()):
            if isinstance(child, (BatchNorm1d, BatchNorm2d)):
                new = _synced(child, communicator)
                if isinstance(parent, _ModuleSequence):
                    parent[list(parent._modules).index(key)] = new
                else:
                    setattr(parent, key, new)
                changed = True
    if changed:
        module._flatten_parameters()
    return module


def _synced(bn: _BatchNorm, communicator: Communicator | None) -> SyncBatchNorm:
    new = SyncBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine,
                        bn.track_running_stats, communicator)
    if bn.weight is not None and bn.bias is not None:
        new.weight, new.bias = bn.weight, bn.bias
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new.register_buffer(name, getattr(bn, name))
    new.train(bn.training)
    return new
