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
# id(layer) -> (a weak reference to the layer, the ids of its parameters, its running mean and
# variance as they were before its first update since the last step (copies in buffers the
# layer keeps), num_batches_tracked then). Keyed by id with the weak reference checked, so a
# lookup is one dict access and a reused id never matches; a dead layer's entry goes at the
# next step.
_Entry = tuple["weakref.ref[Any]", tuple[int, ...], tuple[np.ndarray, ...], "int | None"]
_pending: dict[int, _Entry] = {}


def before_update(layer: Any) -> None:
    """Called by a layer just before its forward updates its running statistics in place."""
    e = _pending.get(id(layer))
    if e is not None and e[0]() is layer:  # already saved since the last step
        return
    d = layer.__dict__
    cur = tuple(a for a in (d["running_mean"], d["running_var"]) if a is not None)
    keep = d.get("_prev_stats")
    if keep is None or len(keep) != len(cur) or any(
            k.shape != c.shape or k.dtype != c.dtype for k, c in zip(keep, cur, strict=True)):
        keep = d["_prev_stats"] = tuple(np.empty_like(c) for c in cur)
    for dst, src in zip(keep, cur, strict=True):
        np.copyto(dst, src)
    nbt = d["num_batches_tracked"]
    pids = tuple(id(p) for p in (d["_parameters"].get("weight"), d["_parameters"].get("bias"))
                 if p is not None)
    with _lock:
        _pending[id(layer)] = (weakref.ref(layer), pids, keep, None if nbt is None else int(nbt))


def finish_step(param_ids: frozenset[int], skipped: bool) -> None:
    """The optimizer owning the parameters `param_ids` took (or skipped) a step: forget (or
    restore) the saved statistics of the layers it owns: those whose parameters it steps, and
    layers without parameters, which no optimizer owns in particular."""
    if not _pending:
        return
    with _lock:
        for key, (ref, pids, saved, nbt) in list(_pending.items()):
            layer = ref()
            if layer is None:
                del _pending[key]
                continue
            if pids and not any(i in param_ids for i in pids):
                continue
            del _pending[key]
            if skipped:
                d = layer.__dict__
                cur = [a for a in (d["running_mean"], d["running_var"]) if a is not None]
                for dst, src in zip(cur, saved, strict=True):
                    np.copyto(dst, src)
                if nbt is not None and d["num_batches_tracked"] is not None:
                    d["num_batches_tracked"][...] = nbt
