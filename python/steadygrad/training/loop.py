"""`sg.fit`: its argument checks, start or resume, and the epochs. fit owns the order forward
-> loss -> backward -> optimizer.step() (clip and update fused) -> scheduler (one epoch:
epoch.py), logs per-step and per-epoch metrics into a History, and can stop and resume at any
batch with an identical data order. Argument checks live in checks.py (all done before the
first step), the loop's data in run.py, evaluate and predict in evaluation.py."""

from __future__ import annotations

import contextlib
import inspect
import os
import zlib
from collections.abc import Sequence
from typing import Any

from steadygrad import _introspect as intro
from steadygrad import checkpoint
from steadygrad._precision import check_precision, set_matmul_precision
from steadygrad.callbacks import Callback, CallbackList
from steadygrad.diagnostics import GradientMonitor
from steadygrad.training import checks as check
from steadygrad.training import inputs
from steadygrad.training.checks import DroppedBatchWarning, Mode
from steadygrad.training.display import ProgressBar
from steadygrad.training.epoch import run_epoch
from steadygrad.training.history import FitState, History
from steadygrad.training.run import Arrays, Detach, Loop, Run, any_rank, from_rank0

__all__ = ["DroppedBatchWarning", "fit"]


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
    if run.loader is not None:
        state = FitState(run.loader.seed)
        state.rng.bit_generator.state = run.loader.generator.bit_generator.state
        if run.comm is not None:  # the ranks split one order: their loaders must agree on it
            mine = zlib.crc32(repr(state.rng.bit_generator.state).encode())
            if any_rank(from_rank0(mine, run.comm) != mine, run.comm):
                raise ValueError("fit: the DataLoader's shuffling generator differs between "
                                 "ranks (an unseeded DataLoader, or sg.manual_seed called with "
                                 "other seeds); pass DataLoader(..., seed=s) with the same s "
                                 "on every rank")
    else:
        seed = int(intro.global_rng().integers(2**63)) if seed is None else seed
        if run.comm is not None:  # every rank shuffles with rank 0's seed
            seed = from_rank0(seed, run.comm)
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
    src = inputs.source(x, y, opts)
    x, y = check.data(src.x, src.y, "fit", intro.integer_input(model))
    w = inputs.sample_weights(src.sample_weight, len(x), "fit: sample_weight")
    val: Arrays | None = None
    if opts["validation_split"] is not None:
        if validation_data is not None:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        (x, y, w), val = inputs.split(x, y, w, opts["validation_split"])
    elif (checked := check.validation(validation_data, x, y)) is not None:
        val = (*checked, None)
    out = check.output_shape(model, x, "fit")
    check.labels_and_loss(loss_fn, out, y, "fit: y")
    if val is not None:
        check.labels_and_loss(loss_fn, out, val[1], "fit: validation_data y")
    if opts["class_weight"] is not None:
        cw = inputs.class_weights(opts["class_weight"], y, out)
        w = cw if w is None else w * cw
    if w is not None or (val is not None and val[2] is not None):
        inputs.per_sample_loss(loss_fn, "fit", "sample_weight and class_weight need")
    metrics = inputs.metric_fns(opts["metrics"], y, out, "fit")
    interval = check.scheduler_unit(scheduler, optimizer, opts["scheduler_interval"])
    callbacks = check.callback_list(opts["callbacks"])
    comm = intro.communicator(model)
    n_used, steps = check.batch_plan(model, len(x), src.batch_size, src.drop_last,
                                     1 if comm is None else comm.size)
    try:
        skip_dx = "input_grad" in inspect.signature(model.backward).parameters
    except (TypeError, ValueError):
        skip_dx = False
    return Run(x, y, w, val, epochs, src.batch_size, n_used, steps, src.shuffle, interval, max_steps,
               skip_dx, callbacks, metrics, src.loader, src.loader is not None and src.loader.prefetch,
               comm)


def _with_callbacks(loop: Loop, callbacks: list[Callback], verbose: int,
                    diagnostics: int | None) -> CallbackList:
    cbs = list(callbacks)
    monitor = None
    if diagnostics:
        monitor = GradientMonitor(every=diagnostics, print_at_end=verbose > 0)
        cbs.append(monitor)
    if verbose:
        cbs.append(ProgressBar(verbose, loop.run.epochs, loop.run.steps_per_epoch))
    cb = CallbackList(cbs, loop, main=loop.run.main)
    loop.callbacks = cb
    cb.load_state_dict(loop.state.callbacks)
    loop.state.history.diagnostics = monitor
    return cb


