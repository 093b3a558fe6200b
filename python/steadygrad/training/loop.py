"""`sg.fit`, `sg.evaluate`, `sg.predict`. fit owns the order forward -> loss
-> backward -> optimizer.step() (clip and update fused) -> scheduler, logs per-epoch metrics
into a History, and can stop and resume at any batch with an identical data order. Argument
checks live in checks.py (all done before the first step), the loop's data in run.py."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad import checkpoint
from steadygrad.callbacks import Callback, CallbackList
from steadygrad.diagnostics import GradientMonitor
from steadygrad.training import checks as check
from steadygrad.training.checks import DroppedBatchWarning, Mode
from steadygrad.training.display import ProgressBar
from steadygrad.training.history import FitState, History
from steadygrad.training.run import (
    Detach,
    Loop,
    Run,
    account,
    epoch_logs,
    is_classification,
    n_correct,
    new_acc,
)

__all__ = ["DroppedBatchWarning", "evaluate", "fit", "predict"]


def evaluate(model: Any, loss_fn: Any, x: Any, y: Any, batch_size: int = 256) -> dict[str, float]:
    """Mean loss (and accuracy for integer targets) over (x, y), in eval mode, batched; the
    model's previous train/eval mode is restored."""
    x, y = check.data(x, y, "evaluate", intro.integer_input(model))
    batch_size = check.count(batch_size, "evaluate: batch_size")
    total, correct = 0.0, 0
    with Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            xb, yb = x[lo : lo + batch_size], y[lo : lo + batch_size]
            pred = model(xb)
            total += float(loss_fn(pred, yb)) * len(xb)
            if is_classification(y):
                correct += n_correct(pred, yb)
    out = {"loss": total / len(x)}
    if is_classification(y):
        out["accuracy"] = correct / len(x)
    return out


