"""What sg.fit trains on, settled before the first step: arrays (x, y) or a DataLoader (its
batch_size, shuffle, drop_last and order), the validation split, the per-sample weights
(sample_weight times class_weight) and the metrics. Each bad argument raises an error naming
it; nothing here changes the model, the optimizer or any RNG."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from steadygrad import metrics as metric_registry
from steadygrad.data import DataLoader
from steadygrad.metrics import MetricFn
from steadygrad.training import checks as check
from steadygrad.training.run import Arrays


@dataclass
class Source:
    """The samples and how they are batched: from fit's arguments or from a DataLoader."""

    x: Any
    y: Any
    sample_weight: Any
    batch_size: int
    shuffle: bool
    drop_last: bool
    loader: DataLoader | None


def _same(name: str, given: Any, loader_value: Any) -> None:
    if given is not None and given != loader_value:
        raise ValueError(f"fit: {name}={given!r} conflicts with the DataLoader's {name}={loader_value!r} "
                         f"(with a DataLoader the loader decides: leave {name} out)")


def source(x: Any, y: Any, opts: dict[str, Any]) -> Source:
    """fit(model, loss, opt, x, y, batch_size=...) or fit(model, loss, opt, loader)."""
    if not isinstance(x, DataLoader):
        if y is None:
            raise TypeError("fit: y is required with an array x (or pass a DataLoader of (x, y) as x)")
        shuffle = True if opts["shuffle"] is None else check.flag(opts["shuffle"], "fit: shuffle")
        drop_last = False if opts["drop_last"] is None else check.flag(opts["drop_last"], "fit: drop_last")
        return Source(x, y, opts["sample_weight"], check.count(opts["batch_size"], "fit: batch_size"),
                      shuffle, drop_last, None)
    loader = x
    if y is not None:
        raise TypeError(f"fit: x is a DataLoader, which holds the targets too; y must be left out, "
                        f"got {check.describe(y)}")
    if len(loader.arrays) not in (2, 3):
        raise ValueError(f"fit: the DataLoader must hold (x, y) or (x, y, sample_weight), it holds "
                         f"{len(loader.arrays)} arrays")
    for name in ("batch_size", "shuffle", "drop_last"):
        _same(name, opts[name], getattr(loader, name))
    if opts["seed"] is not None:
        raise ValueError("fit: seed conflicts with the DataLoader's own generator (seed it with "
                         "DataLoader(..., seed=...)), leave seed out")
    if opts["validation_split"] is not None:
        raise ValueError("fit: validation_split splits arrays; with a DataLoader pass validation_data "
                         "(x_val, y_val)")
    w = loader.arrays[2] if len(loader.arrays) == 3 else None
    if w is not None and opts["sample_weight"] is not None:
        raise ValueError("fit: the DataLoader holds sample weights (its third array); sample_weight "
                         "must be left out")
    return Source(loader.arrays[0], loader.arrays[1], opts["sample_weight"] if w is None else w,
                  loader.batch_size, loader.shuffle, loader.drop_last, loader)


def sample_weights(w: Any, n: int, where: str) -> np.ndarray | None:
    """One finite, non-negative real weight per sample, as float64 (None stays None)."""
    if w is None:
        return None
    arr = w if isinstance(w, np.ndarray) else np.asarray(w)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{where} must be an array of real numbers, one per sample, got {check.describe(arr)}")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(f"{where} must have shape ({n},), one weight per sample of x, got shape {arr.shape}")
    out = arr.astype(np.float64)
    bad = np.flatnonzero(~(np.isfinite(out) & (out >= 0)))
    if bad.size:
        raise ValueError(f"{where} must be finite and non-negative, got {out[bad[0]]} at index {bad[0]}")
    return out


