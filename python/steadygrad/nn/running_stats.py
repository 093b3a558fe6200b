"""Running statistics updated since the last optimizer step, so that a skipped step can take
them back.

A training forward of a BatchNorm folds the batch's statistics into running_mean/var as soon
as it runs (as in PyTorch). When the optimizer then skips the step because a gradient is not
finite, the batch that caused it must not stay in the running statistics either: one NaN batch
would make every later eval output NaN. So the first update of a layer after a step saves the
statistics it is about to change (into buffers the layer keeps, no allocation per step), and
the optimizer's step either commits (forgets the saved values) or rolls back (restores them)
the updates of the layers it owns, those whose parameters it steps, and of layers without
parameters, which no optimizer owns in particular.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

_lock = threading.Lock()
# layer -> the statistics as they were before its first update since the last step
_pending: weakref.WeakKeyDictionary[Any, tuple[np.ndarray, ...]] = weakref.WeakKeyDictionary()

_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def before_update(layer: Any) -> None:
    """Called by a layer just before its forward updates its running statistics in place."""
    if layer in _pending:  # already saved since the last step (the common case: one check)
        return
    with _lock:
        cur = [a for a in (layer.running_mean, layer.running_var, layer.num_batches_tracked)
               if a is not None]
        keep = layer.__dict__.get("_prev_stats")
        if keep is None or len(keep) != len(cur) or any(
                k.shape != c.shape or k.dtype != c.dtype for k, c in zip(keep, cur, strict=True)):
            keep = tuple(np.empty_like(c) for c in cur)
            object.__setattr__(layer, "_prev_stats", keep)
        for dst, src in zip(keep, cur, strict=True):
            np.copyto(dst, src)
        _pending[layer] = keep


def _owned(layer: Any, param_ids: frozenset[int]) -> bool:
    params = [p for p in (getattr(layer, "weight", None), getattr(layer, "bias", None))
              if p is not None]
    return not params or any(id(p) in param_ids for p in params)


def finish_step(param_ids: frozenset[int], skipped: bool) -> None:
    """The optimizer owning the parameters `param_ids` took (or skipped) a step: forget (or
    restore) the saved statistics of the layers it owns."""
    if not _pending:
        return
    with _lock:
        for layer in [m for m in _pending if _owned(m, param_ids)]:
            saved = _pending.pop(layer)
            if skipped:
                cur = [getattr(layer, n) for n in _NAMES if getattr(layer, n) is not None]
                for dst, src in zip(cur, saved, strict=True):
                    np.copyto(dst, src)
