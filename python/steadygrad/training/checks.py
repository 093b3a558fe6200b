"""Argument checks for sg.fit / evaluate / predict. They all run before the first step, so a
bad argument raises a clear error (naming it, what was expected, what came) and leaves the
model, its buffers, the optimizer and every RNG exactly as they were. No training logic here."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from steadygrad import _introspect as intro
from steadygrad._args import count as count
from steadygrad._args import describe as describe
from steadygrad._args import features as features
from steadygrad._args import flag as flag
from steadygrad.callbacks import Callback
from steadygrad.optim.lr_scheduler import ReduceLROnPlateau

UNITS = ("epoch", "step")


class DroppedBatchWarning(UserWarning):
    """fit dropped each epoch's final batch of 1 sample, which BatchNorm cannot train on."""


class Mode:
    """Context manager: put the model in eval (or train) mode, then restore the previous mode."""

    def __init__(self, model: Any, training: bool) -> None:
        self.model, self.training = model, training

    def __enter__(self) -> None:
        self.before = intro.training_mode(self.model)
        self.model.train() if self.training else self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train() if self.before else self.model.eval()


def targets(y: Any, where: str) -> np.ndarray:
    """Integer targets as they are (class indices); float targets as float32."""
    arr = y if isinstance(y, np.ndarray) else np.asarray(y)
    if arr.dtype.kind not in "biuf" or arr.ndim == 0:
        raise TypeError(f"{where} must be a numeric array of targets, one per sample, got {describe(arr)}")
    return np.ascontiguousarray(arr, dtype=np.float32) if arr.dtype.kind == "f" else arr


