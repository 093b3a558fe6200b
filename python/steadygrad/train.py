"""The training loop: `sg.fit`, `sg.evaluate`, `sg.predict`. fit owns the order forward -> loss
-> backward -> optimizer.step() (clip and update fused) -> scheduler, logs per-epoch metrics
into a History, and can stop and resume at any batch with an identical data order."""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad.callbacks import Callback, CallbackList
from steadygrad.history import FitState, History
from steadygrad.progress import ProgressBar

__all__ = ["evaluate", "fit", "predict"]


class _Mode:
    """Context manager: put the model in eval (or train) mode, then restore the previous mode."""

    def __init__(self, model: Any, training: bool) -> None:
        self.model, self.training = model, training

    def __enter__(self) -> None:
        self.before = intro.training_mode(self.model)
        self.model.train() if self.training else self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train() if self.before else self.model.eval()


class _Detach:
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


def _is_classification(y: np.ndarray) -> bool:
    return y.dtype.kind in "iu"


def _n_correct(pred: np.ndarray, y: np.ndarray) -> int:
    if pred.ndim == 2 and pred.shape[1] > 1:
        return int(np.count_nonzero(pred.argmax(axis=1) == y))
    return int(np.count_nonzero((np.reshape(pred, y.shape) > 0) == (y > 0)))  # one binary logit


def _inputs(x: Any, y: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} samples but y has {len(y)}")
    if y.dtype.kind == "f":
        y = np.ascontiguousarray(y, dtype=np.float32)
    return x, y


