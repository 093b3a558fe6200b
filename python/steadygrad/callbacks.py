"""Callbacks for `sg.fit` (Keras names and semantics): EarlyStopping, ModelCheckpoint,
ReduceLROnPlateauCallback, CSVLogger, TerminateOnNaN. Each sees the running loop through `self.loop`
(model, optimizer, scheduler, state, stop_training) and can save/restore its own state so
that a resumed fit behaves as if it had never stopped.

It sits below both users of the hook interface, `steadygrad.training` (which calls the hooks)
and `steadygrad.diagnostics` (whose GradientMonitor is a Callback), so it imports only
`steadygrad._introspect`: a checkpoint is written through `loop.save_checkpoint`."""

from __future__ import annotations

import copy
import csv
import math
import os
import string
from typing import Any

import numpy as np

from steadygrad import _introspect as intro

# CallbackList is fit's own (steadygrad.training.loop), not part of the interface.
__all__ = ["CSVLogger", "Callback", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateauCallback",
           "TerminateOnNaN"]


class Callback:
    """Hooks, in loop order: on_train_begin, on_epoch_begin, on_batch_begin,
    on_before_optimizer_step (gradients are fresh), on_batch_end, on_epoch_end, on_train_end.
    Set `self.loop.stop_training = True` to stop after the current batch."""

    saves_checkpoint = False  # checkpoint writers run after every other callback's epoch end
    writes_files = False  # under MPI (a DistributedDataParallel model) it runs on rank 0 only
    loop: Any = None

    def set_loop(self, loop: Any) -> None:
        self.loop = loop

    def on_train_begin(self, logs: dict[str, float]) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_batch_begin(self, step: int) -> None: ...
    def on_before_optimizer_step(self, step: int) -> None: ...
    def on_batch_end(self, step: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, logs: dict[str, float]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _resolve_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _check_logged(who: str, how: str, key: str, loop: Any) -> None:
    if key.startswith("val_") and not loop.has_validation:
        raise ValueError(f"{who}: {how} {key!r} but fit was given no validation_data; pass "
                         f"validation_data or use {key[4:]!r}")
    if key.removeprefix("val_") == "accuracy" and "accuracy" not in getattr(loop, "metric_names", ()):
        why = ("fit's metrics do not include 'accuracy'" if loop.classification
               else "fit logs no accuracy for float (regression) targets")
        raise ValueError(f"{who}: {how} {key!r} but {why}; use {key.replace('accuracy', 'loss')!r}")


class _Monitor(Callback):
    """Shared logic: track the best value of `monitor` with a `min_delta` margin."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_train_begin(self, logs: dict[str, float]) -> None:
        """Refuse, before any step, a metric this fit will never log (other names may come
        from other callbacks, so they are looked up at the first epoch end)."""
        _check_logged(type(self).__name__, "monitors", self.monitor, self.loop)

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def value(self, logs: dict[str, float]) -> float:
        if self.monitor not in logs:
            raise KeyError(f"{type(self).__name__}: monitor {self.monitor!r} is not among the logged "
                           f"metrics {sorted(logs)}")
        return float(logs[self.monitor])


class EarlyStopping(_Monitor):
    """Stops when `monitor` has not improved by more than `min_delta` for `patience` epochs.
    With restore_best_weights, the model gets the best epoch's weights back at the end."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_epoch = -1
        self.stopped_epoch = -1
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        v = self.value(logs)
        if self.improved(v):
            self.best, self.best_epoch, self.wait = v, epoch, 0
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(self.loop.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.loop.stop_training = True

    def on_train_end(self, logs: dict[str, float]) -> None:
        last = self.loop.state.epoch - 1
        if self.restore_best_weights and self.best_weights is not None and self.best_epoch != last:
            self.loop.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        # best_weights are not carried over a resume: the checkpoint holds the weights it has.
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait, self.best_epoch = state["best"], state["wait"], state["best_epoch"]


class ModelCheckpoint(_Monitor):
    """Saves model, optimizer, scheduler, RNG and the fit position with `sg.save` at the end of
    each epoch (`save_best_only=False`: the last epoch's file), or only when `monitor`
    improved (`save_best_only=True`). `path` may hold `{epoch}` and logged names, e.g.
    "ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"."""

    saves_checkpoint = True
    writes_files = True

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", min_delta: float = 0.0) -> None:
        super().__init__(monitor, mode, min_delta)
        self.path = os.fspath(path)
        self.save_best_only = save_best_only
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, float]) -> None:
        if self.save_best_only:
            super().on_train_begin(logs)
        for _, field, _, _ in string.Formatter().parse(self.path):
            if field and field != "epoch":
                _check_logged("ModelCheckpoint", "path names", field, self.loop)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.save_best_only:
            v = self.value(logs)
            if not self.improved(v):
                return
            self.best = v
        path = self.path.format(epoch=epoch + 1, **logs)
        self.loop.save_checkpoint(path)
        self.saved.append(path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class ReduceLROnPlateauCallback(_Monitor):
    """Keras's ReduceLROnPlateau, as a callback: multiplies every group's lr by `factor`
    (floored at `min_lr`) when `monitor` (any logged metric) has not improved by more than
    `min_delta` for `patience` epochs, then waits `cooldown` epochs (PyTorch's default
    min_delta of 1e-4). The name `ReduceLROnPlateau` is PyTorch's scheduler
    (`optim.lr_scheduler.ReduceLROnPlateau`, passed to fit as `scheduler=`), which counts
    differently: it reduces after *more than* `patience` bad epochs, with a relative threshold,
    and its cooldown epochs do not count as bad."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateauCallback: factor must be in (0, 1), got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.cooldown = float(factor), int(patience), int(cooldown)
        self.min_lr = float(min_lr)
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        v = self.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.improved(v):
            self.best, self.wait = v, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            lr = intro.get_lr(self.loop.optimizer)
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > 1e-12 * max(lr, 1e-30):
                intro.set_lr(self.loop.optimizer, new_lr)
            self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_counter = state["cooldown_counter"]


class CSVLogger(Callback):
    """One CSV row per epoch (epoch + every logged value). A resumed fit appends."""

    writes_files = True

    def __init__(self, path: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        self.path = os.fspath(path)
        self.separator = separator
        self.append = append
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict[str, float]) -> None:
        resumed = self.loop.state.epoch > 0 or self.loop.state.batch > 0
        self._append = self.append or resumed
        self._keys = None
        if self._append and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self._keys = header[1:] if header else None
        else:
            open(self.path, "w").close()

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self._keys is None:
            self._keys = sorted(logs)
            with open(self.path, "w", newline="") as f:
                csv.writer(f, delimiter=self.separator).writerow(["epoch", *self._keys])
        with open(self.path, "a", newline="") as f:
            row = [epoch] + [repr(float(logs[k])) if k in logs else "" for k in self._keys]
            csv.writer(f, delimiter=self.separator).writerow(row)


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite."""

    def __init__(self) -> None:
        self.terminated_at: int | None = None

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if not math.isfinite(logs.get("loss", 0.0)):
            self.terminated_at = step
            self.loop.stop_training = True


class CallbackList:
    """Runs callbacks in order; checkpoint writers' epoch end runs after all the others and
    after the History row is appended, so a checkpoint sees the complete epoch. main=False
    (an MPI rank other than 0) leaves out the callbacks that write files."""

    def __init__(self, callbacks: list[Callback], loop: Any, main: bool = True) -> None:
        self.callbacks = list(callbacks)
        active = [c for c in self.callbacks if main or not c.writes_files]
        self.active = active
        self.regular = [c for c in active if not c.saves_checkpoint]
        self.savers = [c for c in active if c.saves_checkpoint]
        # whether a callback has an on_before_optimizer_step (which may change the gradients)
        self.before_step = any(
            type(c).on_before_optimizer_step is not Callback.on_before_optimizer_step
            or "on_before_optimizer_step" in c.__dict__ for c in active)
        for c in self.callbacks:
            c.set_loop(loop)

    def call(self, hook: str, *args: Any) -> None:
        for c in self.active:
            getattr(c, hook)(*args)

    def keys(self) -> list[str]:
        return [f"{i}:{type(c).__name__}" for i, c in enumerate(self.callbacks)]

    def state_dict(self) -> dict[str, Any]:
        return {k: c.state_dict() for k, c in zip(self.keys(), self.callbacks, strict=False)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, c in zip(self.keys(), self.callbacks, strict=False):
            if k in state:
                c.load_state_dict(state[k])
