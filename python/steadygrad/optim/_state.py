"""state_dict()/load_state_dict() for the flat-buffer optimizers, in PyTorch's structure:
{"state": {param_index: {"step": float, buffer_name: ndarray shaped like the parameter}},
 "param_groups": [{options..., "params": [param_index, ...]}]}, plus a "steadygrad" entry with
the skip counters. Arrays are copies. Loading validates everything before writing anything
(structure, every merged group's hyperparameters with the same check a step uses, step counts,
each state array's dtype, shape and values: finite, second moments >= 0), so a bad dict or
checkpoint raises a ValueError/TypeError naming the group, parameter and key and leaves the
optimizer as it was. A torch.optim state_dict of the same optimizer loads too (CPU tensors
convert through numpy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from steadygrad.optim._hyper import check_hyperparameters, stored

# Step counts are stored as float by PyTorch; above 2**53 a float no longer counts steps.
_MAX_STEP = 2**53


class StateDictMixin:
    # Provided by Optimizer.
    param_groups: list[dict[str, Any]]
    _params: list[Any]
    _bufs: dict[str, np.ndarray]
    _step: np.ndarray
    _group_range: list[tuple[int, int]]
    _group_phase: list[int | None]
    _buffer_names: tuple[str, ...]
    _nonneg_buffers: tuple[str, ...] = ()  # second-moment estimates: a sqrt reads them
    _hyper_keys: tuple[str, ...]
    skipped_steps: int
    consecutive_skips: int

    def _state_buffers(self, group: dict[str, Any]) -> list[str]:
        """Names of the state buffers a parameter of this group carries."""
        return list(self._buffer_names)

    def _has_state(self, i: int) -> bool:
        return bool(self._step[i] > 0)

    def _param_state(self, i: int, group: dict[str, Any]) -> dict[str, Any] | None:
        if not self._has_state(i):
            return None
        p = self._params[i]
        st: dict[str, Any] = {"step": float(self._step[i])}
        for name in self._state_buffers(group):
            buf = self._bufs.get(name)
            view = buf[p.offset : p.offset + p.size] if buf is not None else np.zeros(p.size, np.float32)
            st[name] = view.reshape(p.shape).copy()
        return st

    def state_dict(self) -> dict[str, Any]:
        self._follow_storage()  # type: ignore[attr-defined]
        state: dict[int, dict[str, Any]] = {}
        groups = []
        for gi, g in enumerate(self.param_groups):
            lo, hi = self._group_range[gi]
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = list(range(lo, hi))
            groups.append(packed)
            for i in range(lo, hi):
                st = self._param_state(i, g)
                if st is not None:
                    state[i] = st
        extra = {"skipped_steps": self.skipped_steps, "consecutive_skips": self.consecutive_skips}
        return {"state": state, "param_groups": groups, "steadygrad": extra}

    def _check_param_state(self, i: int, sid: Any, st: Any) -> dict[str, Any]:
        """Saved state `st` (state[sid]) for parameter i, checked and converted (copies)."""
        try:
            return self._checked_state(i, f"load_state_dict: state[{sid!r}]", st)
        except (TypeError, ValueError) as e:
            label = self.param_label(i)  # type: ignore[attr-defined]
            raise type(e)(f"{e} (for {label}; the optimizer was not changed)") from None

    def _checked_state(self, i: int, where: str, st: Any) -> dict[str, Any]:
        if not isinstance(st, Mapping):
            raise TypeError(f"{where} must be a dict, got {type(st).__name__}")
        shape = tuple(self._params[i].shape)
        out: dict[str, Any] = {}
        for key, val in st.items():
            if key == "step":
                out["step"] = _checked_step(val, f"{where}['step']")
            elif key in self._buffer_names:
                if val is not None:
                    out[key] = self._checked_buffer(val, key, shape, f"{where}['{key}']")
            else:
                raise ValueError(
                    f"{where}: unknown state entry {key!r} for {type(self).__name__} (expected "
                    f"'step' or one of {list(self._buffer_names)})"
                )
        return out

    def _checked_buffer(self, val: Any, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
        try:
            arr = np.asarray(val)
        except Exception as e:  # e.g. a bfloat16 tensor numpy cannot read
            raise TypeError(f"{where} cannot be read as an array: {e}") from None
        if arr.dtype.kind != "f":
            raise TypeError(f"{where} must be a float array, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"{where} has shape {arr.shape}, expected {shape} (the parameter's)")
        with np.errstate(over="ignore"):  # an overflow becomes inf, reported just below
            out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out.ravel()))[0])
            raise ValueError(f"{where} holds a non-finite value in float32 ({arr.ravel()[bad]} at "
                             f"flat index {bad})")
        if key in self._nonneg_buffers and (out < 0).any():
            raise ValueError(f"{where} holds a negative value ({out.min()}); a second-moment "
                             "estimate must be >= 0")
        return out

    def _apply_param_state(self, i: int, st: dict[str, Any]) -> None:
        p = self._params[i]
        self._step[i] = st.get("step", 0)
        for name in self._buffer_names:
            if name in st:
                self._buf(name)[p.offset : p.offset + p.size] = st[name].ravel()  # type: ignore[attr-defined]
            elif name in self._bufs:
                self._bufs[name][p.offset : p.offset + p.size] = 0.0

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore options, step counts and state buffers; on any error nothing changes."""
        self._follow_storage()  # type: ignore[attr-defined]
        if not isinstance(state_dict, Mapping) or "param_groups" not in state_dict:
            raise TypeError("load_state_dict: state_dict must be a dict with 'param_groups' (and 'state'), "
                            f"got {type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        state = state_dict.get("state", {})
        if not isinstance(groups, (list, tuple)) or not isinstance(state, Mapping):
            raise TypeError("load_state_dict: 'param_groups' must be a list and 'state' a dict")
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        merged: list[dict[str, Any]] = []
        plan: list[tuple[int, dict[str, Any]]] = []
        for gi, saved in enumerate(groups):
            merged.append(self._merged_group(gi, saved))
            lo = self._group_range[gi][0]
            for local, sid in enumerate(saved["params"]):
                try:
                    st = state.get(sid, state.get(str(sid)))
                except TypeError:  # unhashable
                    raise TypeError(f"load_state_dict: param_groups[{gi}]['params'] holds {sid!r}, "
                                    "expected parameter ids (ints)") from None
                plan.append((lo + local, self._check_param_state(lo + local, sid, st or {})))
        extra = state_dict.get("steadygrad", {})
        counters = {k: _checked_count(extra, k) for k in ("skipped_steps", "consecutive_skips")}
        # Everything is checked: write.
        for i, st in plan:
            self._apply_param_state(i, st)
        self._group_phase = [None] * len(self.param_groups)
        for g, new in zip(self.param_groups, merged, strict=True):
            g.update(new)  # the same dicts: schedulers and user code keep their references
        self.skipped_steps = counters["skipped_steps"]
        self.consecutive_skips = counters["consecutive_skips"]

    def _merged_group(self, gi: int, saved: Any) -> dict[str, Any]:
        """Group gi as it would be after loading `saved` (checked; the live group untouched)."""
        where = f"load_state_dict: param_groups[{gi}]"
        if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), (list, tuple)):
            raise TypeError(f"{where} must be a dict with a 'params' list")
        lo, hi = self._group_range[gi]
        if len(saved["params"]) != hi - lo:
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size "
                "of optimizer's group"
            )
        new = dict(self.param_groups[gi])
        for k, v in saved.items():
            if k not in ("params", "param_names"):
                new[k] = stored(k, v)
        try:
            check_hyperparameters(new, self._hyper_keys)
        except ValueError as e:
            raise ValueError(f"{where}: {e}; the optimizer was not changed") from None
        return new


def saved_number(val: Any, where: str) -> np.ndarray:
    """A saved scalar (PyTorch saves a 0-d tensor) as a 0-d numpy array of a real dtype."""
    try:
        arr = np.asarray(val)
    except Exception as e:
        raise TypeError(f"{where} cannot be read as a number: {e}") from None
    if arr.shape != () or arr.dtype.kind not in "iuf":
        raise ValueError(f"{where} must be a number, got {arr.dtype}{list(arr.shape)}")
    return arr


def _checked_step(val: Any, where: str) -> int:
    """A saved step count (PyTorch saves a float tensor) as an int in [0, 2**53]."""
    step = float(saved_number(val, where))
    if not (math.isfinite(step) and 0 <= step <= _MAX_STEP and step == int(step)):
        raise ValueError(f"{where} must be an integer in [0, 2**53], got {step}")
    return int(step)


def _checked_count(extra: Any, key: str) -> int:
    v = extra.get(key, 0) if isinstance(extra, Mapping) else None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"load_state_dict: steadygrad[{key!r}] must be an int >= 0, got {v!r}")
    return int(v)