def evaluate(model: Any, loss_fn: Any, x: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
    """Mean loss (and accuracy for integer targets) over (x, y), in eval mode, batched; the
    model's previous train/eval mode is restored."""
    x, y = _inputs(x, y, "evaluate")
    if len(x) == 0:
        raise ValueError("evaluate: x is empty")
    total, correct = 0.0, 0
    with _Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
            pred = model(xb)
            total += float(loss_fn(pred, yb)) * len(xb)
            if _is_classification(y):
                correct += _n_correct(pred, yb)
    out = {"loss": total / len(x)}
    if _is_classification(y):
        out["accuracy"] = correct / len(x)
    return out


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """Model outputs for every row of x, batched, in eval mode (previous mode restored)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out: np.ndarray | None = None
    with _Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            pred = np.asarray(model(x[lo : lo + batch_size]))
            if out is None:
                out = np.empty((len(x), *pred.shape[1:]), dtype=pred.dtype)
            out[lo : lo + len(pred)] = pred  # copy: layers may reuse their output buffers
    if out is None:
        raise ValueError("predict: x is empty")
    return out


class _Loop:
    """What callbacks see of a running fit."""

    def __init__(self, model: Any, loss_fn: Any, optimizer: Any, scheduler: Any, state: FitState,
                 has_validation: bool, classification: bool) -> None:
        self.model, self.loss_fn, self.optimizer, self.scheduler = model, loss_fn, optimizer, scheduler
        self.state = state
        self.has_validation = has_validation
        self.classification = classification
        self.stop_training = False
        self.callbacks: CallbackList | None = None

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

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        from steadygrad.io import save

        save(path, self.model, self.optimizer, self.scheduler, extra={"fit": self.fit_state()})


def _new_acc(optimizer: Any) -> dict[str, float]:
    return {"loss_sum": 0.0, "n": 0, "correct": 0, "norm_sum": 0.0, "norm_max": 0.0,
            "norm_count": 0, "skipped_start": intro.skipped_steps(optimizer), "lr": intro.get_lr(optimizer),
            "time": 0.0}


def _start_state(resume: Any, seed: int | None, initial_epoch: int, shuffle: bool, n: int,
                 model: Any, optimizer: Any, scheduler: Any) -> FitState:
    if resume is not None:
        if isinstance(resume, (str, os.PathLike)):
            from steadygrad.io import load

            resume = load(resume, model, optimizer, scheduler)
        if isinstance(resume, dict) and "fit" in resume and "seed" not in resume:
            resume = resume["fit"]
        if not isinstance(resume, dict):
            raise TypeError("fit: resume must be a checkpoint path, sg.load()'s extra or a fit_state")
        return FitState.from_state_dict(resume)
    if seed is None:
        rng = intro.global_rng()
        seed = int(rng.integers(2**63)) if rng is not None else int(np.random.SeedSequence().entropy)
    state = FitState(seed)
    for _ in range(initial_epoch):  # same data order as a run that did those epochs
        if shuffle:
            state.rng.permutation(n)
    state.epoch = initial_epoch
    state.epoch_rng_state = state.rng.bit_generator.state
    return state


def fit(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, *, epochs: int, batch_size: int,
        validation_data: tuple[Any, Any] | None = None, shuffle: bool = True, scheduler: Any = None,
        scheduler_interval: str = "epoch", callbacks: Sequence[Callback] = (), seed: int | None = None,
        verbose: int = 1, diagnostics: int | None = None, initial_epoch: int = 0, resume: Any = None,
        max_steps: int | None = None) -> History:
    """Trains `model` on (x, y) for `epochs` epochs of mini-batches of `batch_size`.

    Each step: forward -> loss -> backward -> `optimizer.step()` (clipping is fused into it and
    it returns the pre-clip norm) -> `scheduler.step()` when scheduler_interval="step". At each
    epoch end: validation, then the epoch scheduler (ReduceLROnPlateau gets val_loss, or loss).
    Shuffling uses its own generator seeded by `seed` (or drawn from sg's RNG), so the order is
    reproducible. `resume` (a checkpoint path, the extra returned by sg.load, or
    `history.fit_state`) continues a fit at the exact batch it stopped; `initial_epoch` starts
    a fresh fit at that epoch with that epoch's data order; `max_steps` stops after that many
    optimizer steps in total. `diagnostics=k` attaches a GradientMonitor recording every k steps
    (available as `history.diagnostics`; its table is printed at the end unless verbose=0). Returns the History (also holds `fit_state`).
    """
    if epochs < 0 or batch_size <= 0:
        raise ValueError(f"fit: need epochs >= 0 and batch_size > 0, got {epochs}, {batch_size}")
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    x, y = _inputs(x, y, "fit")
    n = len(x)
    if n == 0:
        raise ValueError("fit: x is empty")
    val = _inputs(*validation_data, "fit: validation_data") if validation_data is not None else None
    classification = _is_classification(y)
    steps_per_epoch = math.ceil(n / batch_size)
    state = _start_state(resume, seed, initial_epoch, shuffle, n, model, optimizer, scheduler)
    loop = _Loop(model, loss_fn, optimizer, scheduler, state, val is not None, classification)

    cbs = list(callbacks)
    monitor = None
    if diagnostics:
        from steadygrad.diagnostics import GradientMonitor

        monitor = GradientMonitor(every=diagnostics, print_at_end=verbose > 0)
        cbs.append(monitor)
    if verbose:
        cbs.append(ProgressBar(verbose, epochs, steps_per_epoch))
    cb = CallbackList(cbs, loop)
    loop.callbacks = cb
    cb.load_state_dict(state.callbacks)
    history = state.history
    history.diagnostics = monitor  # type: ignore[attr-defined]

    try:
        skip_dx = "input_grad" in inspect.signature(model.backward).parameters
    except (TypeError, ValueError):
        skip_dx = False
    # Full batches gather into reused buffers; the model may keep the input until backward.
    xbuf = np.empty((batch_size, *x.shape[1:]), dtype=x.dtype)
    ybuf = np.empty((batch_size, *y.shape[1:]), dtype=y.dtype)
    with _Mode(model, training=True), _Detach(cb):
        cb.call("on_train_begin", {})
        while state.epoch < epochs and not loop.stop_training:
            if max_steps is not None and state.global_step >= max_steps:
                break
            epoch = state.epoch
            state.rng.bit_generator.state = state.epoch_rng_state
            perm = state.rng.permutation(n) if shuffle else None
            if state.batch == 0:
                state.acc = _new_acc(optimizer)
            cb.call("on_epoch_begin", epoch)
            t0 = time.perf_counter()
            for b in range(state.batch, steps_per_epoch):
                lo, hi = b * batch_size, min((b + 1) * batch_size, n)
                if perm is None:
                    xb, yb = x[lo:hi], y[lo:hi]
                elif hi - lo == batch_size:
                    xb = np.take(x, perm[lo:hi], axis=0, out=xbuf)
                    yb = np.take(y, perm[lo:hi], axis=0, out=ybuf)
                else:
                    xb, yb = x[perm[lo:hi]], y[perm[lo:hi]]
                step = state.global_step
                cb.call("on_batch_begin", step)
                optimizer.zero_grad()
                pred = model(xb)
                loss = float(loss_fn(pred, yb))
                if skip_dx:  # nothing needs dL/dx of the input: the first layer skips that GEMM
                    model.backward(loss_fn.backward(), input_grad=False)
                else:
                    model.backward(loss_fn.backward())
                cb.call("on_before_optimizer_step", step)
                norm = optimizer.step()
                state.global_step += 1
                state.batch = b + 1
                if scheduler is not None and scheduler_interval == "step":
                    scheduler.step()
                logs = _account(state.acc, loss, pred, yb, norm, classification)
                cb.call("on_batch_end", step, logs)
                if loop.stop_training or (max_steps is not None and state.global_step >= max_steps):
                    break
            state.acc["time"] += time.perf_counter() - t0
            if state.batch < steps_per_epoch and not loop.stop_training:
                break  # max_steps inside an epoch: the position is kept for a resume
            logs = _epoch_logs(state.acc, optimizer, classification)
            if val is not None:
                v = evaluate(model, loss_fn, val[0], val[1], batch_size=max(batch_size, 256))
                logs.update({f"val_{k}": s for k, s in v.items()})
            if scheduler is not None and scheduler_interval == "epoch":
                if intro.is_plateau_scheduler(scheduler):
                    scheduler.step(logs.get("val_loss", logs["loss"]))
                else:
                    scheduler.step()
            state.skipped_steps += int(logs["skipped_steps"])
            state.epoch, state.batch = epoch + 1, 0
            state.epoch_rng_state = state.rng.bit_generator.state
            for c in cb.regular:
                c.on_epoch_end(epoch, logs)
            history.append(epoch, logs)
            for c in cb.savers:
                c.on_epoch_end(epoch, logs)
        cb.call("on_train_end", {})
    history.fit_state = loop.fit_state()
    return history


def _account(acc: dict[str, float], loss: float, pred: np.ndarray, yb: np.ndarray, norm: Any,
             classification: bool) -> dict[str, float]:
    size = len(yb)
    acc["loss_sum"] += loss * size
    acc["n"] += size
    logs = {"loss": loss, "size": float(size)}
    if classification:
        c = _n_correct(pred, yb)
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


def _epoch_logs(acc: dict[str, float], optimizer: Any, classification: bool) -> dict[str, float]:
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