def predict(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """Model outputs for every row of x, batched, in eval mode (previous mode restored)."""
    x = check.features(x, "predict: x", intro.integer_input(model))
    batch_size = check.count(batch_size, "predict: batch_size")
    out: np.ndarray | None = None
    with Mode(model, training=False):
        for lo in range(0, len(x), batch_size):
            pred = np.asarray(model(x[lo : lo + batch_size]))
            if out is None:
                out = np.empty((len(x), *pred.shape[1:]), dtype=pred.dtype)
            out[lo : lo + len(pred)] = pred  # copy: layers may reuse their output buffers
    assert out is not None
    return out


def _resumed_state(resume: Any, run: Run, model: Any, optimizer: Any, scheduler: Any) -> FitState:
    if not isinstance(resume, (str, os.PathLike, dict)):
        raise TypeError("fit: resume must be a checkpoint path, sg.load()'s extra or a "
                        f"fit_state, got {check.describe(resume)}")
    if isinstance(resume, (str, os.PathLike)):
        # Resuming continues the run, so sg's RNG (Dropout masks, later init) comes back too.
        resume = checkpoint.load(resume, model, optimizer, scheduler, restore_rng=True)
    if isinstance(resume, dict) and "fit" in resume and "seed" not in resume:
        resume = resume["fit"]
    if not isinstance(resume, dict):
        raise TypeError("fit: the checkpoint holds no fit state (it was not saved by fit)")
    state = FitState.from_state_dict(resume)
    if state.batch > run.steps_per_epoch:
        raise ValueError(f"fit: resume is at batch {state.batch} of its epoch, but this fit has "
                         f"{run.steps_per_epoch} batches per epoch (same x and batch_size needed)")
    return state


def _start_state(resume: Any, seed: int | None, initial_epoch: int, run: Run, model: Any,
                 optimizer: Any, scheduler: Any) -> FitState:
    """The resumed position, or epoch `initial_epoch` of a fresh run. A fixed-length per-step
    schedule must cover what is left: checked before a fresh run draws its seed from sg's RNG."""
    if resume is not None:
        state = _resumed_state(resume, run, model, optimizer, scheduler)
        left = run.steps_left(state.epoch, state.batch, state.global_step)
        check.schedule_length(scheduler, run.interval, left, run.steps_per_epoch)
        return state
    check.schedule_length(scheduler, run.interval, run.steps_left(initial_epoch, 0, 0),
                          run.steps_per_epoch)
    if seed is None:
        seed = int(intro.global_rng().integers(2**63))
    state = FitState(seed)
    for _ in range(initial_epoch):  # same data order as a run that did those epochs
        if run.shuffle:
            state.rng.permutation(len(run.x))
    state.epoch = initial_epoch
    state.epoch_rng_state = state.rng.bit_generator.state
    return state


def _checked_run(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, validation_data: Any,
                 scheduler: Any, opts: dict[str, Any]) -> Run:
    """Every argument check, before anything changes (model in training mode already)."""
    check.components(model, loss_fn, optimizer)
    epochs = check.count(opts["epochs"], "fit: epochs", minimum=0)
    batch_size = check.count(opts["batch_size"], "fit: batch_size")
    initial_epoch = check.count(opts["initial_epoch"], "fit: initial_epoch", minimum=0)
    if initial_epoch and opts["resume"] is not None:
        raise ValueError("fit: pass resume (which knows its epoch) or initial_epoch, not both")
    max_steps = opts["max_steps"]
    if max_steps is not None:
        max_steps = check.count(max_steps, "fit: max_steps", minimum=0)
    if opts["seed"] is not None:
        check.count(opts["seed"], "fit: seed", minimum=0)
    if opts["diagnostics"] is not None:
        check.count(opts["diagnostics"], "fit: diagnostics", minimum=0)
    if opts["verbose"] not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {check.describe(opts['verbose'])}")
    shuffle = check.flag(opts["shuffle"], "fit: shuffle")
    drop_last = check.flag(opts["drop_last"], "fit: drop_last")
    x, y = check.data(x, y, "fit", intro.integer_input(model))
    val = check.validation(validation_data, x, y)
    out = check.output_shape(model, x, "fit")
    check.labels_and_loss(loss_fn, out, y, "fit: y")
    if val is not None:
        check.labels_and_loss(loss_fn, out, val[1], "fit: validation_data y")
    interval = check.scheduler_unit(scheduler, optimizer, opts["scheduler_interval"])
    callbacks = check.callback_list(opts["callbacks"])
    n_used, steps = check.batch_plan(model, len(x), batch_size, drop_last)
    try:
        skip_dx = "input_grad" in inspect.signature(model.backward).parameters
    except (TypeError, ValueError):
        skip_dx = False
    return Run(x, y, val, epochs, batch_size, n_used, steps, shuffle, interval, max_steps, skip_dx,
               callbacks)


def _with_callbacks(loop: Loop, callbacks: list[Callback], verbose: int,
                    diagnostics: int | None) -> CallbackList:
    cbs = list(callbacks)
    monitor = None
    if diagnostics:
        monitor = GradientMonitor(every=diagnostics, print_at_end=verbose > 0)
        cbs.append(monitor)
    if verbose:
        cbs.append(ProgressBar(verbose, loop.run.epochs, loop.run.steps_per_epoch))
    cb = CallbackList(cbs, loop)
    loop.callbacks = cb
    cb.load_state_dict(loop.state.callbacks)
    loop.state.history.diagnostics = monitor
    return cb


def fit(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any, *, epochs: int, batch_size: int,
        validation_data: tuple[Any, Any] | None = None, shuffle: bool = True, scheduler: Any = None,
        scheduler_interval: str | None = None, callbacks: Sequence[Callback] = (),
        seed: int | None = None, verbose: int = 1, diagnostics: int | None = None,
        initial_epoch: int = 0, resume: Any = None, max_steps: int | None = None,
        drop_last: bool = False) -> History:
    """Trains `model` on (x, y) for `epochs` epochs of mini-batches of `batch_size`.

    Each step: forward -> loss -> backward -> `optimizer.step()` (clipping is fused into it and
    it returns the pre-clip norm) -> `scheduler.step()` for a per-step scheduler. At each epoch
    end: validation, then a per-epoch scheduler (ReduceLROnPlateau gets val_loss, or loss).
    The unit is the scheduler's `interval`: "step" for OneCycleLR and CyclicLR (and a
    SequentialLR holding one), "epoch" for the others; `scheduler_interval="epoch"|"step"`
    overrides it (e.g. a LinearLR warmup counted in batches).

    x is converted to float32, except for a model that takes integer indices (one whose first
    layer is an nn.Embedding, or that declares `integer_input = True`): then x must be integers,
    kept as int32/int64 (other integer types widened to int64); evaluate and predict do the same.

    Every argument is checked before the first step (x, y, validation_data as (x_val, y_val),
    class labels in [0, C) for a (batch, C) output, batch_size and the other counts; the loss
    is called once on a zero prediction for two targets, to see it accepts them): a bad one
    raises and changes nothing. To learn C, fit asks `model.output_shape`, or runs one
    eval-mode forward of two samples when the model cannot say.

    drop_last=True drops each epoch's final partial batch (as torch's DataLoader). With
    drop_last=False a final batch of 1 sample is still dropped when a BatchNorm would see it
    in training mode, where it cannot normalise (torch raises): a DroppedBatchWarning says
    so once per fit call, and history["dropped_samples"] counts it.

    Shuffling uses its own generator seeded by `seed` (or drawn from sg's RNG), so the order
    is reproducible. `resume` (a checkpoint path, whose sg RNG state fit restores too, or
    the extra returned by sg.load, or `history.fit_state`) continues a fit at the exact batch
    it stopped; `initial_epoch` starts a fresh fit at that epoch with that epoch's data order;
    `max_steps` stops after that many optimizer steps in total. `diagnostics=k` attaches a
    GradientMonitor recording every k steps (available as `history.diagnostics`; its table is
    printed at the end unless verbose=0). Returns the History (also holds `fit_state`).
    """
    opts = {"epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "verbose": verbose, "diagnostics": diagnostics, "initial_epoch": initial_epoch,
            "resume": resume, "max_steps": max_steps, "drop_last": drop_last,
            "scheduler_interval": scheduler_interval, "callbacks": callbacks}
    with Mode(model, training=True):
        run = _checked_run(model, loss_fn, optimizer, x, y, validation_data, scheduler, opts)
        state = _start_state(resume, seed, initial_epoch, run, model, optimizer, scheduler)
        loop = Loop(model, loss_fn, optimizer, scheduler, state, run)
        cb = _with_callbacks(loop, run.callbacks, verbose, diagnostics)
        with Detach(cb):
            cb.call("on_train_begin", {})
            while state.epoch < run.epochs and not loop.stop_training and not run.done(state):
                if not _run_epoch(loop):
                    break  # max_steps inside an epoch: the position is kept for a resume
            cb.call("on_train_end", {})
    state.history.fit_state = loop.fit_state()
    return state.history


def _run_epoch(loop: Loop) -> bool:
    """The rest of the current epoch; False when it stopped inside the epoch (max_steps)."""
    state, run = loop.state, loop.run
    assert loop.callbacks is not None
    state.rng.bit_generator.state = state.epoch_rng_state
    perm = state.rng.permutation(len(run.x)) if run.shuffle else None
    if state.batch == 0:
        state.acc = new_acc(loop.optimizer)
    loop.callbacks.call("on_epoch_begin", state.epoch)
    t0 = time.perf_counter()
    for b in range(state.batch, run.steps_per_epoch):
        _run_batch(loop, *loop.batches.get(b, perm))
        if loop.stop_training or run.done(state):
            break
    state.acc["time"] += time.perf_counter() - t0
    if state.batch < run.steps_per_epoch and not loop.stop_training:
        return False
    _end_epoch(loop)
    return True


def _run_batch(loop: Loop, xb: np.ndarray, yb: np.ndarray) -> None:
    state, model, loss_fn, opt, cb = loop.state, loop.model, loop.loss_fn, loop.optimizer, loop.callbacks
    assert cb is not None
    step = state.global_step
    cb.call("on_batch_begin", step)
    opt.zero_grad()
    pred = model(xb)
    loss = float(loss_fn(pred, yb))
    if loop.run.skip_dx:  # nothing needs dL/dx of the input: the first layer skips that GEMM
        model.backward(loss_fn.backward(), input_grad=False)
    else:
        model.backward(loss_fn.backward())
    cb.call("on_before_optimizer_step", step)
    norm = opt.step()
    state.global_step += 1
    state.batch += 1
    if loop.scheduler is not None and loop.run.interval == "step":
        loop.scheduler.step()
    logs = account(state.acc, loss, pred, yb, norm, loop.classification)
    cb.call("on_batch_end", step, logs)


def _end_epoch(loop: Loop) -> None:
    """Epoch logs, validation, the per-epoch scheduler, then callbacks and the History row."""
    state, run, cb, sched = loop.state, loop.run, loop.callbacks, loop.scheduler
    assert cb is not None
    epoch = state.epoch
    logs = epoch_logs(state.acc, loop.optimizer, loop.classification)
    if run.dropped:
        logs["dropped_samples"] = float(run.dropped)
    if run.val is not None:
        v = evaluate(loop.model, loop.loss_fn, run.val[0], run.val[1], batch_size=max(run.batch_size, 256))
        logs.update({f"val_{k}": s for k, s in v.items()})
    if sched is not None and run.interval == "epoch":
        if check.steps_on_metric(sched):
            sched.step(logs.get("val_loss", logs["loss"]))
        else:
            sched.step()
    state.skipped_steps += int(logs["skipped_steps"])
    state.epoch, state.batch = epoch + 1, 0
    state.epoch_rng_state = state.rng.bit_generator.state
    for c in cb.regular:
        c.on_epoch_end(epoch, logs)
    state.history.append(epoch, logs)
    for c in cb.savers:
        c.on_epoch_end(epoch, logs)


