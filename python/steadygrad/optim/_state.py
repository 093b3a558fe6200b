"""state_dict()/load_state_dict() for the flat-buffer optimizers, in PyTorch's structure:
{"state": {param_index: {"step": float, buffer_name: ndarray shaped like the parameter}},
 "param_groups": [{options..., "params": [param_index, ...]}]}, plus a "steadygrad" entry with
the skip counters. Arrays are copies. Loading validates everything before writing anything, and
also accepts a torch.optim state_dict of the same optimizer (CPU tensors convert through numpy).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class StateDictMixin:
    # Provided by Optimizer.
    param_groups: list[dict[str, Any]]
    _params: list[Any]
    _bufs: dict[str, np.ndarray]
    _step: np.ndarray
    _group_range: list[tuple[int, int]]
    _group_key: list[int | None]
    _buffer_names: tuple[str, ...]
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

    def _check_param_state(self, i: int, st: dict[str, Any]) -> dict[str, Any]:
        p = self._params[i]
        out: dict[str, Any] = {}
        for key, val in st.items():
            if key == "step":
                step = float(np.asarray(val))
                if not (step >= 0 and step == int(step)):
                    raise ValueError(f"load_state_dict: state[{i}]['step'] must be an integer >= 0, got {step}")
                out["step"] = int(step)
            elif key in self._buffer_names:
                if val is None:
                    continue
                arr = np.asarray(val)
                if arr.dtype.kind != "f":
                    raise TypeError(f"load_state_dict: state[{i}]['{key}'] must be a float array, got {arr.dtype}")
                if arr.shape != tuple(p.shape):
                    raise ValueError(
                        f"load_state_dict: state[{i}]['{key}'] has shape {arr.shape} but parameter "
                        f"{i} has shape {tuple(p.shape)}"
                    )
                out[key] = arr.astype(np.float32)
            else:
                raise ValueError(
                    f"load_state_dict: unknown state entry '{key}' for parameter {i} of "
                    f"{type(self).__name__} (expected 'step' or one of {list(self._buffer_names)})"
                )
        return out

    def _apply_param_state(self, i: int, st: dict[str, Any]) -> None:
        p = self._params[i]
        self._step[i] = st.get("step", 0)
        for name in self._buffer_names:
            if name in st:
                self._buf(name)[p.offset : p.offset + p.size] = st[name].ravel()  # type: ignore[attr-defined]
            elif name in self._bufs:
                self._bufs[name][p.offset : p.offset + p.size] = 0.0

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options, step counts and state buffers; on any error nothing changes."""
        groups = state_dict["param_groups"]
        state = state_dict.get("state", {})
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        plan: list[tuple[int, dict[str, Any]]] = []
        for gi, saved in enumerate(groups):
            lo, hi = self._group_range[gi]
            ids = list(saved["params"])
            if len(ids) != hi - lo:
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size "
                    "of optimizer's group"
                )
            for local, sid in enumerate(ids):
                st = state.get(sid, state.get(str(sid)))
                plan.append((lo + local, self._check_param_state(lo + local, st or {})))
        for i, st in plan:
            self._apply_param_state(i, st)
        self._group_key = [None] * len(self.param_groups)
        for g, saved in zip(self.param_groups, groups, strict=False):
            for k, v in saved.items():
                if k not in ("params", "param_names"):
                    g[k] = tuple(v) if k == "betas" else v
        extra = state_dict.get("steadygrad", {})
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        self.consecutive_skips = int(extra.get("consecutive_skips", 0))
