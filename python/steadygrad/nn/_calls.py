"""What happens around a public call of a module (`model(x)`, `model.backward(g)`), kept apart
from the layers' arithmetic:

- **Locking.** A call holds the lock of every module in the called tree (acquired in one global
  order, so two trees sharing a module cannot deadlock): calls on one model from several
  threads run one at a time instead of interleaving their caches.
- **Caller-owned results.** Layers write into work buffers they reuse on every call. What a
  public call returns is never one of them: an internal buffer is copied into an array of the
  caller's, which is reused only once nobody outside holds it any more (its reference count
  says so), so `a = model(xa); b = model(xb)` leaves `a` as it was and a training loop that
  drops its outputs still allocates nothing.
- **Scratch tape for inference.** An eval-mode forward while a training forward's backward is
  pending runs on separate work buffers and leaves every module's caches as they were, so
  the pending backward still sees the training forward (as in PyTorch).
- **Chains recorded for custom modules.** Calls of child modules made inside a module's own
  `forward` are recorded, so a custom module whose forward calls its children in a chain
  gets a working backward without writing one.
"""

from __future__ import annotations

import itertools
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from steadygrad.nn.module import Module

_tls = threading.local()


class StackedForwardsError(RuntimeError):
    """A backward was asked for after several forwards: the caches hold only the last."""
# Bumped whenever any module gains or loses a child: cached lock lists are then rebuilt.
_structure = [0]


def structure_changed() -> None:
    _structure[0] += 1


def structure_generation() -> int:
    return _structure[0]


def recorders() -> list[list[tuple[Module, Any, Any]]]:
    rec = getattr(_tls, "recorders", None)
    if rec is None:
        rec = _tls.recorders = []
    return rec


def nested() -> bool:
    """True inside another module's forward or backward on this thread."""
    return getattr(_tls, "depth", 0) > 0


def enter(module: Module) -> tuple[list[threading.RLock], int]:
    """Start a public call: take the tree's locks. Returns what `leave` needs; the depth
    says whether the call is nested in another module's forward or backward."""
    locks = tree(module)[1]
    for lk in locks:
        lk.acquire()
    depth = getattr(_tls, "depth", 0)
    _tls.depth = depth + 1
    return locks, depth


def leave(token: tuple[list[threading.RLock], int]) -> None:
    locks, depth = token
    _tls.depth = depth
    for lk in reversed(locks):
        lk.release()


def tree(module: Module) -> tuple[list[Module], list[threading.RLock]]:
    """Every module of the tree once, and their locks in the global (id) order."""
    cached = module.__dict__.get("_tree")
    if cached is not None and cached[0] == _structure[0]:
        return cached[1], cached[2]
    by_id = {id(m): m for m in module.modules()}
    mods = list(by_id.values())
    locks = [by_id[k]._lock for k in sorted(by_id)]
    object.__setattr__(module, "_tree", (_structure[0], mods, locks))
    return mods, locks


# Every finished layer forward takes the next number (under the GIL, so unique): a call that
# fails can tell from its tree's numbers whether any layer's forward ran, and so whether the
# pending state may be half overwritten, without a snapshot of the tree per call.
next_serial = itertools.count(1).__next__


def forget_pending(mods: list[Module]) -> None:
    """After a forward that failed part way: what was pending may be half overwritten."""
    for m in mods:
        object.__setattr__(m, "_phase", 0)
        object.__setattr__(m, "_forwards", 0)


# -- chains of child calls inside a custom forward ----------------------------------------
# Module._run_forward pushes a list on this thread's stack for the calls its forward makes.
def record(module: Module, x: Any, y: Any) -> None:
    stack = recorders()
    if stack:
        stack[-1].append((module, x, y))


# -- caller-owned results -----------------------------------------------------------------
# The arrays Module._buffer allocated (the owners of every work buffer), by id; an entry goes
# when its array does, so an id reused by another array never matches.
_work_owners: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def note_work_buffer(raw: np.ndarray) -> None:
    _work_owners[id(raw)] = raw


def is_internal(module: Module, y: object) -> bool:
    """Whether y lies in a work buffer of some module (numpy collapses a view's base to the
    array that owns the memory, which for a work buffer is the one Module._buffer made)."""
    if not isinstance(y, np.ndarray):
        return False
    owner = y if y.base is None else y.base
    return _work_owners.get(id(owner)) is owner


def hand_out(module: Module, key: str, y: Any) -> Any:
    """y itself when it is not an internal buffer, else a caller-owned copy of it."""
    if not is_internal(module, y):
        return y
    pool = module._handout
    arr = pool.get(key)
    # References to arr here: the pool's, this frame's and getrefcount's argument. One more
    # is the caller's (or a view's, or an exporter's): then it is theirs to keep.
    if arr is None or arr.shape != y.shape or sys.getrefcount(arr) > 3:
        arr = np.empty(y.shape, np.float32)
        pool[key] = arr
    np.copyto(arr, y)
    return arr


# -- scratch tape for an inference forward ------------------------------------------------
def forward_on_scratch(module: Module, x: Any) -> Any:
    """Run module's forward on every module's second set of work buffers and put every
    attribute the forward assigned back afterwards (the pending training caches stay)."""
    mods = tree(module)[0]
    saved = [(m, dict(m.__dict__)) for m in mods]
    for m in mods:
        m.__dict__["_work"] = m._work_eval
    try:
        return module._run_forward(x)
    finally:
        for m, d in saved:
            m.__dict__.clear()
            m.__dict__.update(d)


# -- naming errors and recognising chains ------------------------------------------------
def located(err: BaseException, prefix: str) -> BaseException:
    """The same kind of exception with `prefix` (where it happened) before its message."""
    msg = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
    try:
        new = type(err)(f"{prefix}{msg}")
    except Exception:
        new = RuntimeError(f"{prefix}{msg}")
    new._sg_located = True  # type: ignore[attr-defined]
    return new


def chain_of(calls: list[tuple[Module, Any, Any]], x: Any, y: Any) -> list[Module] | None:
    """The child modules called in a chain x -> ... -> y by a forward, or None if the calls
    recorded do not form one (nothing called, a branch, a child called twice, ...)."""
    if not calls or calls[0][1] is not x or calls[-1][2] is not y:
        return None
    for (_, _, prev_y), (_, next_x, _) in itertools.pairwise(calls):
        if next_x is not prev_y:
            return None
    mods = [c[0] for c in calls]
    return mods if len({id(m) for m in mods}) == len(mods) else None