def fit(model: Any, loss_fn: Any, optimizer: Any, x: Any, y: Any = None, *, epochs: int,
        batch_size: int | None = None, validation_data: tuple[Any, Any] | None = None,
        validation_split: float | None = None, shuffle: bool | None = None,
        sample_weight: Any = None, class_weight: dict[int, float] | None = None,
        metrics: Sequence[str] | None = None, scheduler: Any = None,
        scheduler_interval: str | None = None, callbacks: Sequence[Callback] = (),
        seed: int | None = None, verbose: int = 1, diagnostics: int | None = None,
        initial_epoch: int = 0, resume: Any = None, max_steps: int | None = None,
        drop_last: bool | None = None, precision: str | None = None) -> History:
    """Trains `model` on (x, y) for `epochs` epochs of mini-batches of `batch_size`, or on a
    `steadygrad.data.DataLoader` passed as x (holding (x, y) or (x, y, sample_weight)): its
    batch_size, shuffle, drop_last and seeded order are used, and passing a different
    batch_size, shuffle or drop_last, or a seed, raises (its prefetch thread gathers the next
    batch while a step runs). fit with DataLoader(x, y, shuffle=True, seed=s) trains on the
    same batches as fit(x, y, seed=s), and leaves the loader's generator past the epochs it drew.

    Each step: forward -> loss -> backward -> `optimizer.step()` (clipping is fused into it and
    it returns the pre-clip norm) -> `scheduler.step()` for a per-step scheduler. At each epoch
    end: validation, then a per-epoch scheduler (ReduceLROnPlateau gets val_loss, or loss).
    The unit is the scheduler's `interval`: "step" for OneCycleLR and CyclicLR (and a
    SequentialLR holding one), "epoch" for the others; `scheduler_interval="epoch"|"step"`
    overrides it (e.g. a LinearLR warmup counted in batches).

    validation_split=f holds out the last fraction f of the arrays (before shuffling, as
    Keras; sample_weight is split with them) as the validation data.
    sample_weight (one non-negative weight per sample) and class_weight ({class index:
    weight}, Keras': a sample weighs class_weight.get(its label, 1.0); integer labels, or 0/1
    targets of one binary output; multiplied with sample_weight) need a loss built with
    reduction='none': fit multiplies each sample's loss by its weight and divides the sum by
    the batch size (Keras' normalisation, not by the sum of the weights); a loss with
    reduction='none' and no weights trains on the plain mean. Validation uses the split's
    sample weights, never class_weight. metrics=["accuracy", "top5", "mae", "mse", ...] are
    names in sg.metrics (extend it with sg.metrics.register); each is logged per epoch as the
    mean over the trained samples, and as val_<name>. By default integer targets log
    accuracy, float targets nothing.
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

    A steadygrad.distributed.DistributedDataParallel model over several MPI ranks: batch_size
    is the global batch; every rank shuffles with rank 0's seed and trains on its contiguous
    share of each batch (data.batching.shard_bounds), so the ranks together take one
    process's batches; a final batch too small to give every rank its samples is dropped (a
    DroppedBatchWarning) and an uneven one is weighted to the batch's gradient. The epoch's
    loss and metrics and the validation are the whole data's on every rank; only rank 0
    prints and runs the callbacks that write files (ModelCheckpoint, CSVLogger); a stop on
    any rank stops all. docs/distributed.md has the rest.
    precision="bf16" (or "highest") runs the whole fit, validation included, at that matmul
    precision (sg.set_matmul_precision) and restores the one in force afterwards, also when
    the fit raises; None (the default) keeps the precision as it is.
    """
    if precision is not None:
        check_precision(precision, "fit: precision")
    opts = {"epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "verbose": verbose, "diagnostics": diagnostics, "initial_epoch": initial_epoch,
            "resume": resume, "max_steps": max_steps, "drop_last": drop_last,
            "scheduler_interval": scheduler_interval, "callbacks": callbacks,
            "validation_split": validation_split, "sample_weight": sample_weight,
            "class_weight": class_weight, "metrics": metrics}
    at_precision = contextlib.nullcontext() if precision is None else set_matmul_precision(precision)
    with at_precision, Mode(model, training=True):
        run = _checked_run(model, loss_fn, optimizer, x, y, validation_data, scheduler, opts)
        state = _start_state(resume, seed, initial_epoch, run, model, optimizer, scheduler)
        loop = Loop(model, loss_fn, optimizer, scheduler, state, run)
        cb = _with_callbacks(loop, run.callbacks, verbose if run.main else 0, diagnostics)
        with Detach(cb):
            cb.call("on_train_begin", {})
            while state.epoch < run.epochs and not loop.stop_training and not run.done(state):
                if not run_epoch(loop):
                    break  # max_steps inside an epoch: the position is kept for a resume
            cb.call("on_train_end", {})
    if run.loader is not None:  # the loader's next epoch follows the ones fit drew, as torch's
        run.loader.generator.bit_generator.state = state.rng.bit_generator.state
    state.history.fit_state = loop.fit_state()
    return state.history


