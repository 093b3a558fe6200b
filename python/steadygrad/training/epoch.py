"""One epoch of `sg.fit`: its batches in order, each step (forward -> loss -> backward ->
optimizer.step(), compiled when the model compiles, on the cores other processes leave free)
with its callbacks and per-step History entry, then the epoch's logs, validation, scheduler
and History row."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad.training import checks as check
from steadygrad.training.evaluation import evaluated
from steadygrad.training.run import (
    Loop,
    account,
    any_rank,
    batch_loss,
    epoch_logs,
    new_acc,
    summed,
)


def run_epoch(loop: Loop) -> bool:
    """The rest of the current epoch; False when it stopped inside the epoch (max_steps)."""
    state, run = loop.state, loop.run
    assert loop.callbacks is not None
    state.rng.bit_generator.state = state.epoch_rng_state
    perm = state.rng.permutation(len(run.x)) if run.shuffle else None
    if state.batch == 0:
        state.acc = new_acc(loop.optimizer, loop.metric_names)
    loop.callbacks.call("on_epoch_begin", state.epoch)
    t0 = time.perf_counter()
    with contextlib.closing(loop.batches.batches(perm, state.batch, run.prefetch)) as batches:
        for batch in batches:  # closing stops a prefetch thread when the epoch ends early
            _run_batch(loop, *batch)
            loop.stop_training = any_rank(loop.stop_training, run.comm)  # all ranks stop together
            if loop.stop_training or run.done(state):
                break
    state.acc["time"] += time.perf_counter() - t0
    if state.batch < run.steps_per_epoch and not loop.stop_training:
        return False
    _end_epoch(loop)
    return True


def _run_batch(loop: Loop, xb: np.ndarray, yb: np.ndarray, wb: np.ndarray | None = None) -> None:
    state, cb = loop.state, loop.callbacks
    assert cb is not None
    step = state.global_step
    cb.call("on_batch_begin", step)
    with loop.contention.step():  # fewer threads while other processes hold the cores
        loss, pred, norm, lr = _step(loop, xb, yb, wb)
    state.global_step += 1
    state.batch += 1
    if loop.scheduler is not None and loop.run.interval == "step":
        loop.scheduler.step()
    logs = account(state.acc, loss, pred, yb, norm, loop.run.metrics)
    row = {"step": float(step), **logs, "lr": lr}
    del row["size"]
    state.history.record_step(row)
    cb.call("on_batch_end", step, logs)


def _step(loop: Loop, xb: np.ndarray, yb: np.ndarray,
          wb: np.ndarray | None) -> tuple[float, np.ndarray, Any, float]:
    """zero_grad, forward, loss, backward, the callbacks' on_before_optimizer_step and the
    optimizer step: (loss, prediction, pre-clip norm, the step's learning rate)."""
    state, model, loss_fn, opt, cb = loop.state, loop.model, loop.loss_fn, loop.optimizer, loop.callbacks
    assert cb is not None
    opt.zero_grad()
    scale = loop.run.grad_scale(state.batch, len(yb))
    comp = loop.compiled if scale == 1.0 else None
    if comp is not None:  # the compiled layers (or the eager ones, input_grad=False)
        # the step may take its norms from the tape unless a callback may change the gradients
        loss = comp.forward_backward(xb, yb, batch_loss, wb, offer_norms=not cb.before_step)
        pred = comp.output
        assert pred is not None
    else:
        pred = model(xb)
        loss, grad_output = batch_loss(loss_fn, pred, yb, wb)
        g = loss_fn.backward() if grad_output is None else loss_fn.backward(grad_output)
        if scale != 1.0:  # this rank's share of an unevenly split batch
            g = g * np.float32(scale)
        if loop.run.skip_dx:  # nothing needs dL/dx of the input: the first layer skips that GEMM
            model.backward(g, input_grad=False)
        else:
            model.backward(g)
    cb.call("on_before_optimizer_step", state.global_step)
    lr = intro.get_lr(opt)  # the rate this step uses (a per-step scheduler changes it next)
    return loss, pred, opt.step(), lr


def _end_epoch(loop: Loop) -> None:
    """Epoch logs, validation, the per-epoch scheduler, then callbacks and the History row."""
    state, run, cb, sched = loop.state, loop.run, loop.callbacks, loop.scheduler
    assert cb is not None
    epoch = state.epoch
    logs = epoch_logs(summed(state.acc, run.comm), loop.optimizer, loop.metric_names)
    if run.dropped:
        logs["dropped_samples"] = float(run.dropped)
    if run.val is not None:
        v = evaluated(loop.model, loop.loss_fn, run.val, max(run.batch_size, 256), run.metrics)
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
    state.history.append(epoch, logs, state.global_step)
    for c in cb.savers:
        c.on_epoch_end(epoch, logs)
    loop.stop_training = any_rank(loop.stop_training, run.comm)
