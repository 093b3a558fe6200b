"""The pieces of a running sg.fit: Run (what the argument checks settled), Loop (what
callbacks see, with the epoch's mini-batches from steadygrad.data's Batcher), the batch loss
(weighted when the loss returns per-sample losses) and the per-epoch metric sums. The loop's
order of calls is in loop.py."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad import checkpoint
from steadygrad._threads import Contention
from steadygrad.callbacks import Callback, CallbackList
from steadygrad.compiled import CompiledStep, unsupported
from steadygrad.data import DataLoader
from steadygrad.data.batching import Batcher
from steadygrad.metrics import MetricFn
from steadygrad.training.history import FitState

Arrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


class Detach:
    """On the way out of fit, even by an exception, callbacks that hook into the model
    (GradientMonitor's layer taps) take their hooks off."""

    def __init__(self, callbacks: CallbackList) -> None:
        self.callbacks = callbacks

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        for c in self.callbacks.callbacks:
            detach = getattr(c, "detach", None)
            if callable(detach):
                detach()


def is_classification(y: np.ndarray) -> bool:
    return y.dtype.kind in "iu"


def batch_loss(loss_fn: Any, pred: np.ndarray, y: np.ndarray,
               w: np.ndarray | None) -> tuple[float, np.ndarray | None]:
    """The batch's loss and the grad_output its backward takes. A loss with reduction 'none'
    returns per-sample losses (per element for the elementwise losses: a sample's loss is
    their mean); fit takes sum(w_i * loss_i) / batch size (Keras' normalisation, w = 1 without
    weights) and hands the loss w_i / (batch size * elements per sample) as its upstream
    gradient. Any other loss reduces itself (grad_output None)."""
    if getattr(loss_fn, "reduction", None) != "none":
        return float(loss_fn(pred, y)), None
    per = np.asarray(loss_fn(pred, y))
    n = len(pred)
    if per.ndim == 0 or len(per) != n:
        raise ValueError(f"fit: {loss_fn!r} returned losses of shape {per.shape} for a batch of {n}: "
                         "reduction='none' must give one loss (or one per element) per sample")
    k = per.size // n
    w = np.ones(n) if w is None else w
    loss = float(np.dot(per.reshape(n, k).sum(axis=1, dtype=np.float64), w)) / (n * k)
    scale = (w / (n * k)).astype(np.float32).reshape(n, *(1,) * (per.ndim - 1))
    return loss, np.broadcast_to(scale, per.shape)


@dataclass
class Run:
    """What fit's checks settled, fixed for the whole call."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None  # per-sample loss weights (sample_weight times class_weight)
    val: Arrays | None  # (x, y, weights or None)
    epochs: int
    batch_size: int
    n_used: int  # samples per epoch after a dropped final batch
    steps_per_epoch: int
    shuffle: bool
    interval: str | None  # the scheduler's unit: "epoch", "step" or None (no scheduler)
    max_steps: int | None
    skip_dx: bool  # model.backward takes input_grad=False: the first layer skips dL/dx
    callbacks: list[Callback]  # the caller's, checked
    metrics: tuple[tuple[str, MetricFn], ...]
    loader: DataLoader | None  # fit was given one: its generator holds the order
    prefetch: bool  # gather the next batch in a background thread (DataLoader(prefetch=True))
    comm: Any = None  # a DistributedDataParallel model's communicator (> 1 rank), else None

    @property
    def main(self) -> bool:
        """Whether this process prints and writes files (rank 0, or the only process)."""
        return self.comm is None or self.comm.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """(rank, ranks): each batch is split between the ranks (data.batching.shard_bounds)."""
        return (0, 1) if self.comm is None else (self.comm.rank, self.comm.size)

    def grad_scale(self, batch: int, rows: int) -> float:
        """What this rank's dL/dpred is multiplied by so that the average across ranks is the
        gradient of the whole batch's loss: rows * ranks / batch rows, 1 when the batch splits
        evenly (a final partial batch may not)."""
        ranks = self.shard[1]
        total = min(self.batch_size, self.n_used - batch * self.batch_size)
        return 1.0 if ranks == 1 or rows * ranks == total else rows * ranks / total

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.x, self.y) if self.w is None else (self.x, self.y, self.w)

    @property
    def dropped(self) -> int:
        return len(self.x) - self.n_used

    def done(self, state: FitState) -> bool:
        return self.max_steps is not None and state.global_step >= self.max_steps

    def steps_left(self, epoch: int, batch: int, global_step: int) -> int:
        """Optimizer steps this fit will take from that position."""
        left = max(self.epochs - epoch, 0) * self.steps_per_epoch - batch
        return max(min(left, self.max_steps - global_step) if self.max_steps is not None else left, 0)


class Loop:
    """What callbacks see of a running fit."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, scheduler: Any, state: FitState,
                 run: Run) -> None:
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.state, self.run = state, run
        self.has_validation = run.val is not None
        self.classification = is_classification(run.y)
        self.metric_names = tuple(name for name, _ in run.metrics)
        self.stop_training = False
        self.callbacks: CallbackList | None = None
        # the layers as two C++ calls a step, bitwise the eager step (steadygrad.compiled),
        # when every layer has a compiled form; dL/dx of the input is then never computed
        self.compiled = (CompiledStep(model, loss_fn, optimizer, warn=False)
                         if run.skip_dx and unsupported(model) is None else None)
        self.contention = Contention()  # each step on the cores other processes leave free
        # A batch is dead once the next step begins: one reused buffer, two when the next
        # batch is gathered while the current one trains.
        self.batches = Batcher(run.arrays, run.batch_size, run.n_used,
                               slots=2 if run.prefetch else 1, shard=run.shard)

    def running_logs(self) -> dict[str, float]:
        return means(self.state.acc, self.metric_names)

    def fit_state(self) -> dict[str, Any]:
        if self.callbacks is not None:
            self.state.callbacks = self.callbacks.state_dict()
        return self.state.state_dict()

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        checkpoint.save(path, self.model, self.optimizer, self.scheduler, extra={"fit": self.fit_state()})