def data(x: Any, y: Any, where: str, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    x, y = features(x, f"{where}: x", integer), targets(y, f"{where}: y")
    if len(x) != len(y):
        raise ValueError(f"{where}: x has {len(x)} samples but y has {len(y)}")
    return x, y


def validation(val: Any, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if val is None:
        return None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        raise TypeError(f"fit: validation_data must be a tuple (x_val, y_val) of 2 arrays, got {describe(val)}")
    xv, yv = data(val[0], val[1], "fit: validation_data", integer=x.dtype.kind == "i")
    if xv.shape[1:] != x.shape[1:]:
        raise ValueError(f"fit: validation_data x has samples of shape {xv.shape[1:]}, x has {x.shape[1:]}")
    if (yv.dtype.kind == "f") != (y.dtype.kind == "f") or yv.shape[1:] != y.shape[1:]:
        raise ValueError(f"fit: validation_data y is a {describe(yv)}, y a {describe(y)}: "
                         "they need the same kind of targets")
    return xv, yv


def components(model: Any, loss_fn: Any, optimizer: Any) -> None:
    """The three objects fit calls, caught in the wrong order or of the wrong kind up front."""
    for name, obj, needs in (("model", model, ("__call__", "backward")),
                             ("loss_fn", loss_fn, ("__call__", "backward")),
                             ("optimizer", optimizer, ("step", "zero_grad"))):
        missing = [m for m in needs if not callable(getattr(obj, m, None))]
        if missing:
            raise TypeError(f"fit: {name} must have {' and '.join(needs)}, got "
                            f"{type(obj).__name__} (without {', '.join(missing)})")


def callback_list(callbacks: Any) -> list[Callback]:
    if isinstance(callbacks, Callback):
        raise TypeError(f"fit: callbacks must be a list of Callback objects, got one "
                        f"{type(callbacks).__name__} (pass [{type(callbacks).__name__}(...)])")
    if not isinstance(callbacks, Sequence):
        raise TypeError(f"fit: callbacks must be a list of Callback objects, got {describe(callbacks)}")
    for i, c in enumerate(callbacks):
        if not isinstance(c, Callback):
            raise TypeError(f"fit: callbacks[{i}] must be an sg.callbacks.Callback, got {describe(c)}")
    return list(callbacks)


def steps_on_metric(scheduler: Any) -> bool:
    """ReduceLROnPlateau (and its subclasses) steps on a monitored metric, every other
    scheduler on a count."""
    return isinstance(scheduler, ReduceLROnPlateau)


def scheduler_unit(scheduler: Any, optimizer: Any, override: Any) -> str | None:
    """What one scheduler.step() stands for: the override, else the scheduler's `interval`."""
    if override is not None and override not in UNITS:
        raise ValueError(f"fit: scheduler_interval must be None, 'epoch' or 'step', got {override!r}")
    if scheduler is None:
        return None
    name = type(scheduler).__name__
    if not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"fit: scheduler must have a step() method, got {name}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError(f"fit: scheduler {name} drives another optimizer than the one fit steps "
                         "(build it on the optimizer passed to fit)")
    unit = override if override is not None else getattr(scheduler, "interval", "epoch")
    if unit not in UNITS:
        raise ValueError(f"fit: {name}.interval must be 'epoch' or 'step', got {unit!r}")
    if unit == "step" and steps_on_metric(scheduler):
        raise ValueError(f"fit: {name} steps on a monitored metric once per epoch; "
                         "scheduler_interval='step' does not apply to it")
    return unit


def schedule_length(scheduler: Any, unit: str | None, planned: int, steps_per_epoch: int) -> None:
    """A per-step schedule with a fixed length (OneCycleLR's total_steps) must cover the fit,
    or it raises in the last epoch after most of the training has been done."""
    total, done = getattr(scheduler, "total_steps", None), getattr(scheduler, "last_epoch", None)
    if unit != "step" or not isinstance(total, int) or not isinstance(done, int):
        return
    if done + planned > total:
        raise ValueError(
            f"fit: {type(scheduler).__name__} has {total - done} of its total_steps={total} left, "
            f"but this fit runs {planned} optimizer steps ({steps_per_epoch} per epoch); build "
            f"it with steps_per_epoch={steps_per_epoch} and the fit's epochs")


def batchnorm_layers(model: Any) -> list[str]:
    """Layers in training mode that normalise over the batch (they declare
    `normalizes_over_batch`, as BatchNorm1d does)."""
    return [f"{type(m).__name__} at '{name}'" for name, m in intro.named_layers(model)
            if getattr(m, "normalizes_over_batch", False) and intro.training_mode(m)]


def batch_plan(model: Any, n: int, batch_size: int, drop_last: bool,
               ranks: int = 1) -> tuple[int, int]:
    """(samples used per epoch, batches per epoch). A final batch of 1 is dropped when a
    BatchNorm would see it in training mode (torch raises there), with one warning per fit.
    Split between `ranks` (a DistributedDataParallel model), every rank needs a sample of
    each batch (two with a BatchNorm): a final batch too small for that is dropped too."""
    bn = batchnorm_layers(model)
    need = 2 if bn else 1  # samples per rank and batch
    if bn and batch_size == 1:
        raise ValueError(f"fit: batch_size=1, but {bn[0]} needs more than 1 "
                         "sample per batch in training mode")
    if batch_size < need * ranks:
        raise ValueError(f"fit: batch_size={batch_size} is split between {ranks} ranks, each "
                         f"needing at least {need} sample(s) per batch; pass a batch_size of at "
                         f"least {need * ranks}")
    rem = n % batch_size
    drop = rem if drop_last else (rem if 0 < rem < need * ranks and (bn or ranks > 1) else 0)
    if drop == n:
        why = "BatchNorm needs more than 1" if bn and n == 1 else f"drop_last=True and batch_size={batch_size}"
        raise ValueError(f"fit: x has {n} sample(s) and {why}: no batch left to train on")
    if drop and not drop_last and ranks > 1:
        warnings.warn(
            f"fit: the last batch of each epoch would hold {rem} sample(s), too few for {ranks} "
            f"ranks to get {need} each; it is dropped ({rem} of {n} samples per epoch). Pass "
            "drop_last=True to drop any partial batch, or pick a batch_size that leaves more.",
            DroppedBatchWarning, stacklevel=4)
    elif drop and not drop_last:
        warnings.warn(
            f"fit: the last batch of each epoch would hold 1 sample, which {bn[0]} cannot "
            f"normalise in training mode; it is dropped (1 of {n} samples per "
            "epoch, a different one each epoch when shuffling). Pass drop_last=True to drop any "
            "partial batch, or pick a batch_size that does not leave 1.",
            DroppedBatchWarning, stacklevel=4)  # the caller of fit
    return n - drop, math.ceil((n - drop) / batch_size)


def output_shape(model: Any, x: np.ndarray, where: str) -> tuple[int, ...]:
    """The model's output shape for two rows of x: from model.output_shape when it knows,
    else from one eval-mode forward (which updates no running statistics and draws no RNG)."""
    rows = x[: min(len(x), 2)]
    fn = getattr(model, "output_shape", None)
    if callable(fn):
        try:
            shape = fn(rows.shape)
        except ValueError as e:
            raise ValueError(f"{where}: x ({describe(x)}) does not fit the model: {e}") from e
        if shape is not None:
            return tuple(shape)
    with Mode(model, training=False):
        return tuple(np.shape(model(rows)))


def probe_rows(y: np.ndarray) -> list[int]:
    """The two samples a loss or metric is tried on: the extreme class labels, else the first
    and the last target."""
    return [int(np.argmin(y)), int(np.argmax(y))] if y.dtype.kind in "iu" and y.ndim == 1 else [0, -1]


def labels_and_loss(loss_fn: Any, out: tuple[int, ...], y: np.ndarray, where: str) -> None:
    """Integer targets for a (batch, C) output are class indices (fit's accuracy reads them so):
    all must lie in [0, C). Then the loss must accept these targets: it is called once on a
    zero prediction for the extreme targets, so a float label for a cross-entropy or an int
    target for MSE is refused before any layer has run in training mode."""
    classes = out[1] if len(out) == 2 else 0
    if y.dtype.kind in "iu" and y.ndim == 1 and classes > 1:
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{where}: labels must be class indices in [0, {classes}) for the model's "
                             f"{classes} outputs, got {y[i]} at index {i} ({bad.size} out of range)")
    rows = probe_rows(y)
    pred = np.zeros((len(rows), *out[1:]), np.float32)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # the zero prediction is a probe, not a result
            loss_fn(pred, y[rows])
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where} ({describe(y)}) does not suit the loss (tried on 2 of its "
                      f"targets): {e}") from e
