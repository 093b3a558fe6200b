"""The pieces of a running sg.fit: Run (what the argument checks settled), Batches (the
epoch's mini-batches), Loop (what callbacks see) and the per-epoch metric sums. The loop's
order of calls is in loop.py."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad import checkpoint
from steadygrad.callbacks import Callback, CallbackList
from steadygrad.training.history import FitState


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


def n_correct(pred: np.ndarray, y: np.ndarray) -> int:
    if pred.ndim == 2 and pred.shape[1] > 1:
        return int(np.count_nonzero(pred.argmax(axis=1) == y))
    return int(np.count_nonzero((np.reshape(pred, y.shape) > 0) == (y > 0)))  # one binary logit


@dataclass
class Run:
    """What fit's checks settled, fixed for the whole call."""

    x: np.ndarray
    y: np.ndarray
    val: tuple[np.ndarray, np.ndarray] | None
    epochs: int
    batch_size: int
    n_used: int  # samples per epoch after a dropped final batch
    steps_per_epoch: int
    shuffle: bool
    interval: str | None  # the scheduler's unit: "epoch", "step" or None (no scheduler)
    max_steps: int | None
    skip_dx: bool  # model.backward takes input_grad=False: the first layer skips dL/dx
    callbacks: list[Callback]  # the caller's, checked

    @property
    def dropped(self) -> int:
        return len(self.x) - self.n_used

    def done(self, state: FitState) -> bool:
        return self.max_steps is not None and state.global_step >= self.max_steps

    def steps_left(self, epoch: int, batch: int, global_step: int) -> int:
        """Optimizer steps this fit will take from that position."""
        left = max(self.epochs - epoch, 0) * self.steps_per_epoch - batch
        return max(min(left, self.max_steps - global_step) if self.max_steps is not None else left, 0)


class Batches:
    """Mini-batch b of an epoch's order; full shuffled batches gather into reused buffers (the
    model may keep its input until backward, so a buffer is only rewritten by the next batch)."""

    def __init__(self, run: Run) -> None:
        self.x, self.y, self.bs, self.n = run.x, run.y, run.batch_size, run.n_used
        self.xbuf = np.empty((self.bs, *self.x.shape[1:]), dtype=self.x.dtype)
        self.ybuf = np.empty((self.bs, *self.y.shape[1:]), dtype=self.y.dtype)

    def get(self, b: int, perm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = b * self.bs, min((b + 1) * self.bs, self.n)
        if perm is None:
            return self.x[lo:hi], self.y[lo:hi]
        if hi - lo == self.bs:
            return (np.take(self.x, perm[lo:hi], axis=0, out=self.xbuf),
                    np.take(self.y, perm[lo:hi], axis=0, out=self.ybuf))
        return self.x[perm[lo:hi]], self.y[perm[lo:hi]]


class Loop:
    """What callbacks see of a running fit."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, scheduler: Any, state: FitState,
                 run: Run) -> None:
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.state, self.run = state, run
        self.has_validation = run.val is not None
        self.classification = is_classification(run.y)
        self.stop_training = False
        self.callbacks: CallbackList | None = None
        self.batches = Batches(run)

    def running_logs(self) -> dict[str, float]:
        a = self.state.acc
        n = max(a["n"], 1)
        logs = {"loss": a["loss_sum"] / n}
        if self.classification:
            logs["accuracy"] = a["correct"] / n
        return logs

    def fit_state(self) -> dict[str, Any]:
        if self.callbacks is not None:
            self.state.callbacks = self.callbacks.state_dict()
        return self.state.state_dict()

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        checkpoint.save(path, self.model, self.optimizer, self.scheduler, extra={"fit": self.fit_state()})


def new_acc(optimizer: Any) -> dict[str, float]:
    return {"loss_sum": 0.0, "n": 0, "correct": 0, "norm_sum": 0.0, "norm_max": 0.0,
            "norm_count": 0, "skipped_start": intro.skipped_steps(optimizer), "lr": intro.get_lr(optimizer),
            "time": 0.0}


def account(acc: dict[str, float], loss: float, pred: np.ndarray, yb: np.ndarray, norm: Any,
             classification: bool) -> dict[str, float]:
    size = len(yb)
    acc["loss_sum"] += loss * size
    acc["n"] += size
    logs = {"loss": loss, "size": float(size)}
    if classification:
        c = n_correct(pred, yb)
        acc["correct"] += c
        logs["accuracy"] = c / size
    if norm is not None:
        norm = float(norm)
        logs["grad_norm"] = norm
        if math.isfinite(norm):
            acc["norm_sum"] += norm
            acc["norm_max"] = max(acc["norm_max"], norm)
            acc["norm_count"] += 1
    return logs


def epoch_logs(acc: dict[str, float], optimizer: Any, classification: bool) -> dict[str, float]:
    n = max(acc["n"], 1)
    logs = {"loss": acc["loss_sum"] / n}
    if classification:
        logs["accuracy"] = acc["correct"] / n
    logs["lr"] = acc["lr"]
    if acc["norm_count"]:
        logs["grad_norm"] = acc["norm_sum"] / acc["norm_count"]
        logs["grad_norm_max"] = acc["norm_max"]
    logs["skipped_steps"] = float(intro.skipped_steps(optimizer) - acc["skipped_start"])
    logs["samples_per_s"] = acc["n"] / max(acc["time"], 1e-9)
    return logs