def new_acc(optimizer: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    acc = {"loss_sum": 0.0, "n": 0, "norm_sum": 0.0, "norm_max": 0.0, "norm_count": 0,
           "skipped_start": intro.skipped_steps(optimizer), "lr": intro.get_lr(optimizer), "time": 0.0}
    acc.update({f"metric:{name}": 0.0 for name in metrics})
    return acc


def summed(acc: dict[str, float], comm: Any) -> dict[str, float]:
    """acc with its sample sums (loss, metrics, count) summed across comm's ranks (one
    allreduce); acc itself when comm is None."""
    if comm is None:
        return acc
    keys = ["loss_sum", "n", *(k for k in acc if k.startswith("metric:"))]
    buf = np.array([acc[k] for k in keys], np.float64)
    comm.allreduce_(buf)
    return {**acc, **dict(zip(keys, buf.tolist(), strict=True))}


def from_rank0(value: int, comm: Any) -> int:
    """Rank 0's `value` (an int64), on every rank."""
    buf = np.array([value], np.int64)
    comm.bcast_(buf)
    return int(buf[0])


def any_rank(flag: bool, comm: Any) -> bool:
    """Whether `flag` is set on any rank (fit's stop decision, taken together)."""
    if comm is None:
        return flag
    buf = np.array([float(flag)])
    comm.allreduce_(buf)
    return bool(buf[0])


def means(acc: dict[str, float], metrics: tuple[str, ...]) -> dict[str, float]:
    """The loss and each metric averaged over the samples summed into acc so far."""
    n = max(acc["n"], 1)
    return {"loss": acc["loss_sum"] / n, **{m: acc.get(f"metric:{m}", 0.0) / n for m in metrics}}


def account(acc: dict[str, float], loss: float, pred: np.ndarray, yb: np.ndarray, norm: Any,
            metrics: tuple[tuple[str, MetricFn], ...]) -> dict[str, float]:
    size = len(yb)
    acc["loss_sum"] += loss * size
    acc["n"] += size
    logs = {"loss": loss, "size": float(size)}
    for name, fn in metrics:
        total = float(np.sum(fn(pred, yb), dtype=np.float64))
        acc[f"metric:{name}"] = acc.get(f"metric:{name}", 0.0) + total
        logs[name] = total / size
    if norm is not None:
        norm = float(norm)
        logs["grad_norm"] = norm
        if math.isfinite(norm):
            acc["norm_sum"] += norm
            acc["norm_max"] = max(acc["norm_max"], norm)
            acc["norm_count"] += 1
    return logs


def epoch_logs(acc: dict[str, float], optimizer: Any, metrics: tuple[str, ...]) -> dict[str, float]:
    logs = means(acc, metrics)
    logs["lr"] = acc["lr"]
    if acc["norm_count"]:
        logs["grad_norm"] = acc["norm_sum"] / acc["norm_count"]
        logs["grad_norm_max"] = acc["norm_max"]
    logs["skipped_steps"] = float(intro.skipped_steps(optimizer) - acc["skipped_start"])
    logs["samples_per_s"] = acc["n"] / max(acc["time"], 1e-9)
    return logs