def split(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, fraction: Any) -> tuple[Arrays, Arrays]:
    """Keras' validation_split: the last `fraction` of the samples (taken before any shuffling)
    are the validation data, the first floor(n * (1 - fraction)) the training data."""
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"fit: validation_split must be a float in (0, 1), got {check.describe(fraction)}")
    if not 0 < fraction < 1:
        raise ValueError(f"fit: validation_split must be in (0, 1), got {fraction}")
    at = math.floor(len(x) * (1.0 - float(fraction)))
    if at in (0, len(x)):
        raise ValueError(f"fit: validation_split={fraction} of {len(x)} samples leaves "
                         f"{'no training' if at == 0 else 'no validation'} sample")
    cut = None if w is None else w[at:]
    return (x[:at], y[:at], None if w is None else w[:at]), (x[at:], y[at:], cut)


def class_weights(class_weight: Any, y: np.ndarray, out: tuple[int, ...]) -> np.ndarray:
    """Keras' class_weight: sample i weighs class_weight.get(label_i, 1.0). Labels are integer
    class indices, or 0/1 targets of one binary output (float 0/1 targets too)."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"fit: class_weight must be a dict {{class index: weight}}, got "
                        f"{check.describe(class_weight)}")
    one_output = math.prod(out[1:]) == 1
    if y.dtype.kind in "iu" and y.ndim == 1:
        labels = y
    elif one_output and y.size == len(y) and np.all((y == 0) | (y == 1)):
        labels = y.reshape(-1).astype(np.int64)
    else:
        raise ValueError(f"fit: class_weight needs class labels (integer targets, or 0/1 targets for one "
                         f"binary output), got y {check.describe(y)} of "
                         f"{'regression' if y.dtype.kind == 'f' else 'non-label'} values")
    classes = 2 if one_output else (out[1] if len(out) == 2 else 0)
    table = np.ones(max(classes, 1), np.float64)
    for k, v in class_weight.items():
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 0 <= k < classes:
            raise ValueError(f"fit: class_weight keys must be class indices in [0, {classes}) for the "
                             f"model's output of shape {out}, got key {k!r}")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(v) and v >= 0):
            raise ValueError(f"fit: class_weight[{k}] must be a finite non-negative number, got {v!r}")
        table[int(k)] = float(v)
    bad = np.flatnonzero((labels < 0) | (labels >= len(table)))
    if bad.size:
        raise ValueError(f"fit: class_weight needs labels in [0, {len(table)}), got y[{bad[0]}] = "
                         f"{labels[bad[0]]}")
    weights: np.ndarray = table[labels]
    return weights


def per_sample_loss(loss_fn: Any, where: str, what: str) -> None:
    """Weights multiply per-sample losses: the loss must return them (reduction='none')."""
    if getattr(loss_fn, "reduction", None) != "none":
        raise ValueError(f"{where}: {what} a loss that returns per-sample losses, "
                         f"{type(loss_fn).__name__}(reduction='none'); got {loss_fn!r}. The loss is "
                         "then sum(weight * loss) / batch size (Keras' normalisation)")


def metric_fns(names: Any, y: np.ndarray, out: tuple[int, ...], where: str) -> tuple[tuple[str, MetricFn], ...]:
    """The metrics to log, by name (default: accuracy for integer targets, none otherwise),
    each tried once on a zero prediction for two targets."""
    if names is None:
        names = ["accuracy"] if y.dtype.kind in "iu" else []
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"{where}: metrics must be a list of metric names, got {check.describe(names)}")
    fns: list[tuple[str, MetricFn]] = []
    for i, name in enumerate(names):
        try:
            fn = metric_registry.get(name)
        except ValueError as e:
            raise ValueError(f"{where}: metrics[{i}]: {e}") from e
        if any(name == seen for seen, _ in fns):
            raise ValueError(f"{where}: metrics lists {name!r} twice")
        rows = check.probe_rows(y)
        pred = np.zeros((len(rows), *out[1:]), np.float32)
        try:
            got = np.asarray(fn(pred, y[rows]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: metric {name!r} does not suit the model's output of shape {out} "
                             f"and y ({check.describe(y)}): {e}") from e
        if got.shape != (len(rows),):
            raise ValueError(f"{where}: metric {name!r} must return one value per sample, shape "
                             f"({len(rows)},) for 2 samples, got shape {got.shape}")
        fns.append((name, fn))
    return tuple(fns)
