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
# id(layer) -> (a weak reference to the layer, (running_mean, running_var, their copies as they
# were before the layer's first update since the last step), num_batches_tracked then). Keyed
# by id with the weak reference checked, so a lookup is one dict access and a reused id never
# matches; a dead layer's entry goes at the next step. The copies live in buffers the layer
# keeps: no allocation per step.
_Saved = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_pending: dict[int, tuple[weakref.ref[Any], _Saved, int | None]] = {}
_NONE = np.zeros(0, np.float32)  # stands for a running buffer that is None


def before_update(layer: Any) -> None:
    """Called by a training BatchNorm's forward just before its kernel updates running_mean,
    running_var and num_batches_tracked in place (all three registered arrays)."""
    e = _pending.get(id(layer))
    if e is not None and e[0]() is layer:  # already saved since the last step
        return
    d = layer.__dict__
    rm, rv, nb = d["running_mean"], d["running_var"], d["num_batches_tracked"]
    if rm is None or rv is None:  # a buffer set to None: nothing of it is updated
        rm = rm if rm is not None else _NONE
        rv = rv if rv is not None else _NONE
    keep = d.get("_prev_stats")
    if (keep is None or keep[0] is not rm or keep[1] is not rv or keep[2].shape != rm.shape
            or keep[3].shape != rv.shape):
        keep = d["_prev_stats"] = (rm, rv, np.empty_like(rm), np.empty_like(rv))
    np.copyto(keep[2], rm)
    np.copyto(keep[3], rv)
    with _lock:
        _pending[id(layer)] = (weakref.ref(layer), keep, None if nb is None else int(nb))


def _owned(layer: Any, param_ids: frozenset[int]) -> bool:
    """Whether an optimizer stepping `param_ids` owns the layer: it steps one of the layer's
    parameters, or the layer has none (no optimizer owns it in particular)."""
    ps = layer.__dict__["_parameters"]
    w, b = ps.get("weight"), ps.get("bias")
    if w is None and b is None:
        return True
    return id(w) in param_ids or id(b) in param_ids


def finish_step(param_ids: frozenset[int], skipped: bool) -> None:
    """The optimizer owning the parameters `param_ids` took (or skipped) a step: forget (or
    restore) the saved statistics of the layers it owns."""
    if not _pending:
        return
    with _lock:
        for key, (ref, saved, nbt) in list(_pending.items()):
            layer = ref()
            if layer is None:
                del _pending[key]
            elif _owned(layer, param_ids):
                del _pending[key]
                if skipped:
                    d = layer.__dict__
                    rm, rv, nb = d["running_mean"], d["running_var"], d["num_batches_tracked"]
                    for cur, was, old in ((rm, saved[0], saved[2]), (rv, saved[1], saved[3])):
                        if cur is was:  # else replaced since: nothing of it to restore
                            np.copyto(cur, old)
                    if nb is not None and nbt is not None:
                        nb[...] = nbt
