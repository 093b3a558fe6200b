"""Parameter groups and the flat storage behind an optimizer: PyTorch's add_param_group
rules, one FlatStorage for all parameters (flattening them, and carrying state buffers along,
when they span several), offset-sorted segment arrays per group, lazily allocated state.

The optimizer follows its parameters: when `flatten()` moves any of them out of the storage
the optimizer is bound to (a container built around the layers after the optimizer was made),
that storage's `generation` changes, and the next step (or state access) re-binds to where the
parameters are now, moving the state buffers to the new layout without changing a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad.nn.parameter import FlatStorage, Parameter, aligned_zeros, flatten, shared_storage
from steadygrad.optim._hyper import check_hyperparameters


class ParamGroupsMixin:
    # Set up by Optimizer.__init__.
    defaults: dict[str, Any]
    param_groups: list[dict[str, Any]]
    _params: list[Parameter]
    _names: list[str | None]
    _storage: FlatStorage | None
    _bufs: dict[str, np.ndarray]
    _step: np.ndarray
    _all_off: np.ndarray
    _hyper_keys: tuple[str, ...]
    if TYPE_CHECKING:  # from StateDictMixin (see Optimizer's bases); not defined here, so
        # defining them would not shadow StateDictMixin's in the method resolution order
        def _state_buffers(self, group: dict[str, Any]) -> list[str]: ...
        def _has_state(self, i: int) -> bool: ...

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (dict with "params" and optional per-group options), as in PyTorch."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("param_group must have a 'params' entry (the parameters of the "
                             f"group), got keys {sorted(map(str, group))}")
        raw = group["params"]
        if isinstance(raw, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the "
                "ordering of tensors in sets will change between runs. Please use a list instead."
            )
        raw = [raw] if isinstance(raw, Parameter) else list(raw)
        params: list[Parameter] = []
        names: list[str] = []
        for item in raw:
            if isinstance(item, tuple):
                names.append(str(item[0]))
                item = item[1]
            if not isinstance(item, Parameter):
                raise TypeError(
                    "optimizer can only optimize Parameters, but one of the params is "
                    f"{type(item).__module__}.{type(item).__name__}"
                )
            params.append(item)
        if names and len(names) != len(params):
            raise ValueError(
                "all optimizer params should be with/without names. Some param names are missing"
            )
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        if any(("param_names" in g) != bool(names) for g in self.param_groups):
            raise ValueError("all optimizer param groups should be with/without names")
        known = {id(p) for p in self._params}
        if any(id(p) in known for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        group["params"] = params
        if names:
            group["param_names"] = names
        try:
            check_hyperparameters(group, self._hyper_keys)
        except ValueError as e:
            raise ValueError(f"param_groups[{len(self.param_groups)}]: {e}") from None
        self._params.extend(params)
        self._names.extend(names if names else [None] * len(params))
        self._step = np.concatenate([self._step, np.zeros(len(params), dtype=np.int64)])
        self.param_groups.append(group)
        self._bind_storage()
        self._on_params_added(len(params))

    def _on_params_added(self, count: int) -> None:
        """Subclasses extend per-parameter bookkeeping."""

    def _bind_storage(self) -> None:
        """Bind to the one FlatStorage that holds every parameter (flattening them into a new
        one when they span several). State buffers move from the layout they are in (`_all_off`:
        the offsets of the previous binding, one per parameter known then; parameters added
        since start with zero state) to the new one, value for value."""
        old = self._storage
        storage = shared_storage(self._params)
        if storage is None:
            storage = flatten(self._params)
        if storage is not old and self._bufs:
            moved = list(zip(self._params, self._all_off.tolist(), strict=False))
            for name, buf in list(self._bufs.items()):
                new = aligned_zeros(storage.numel)
                for p, o in moved:
                    new[p.offset : p.offset + p.size] = buf[o : o + p.size]
                self._bufs[name] = new
        self._storage = storage
        self._storage_generation = storage.generation
        self._index_groups()

    def _follow_storage(self) -> None:
        """Re-bind if any parameter has left the bound storage since the last binding (one
        integer compare when none has)."""
        s = self._storage
        if s is not None and s.generation != self._storage_generation:
            self._bind_storage()

    def _index_groups(self) -> None:
        """Cache per-group index ranges and offset-sorted segment arrays (the fast path)."""
        self._group_range: list[tuple[int, int]] = []
        # Per group: the common phase of all its parameters (None: unknown or mixed).
        self._group_phase: list[int | None] = [None] * len(self.param_groups)
        self._group_segs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        lo = 0
        for g in self.param_groups:
            hi = lo + len(g["params"])
            self._group_range.append((lo, hi))
            self._group_segs.append(self._segments(list(range(lo, hi))))
            lo = hi
        self._all_off = np.array([p.offset for p in self._params], dtype=np.int64)
        self._all_len = np.array([p.size for p in self._params], dtype=np.int64)
        self._norm_out = np.empty(len(self._params), dtype=np.float64)
        self._all_idx = list(range(len(self._params)))

    def _segments(self, idx: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, lengths, param indices) for params `idx`, sorted by offset."""
        idx = sorted(idx, key=lambda i: self._params[i].offset)
        off = np.array([self._params[i].offset for i in idx], dtype=np.int64)
        ln = np.array([self._params[i].size for i in idx], dtype=np.int64)
        return off, ln, np.array(idx, dtype=np.int64)

    def _buf(self, name: str) -> np.ndarray:  # call after _follow_storage
        buf = self._bufs.get(name)
        if buf is None:
            assert self._storage is not None
            buf = self._bufs[name] = aligned_zeros(self._storage.numel)
        return buf

    def state_bytes(self) -> int:
        """Bytes of the state buffers: each one flat array the size of the parameter storage,
        counted once allocated or once a group needs it (they are allocated on first step)."""
        self._follow_storage()
        names = set(self._bufs)
        for g in self.param_groups:
            names.update(self._state_buffers(g))
        numel = self._storage.numel if self._storage is not None else 0
        return sum(self._bufs[n].nbytes if n in self._bufs else 4 * numel for n in names)

    @property
    def state(self) -> dict[Parameter, dict[str, Any]]:
        """PyTorch-style per-parameter state for parameters that have taken a step: "step"
        and each state buffer as a *view* into the flat buffer (writes go through; a view
        taken before the parameters moved to a new storage is detached from it)."""
        self._follow_storage()
        out: dict[Parameter, dict[str, Any]] = {}
        for gi, (lo, hi) in enumerate(self._group_range):
            names = self._state_buffers(self.param_groups[gi])
            for i in range(lo, hi):
                if self._has_state(i):
                    p = self._params[i]
                    st: dict[str, Any] = {"step": int(self._step[i])}
                    for name in names:
                        st[name] = self._buf(name)[p.offset : p.offset + p.size].reshape(p.shape)
                    out[p] = st
        return out

    @property
    def storage(self) -> FlatStorage:
        """The FlatStorage holding every parameter (where they are now)."""
        self._follow_storage()
        assert self._storage is not None
        return self._storage
