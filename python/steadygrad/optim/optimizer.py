"""Optimizer base over the flat parameter buffer: parameter groups, the fused step (one norm
pass, one update pass per group), gradient clipping folded into the update, and the atomic
skip of steps with non-finite gradients. Groups and storage live in `_groups.py`,
state_dict/load_state_dict in `_state.py`, norms and the guard's types in `_norms.py`.

Storage: all parameters an optimizer manages live in one `FlatStorage`. If the given
parameters span several, the constructor calls `nn.flatten()` on them, which copies them into
a new storage and *rebinds* every parameter's `.data`/`.grad` views (old views keep old memory).
When something else moves them later (a container built around layers an optimizer already
holds), the optimizer follows at its next step: see `_groups.py`.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Iterable
from typing import Any, Generic, TypedDict

import numpy as np

from steadygrad import _core
from steadygrad.nn import running_stats
from steadygrad.nn.parameter import FlatStorage, Parameter
from steadygrad.optim._groups import ParamGroupsMixin
from steadygrad.optim._hyper import (
    ClipOption,
    GroupHyper,
    HyperT,
    check_hyperparameters,
    kernel_fields,
    stored,
)
from steadygrad.optim._norms import (
    NonFiniteGradientError,
    NonFiniteGradientWarning,
    check_norm_type,
    clip_coefficient,
    segment_norms,
)
from steadygrad.optim._state import StateDictMixin


class FusedStepOptions(TypedDict, total=False):
    """The fused-step keyword options every optimizer takes and passes on to `Optimizer`."""

    max_grad_norm: float | None
    norm_type: float
    max_grad_value: float | None
    skip_nonfinite: bool
    max_consecutive_skips: int | None


class Optimizer(ParamGroupsMixin, StateDictMixin, Generic[HyperT]):
    """Base class. Subclasses spell out PyTorch's public signature (each mirrors its
    torch.optim class, so the parallel between their __init__s is deliberate), pass `defaults`
    and the fused-step options (`**options: Unpack[FusedStepOptions]`) on, name their
    hyperparameters in `_hyper_keys` (PyTorch's checking order; `_hyper.check_hyperparameters`
    validates them at construction, in add_param_group, at a step whenever they changed and in
    load_state_dict; `_hyper.kernel_fields` maps them to the fields of the kernel's struct
    `_hyper_type`, whose type is the class's parameter: `Adam(Optimizer[_core.AdamHyper])`)
    and implement `_update`.

    Fused-step options (every optimizer): `max_grad_norm` clips the global `norm_type` norm
    (2.0, inf, or any p > 0 through a slower numpy pass) with PyTorch's coefficient
    min(max_grad_norm / (norm + 1e-6), 1); `max_grad_value` clamps each gradient element (at most
    one of the two). `skip_nonfinite`: a NaN/Inf gradient skips the step, leaving parameters,
    state and step counts untouched, warns `NonFiniteGradientWarning` naming the parameter and
    counts `skipped_steps`; the skip that makes more than `max_consecutive_skips` in a row
    raises `NonFiniteGradientError` (None: never).

    PyTorch's `foreach`/`fused` arguments are accepted and ignored: every step is fused.
    State buffers are flat arrays of the storage's size, indexed like `storage.data`.

    A step validates every group before it touches any: a bad value set later (e.g.
    `param_groups[1]["lr"] = float("nan")`) raises ValueError and changes nothing. The
    optimizer follows its parameters when a container built later moves them into its own
    flat buffer (state carried along, values unchanged).
    """

    _buffer_names: tuple[str, ...] = ()
    _hyper_keys: tuple[str, ...] = ()
    _hyper_type: type[HyperT]  # the kernel's bound struct, e.g. _core.AdamHyper
    # The struct has a `step` field (the step being taken), which a step sets to phase + 1
    # before each `_update`: the phase is then the default, the parameters' step count.
    _hyper_has_step = False

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        max_grad_norm: float | None = None,
        norm_type: float = 2.0,
        max_grad_value: float | None = None,
        skip_nonfinite: bool = True,
        max_consecutive_skips: int | None = 10,
    ) -> None:
        defaults = {k: stored(k, v) for k, v in defaults.items()}
        check_hyperparameters(defaults, self._hyper_keys)
        self._hyper_values = operator.itemgetter(*self._hyper_keys)
        self._hypers: dict[int, GroupHyper[HyperT]] = {}  # by group index, made by _check_groups
        self._max_grad_norm: float | None = None
        self._max_grad_value: float | None = None
        self.max_grad_norm = max_grad_norm
        self.max_grad_value = max_grad_value
        if max_consecutive_skips is not None and (
            not isinstance(max_consecutive_skips, int) or max_consecutive_skips < 0
        ):
            raise ValueError(
                f"max_consecutive_skips must be an int >= 0 or None, got {max_consecutive_skips!r}"
            )
        self.defaults = dict(defaults)
        self.norm_type = norm_type
        self.skip_nonfinite = bool(skip_nonfinite)
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.last_grad_norm: float | None = None
        self._offered: tuple[float, np.ndarray, list[Parameter]] | None = None
        # which offered partial is each parameter's: for the offering tape's parameter list
        # (its identity and length, and this optimizer's), None when one is missing there
        self._offer_key: tuple[int, ...] = ()
        self._offer_index: np.ndarray | None = None
        self._last_norms: np.ndarray | None = None
        self._last_active: list[int] | None = None

        self.param_groups: list[dict[str, Any]] = []
        self._params: list[Parameter] = []
        self._names: list[str | None] = []
        self._storage: FlatStorage | None = None
        self._bufs: dict[str, np.ndarray] = {}
        self._step = np.zeros(0, dtype=np.int64)
        self._all_off = np.zeros(0, dtype=np.int64)  # offsets the state buffers are laid out by
        if isinstance(params, Parameter):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters or "
                f"dicts, but got {type(params).__name__}"
            )
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Parameters or "
                f"dicts, but got {type(params).__name__}") from None
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # -- fused-step options (checked when set: a step never meets a bad one) -------------
    max_grad_norm = ClipOption(exclusive_of="max_grad_value")
    max_grad_value = ClipOption(exclusive_of="max_grad_norm")

    @property
    def norm_type(self) -> float:
        return self._norm_type

    @norm_type.setter
    def norm_type(self, value: float) -> None:
        self._norm_type = check_norm_type(value)

    # -- gradients ---------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Mark every gradient stale (grad reads None); set_to_none=False writes zeros instead."""
        self._offered = None
        for p in self._params:
            if set_to_none:
                p.zero_grad()
            else:
                p.grad_buffer.fill(0.0)
                p.mark_grad_fresh()

    def param_label(self, i: int) -> str:
        """How warnings name parameter i: its name if known, else group/index/shape."""
        p = self._params[i]
        gi = next(k for k, (lo, hi) in enumerate(self._group_range) if lo <= i < hi)
        name = self._names[i]
        where = f"group {gi}, index {i}, shape {tuple(p.shape)}"
        return f"'{name}' ({where})" if name else f"parameter {i} ({where})"

    @property
    def last_param_norms(self) -> np.ndarray | None:
        """Per-parameter gradient norms (norm_type) from the last step's norm pass, in
        parameter order across groups; NaN for parameters whose gradient was stale."""
        if self._last_norms is None or self._last_active is None:
            return None
        if len(self._last_active) == len(self._params):
            return self._last_norms.copy()
        out = np.full(len(self._params), np.nan)
        out[self._last_active] = self._last_norms
        return out

    # -- the step ----------------------------------------------------------------------
    def step(self, closure: Any = None) -> float | None:
        """One fused step. Returns the pre-clip total gradient norm (None when neither
        clipping by norm nor the non-finite guard asked for the norm pass, or no parameter
        had a fresh gradient). A closure, if given, is called first (its loss is discarded).
        Every group's hyperparameters are checked before the closure runs or anything changes
        (and again after it, should it have changed them)."""
        self._check_groups()
        if closure is not None:
            closure()
            self._check_groups()
        self._follow_storage()
        params = self._params
        if all(p.grad_fresh for p in params):
            active = None
            off, ln = self._all_off, self._all_len
        else:
            active = [i for i, p in enumerate(params) if p.grad_fresh]
            if not active:
                self.last_grad_norm = None
                return None
            off, ln = self._all_off[active], self._all_len[active]
        grad = self.storage.grad
        total: float | None = None
        if self.skip_nonfinite or self.max_grad_norm is not None:
            out = self._norm_out if active is None else None
            if active is None and self._take_offered(self._norm_out):
                per = self._norm_out  # the combine of grad_norms over the offered partials
                total = _core.combine_norm_partials(per, self.norm_type)
            else:
                total, per = segment_norms(grad, off, ln, self.norm_type, out)
            self._last_norms = per
            self._last_active = self._all_idx if active is None else active
            self.last_grad_norm = total
            if self.skip_nonfinite and not math.isfinite(total):
                self._skip(self._last_active, per)
                return total
        else:
            self.last_grad_norm = self._last_norms = self._last_active = None
        # with max_grad_norm set the norm pass above ran, so total is a float
        scale = (clip_coefficient(self.max_grad_norm, total)
                 if self.max_grad_norm is not None and total is not None else 1.0)
        for gi, (lo, hi) in enumerate(self._group_range):
            if active is None:
                self._step_group(gi, None, scale)
            else:
                mine = [i for i in active if lo <= i < hi]
                if mine:
                    self._step_group(gi, mine, scale)
        self.consecutive_skips = 0
        running_stats.finish_step(self._param_ids(), skipped=False)
        return total

    def _offer_norms(self, norm_type: float, partials: np.ndarray,
                     params: list[Parameter]) -> None:
        """For the next step only (zero_grad withdraws it): partials[i] is the norm pass's
        partial (`_core` grad_norm_partial: the sum of squares, or max|g| for inf) of
        params[i]'s gradient as it is now, computed by the compiled step's backward as it
        wrote it. A step with every gradient fresh, the same norm_type and every parameter
        among `params` uses them instead of reading the gradients again: bitwise the same
        norms. The caller promises nothing changes the gradients before that step."""
        self._offered = (norm_type, partials, params)

    def _take_offered(self, out: np.ndarray) -> bool:
        """Put the offered partials into `out` in this optimizer's parameter order; False
        (out untouched) when none was offered, for another norm_type, or a parameter is not
        among them. Withdraws the offer."""
        offered, self._offered = self._offered, None
        if offered is None or offered[0] != self.norm_type:
            return False
        _, partials, params = offered
        key = (id(params), len(params), id(self._params), len(self._params))
        if self._offer_key != key:
            slot = {id(p): i for i, p in enumerate(params)}
            index = [slot.get(id(p), -1) for p in self._params]
            self._offer_key = key
            self._offer_index = None if -1 in index else np.array(index, np.int64)
        if self._offer_index is None:
            return False
        np.take(partials, self._offer_index, out=out)
        return True

    def _check_groups(self) -> None:
        """Validate every group and bring its kernel struct up to date, before anything
        changes. A group whose values equal those of its last check (max_grad_value too)
        passed it and has its struct: one tuple comparison, so an unchanged step costs no
        check. (An equal value of another type, 1 for True, runs as the value it equals.)"""
        clip = self._max_grad_value
        for k, g in enumerate(self.param_groups):
            h = self._hypers.get(k)
            if h is not None and h.holds(g, self._hyper_values, clip):
                continue
            try:
                check_hyperparameters(g, self._hyper_keys)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}.step: param_groups[{k}]: {e}; nothing "
                                 "was changed (parameters, gradients, state)") from None
            fields = self._hyper_fields(g)
            if h is None or h.group is not g:
                h = self._hypers[k] = GroupHyper(g, self._hyper_type, fields)
            h.refresh(fields, self._hyper_values(g), clip, bool(g.get("maximize", False)))

    def _hyper_fields(self, group: dict[str, Any]) -> dict[str, Any]:
        """The kernel struct's fields (but its `pre` and per-step ones) from a checked group."""
        return kernel_fields(group, self._hyper_keys)

    # A parameter's *phase* is the per-parameter value the update kernel's scalars depend on
    # (Adam: the steps it has taken, for the bias corrections; SGD: whether its momentum
    # buffer has started; RMSprop: none, a single phase). Parameters in one phase share one
    # kernel call.
    def _phases(self, idx: np.ndarray | slice) -> np.ndarray:
        """The phase of each parameter in idx (default: its step count)."""
        return self._step[idx]

    def _step_group(self, gi: int, mine: list[int] | None, scale: float) -> None:
        """Update group gi (mine: the fresh subset, None for all): one kernel call per distinct
        phase, which is one call unless parameters have taken different numbers of steps."""
        group = self.param_groups[gi]
        h = self._hypers[gi]
        hyper: Any = h.hyper
        if scale != h.scale:
            h.pre.grad_scale = h.scale = scale
        lo, hi = self._group_range[gi]
        if mine is None:
            phase = self._group_phase[gi]
            if phase is None:
                phases = self._phases(slice(lo, hi))
                phase = phases[0].item() if (phases == phases[0]).all() else None
            if phase is not None:
                off, ln, _ = self._group_segs[gi]
                if self._hyper_has_step:
                    hyper.step = phase + 1
                self._update(group, hyper, off, ln, phase)
                self._after_update(slice(lo, hi), group)
                self._group_phase[gi] = self._next_phase(group, phase)
                return
            mine = list(range(lo, hi))
        self._group_phase[gi] = None
        phases = self._phases(np.array(mine, dtype=np.int64)).tolist()
        for ph in sorted(set(phases)):
            off, ln, idx = self._segments([i for i, p in zip(mine, phases, strict=True) if p == ph])
            if self._hyper_has_step:
                hyper.step = ph + 1
            self._update(group, hyper, off, ln, ph)
            self._after_update(idx, group)

    def _next_phase(self, group: dict[str, Any], phase: int) -> int:
        """The phase of parameters after an update in `phase` (default: one more step)."""
        return phase + 1

    def _after_update(self, idx: np.ndarray | slice, group: dict[str, Any]) -> None:
        self._step[idx] += 1

    def _update(self, group: dict[str, Any], hyper: HyperT, off: np.ndarray, ln: np.ndarray,
                phase: int) -> None:
        """One kernel call over segments (off, ln) of `group`, whose struct `hyper` is current
        but for what depends on the parameters' `phase`, which this sets (the step: see
        `_hyper_has_step`)."""
        raise NotImplementedError

    def _param_ids(self) -> frozenset[int]:
        """ids of this optimizer's parameters (which layers' running statistics it owns)."""
        ids = self.__dict__.get("_ids")
        if ids is None or ids[0] is not self._params or ids[1] != len(self._params):
            ids = (self._params, len(self._params), frozenset(id(p) for p in self._params))
            self.__dict__["_ids"] = ids
        return ids[2]

    def _skip(self, active: list[int], per: np.ndarray) -> None:
        # "Nothing changed" covers the model too: the running statistics the skipped step's
        # forwards folded in are taken back (nn.running_stats).
        running_stats.finish_step(self._param_ids(), skipped=True)
        self.skipped_steps += 1
        self.consecutive_skips += 1
        bad = [active[j] for j in np.flatnonzero(~np.isfinite(per)).tolist()]
        labels = ", ".join(self.param_label(i) for i in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        limit = self.max_consecutive_skips
        msg = (
            f"{type(self).__name__}.step skipped: non-finite gradient in {labels}{more}; "
            f"{self.consecutive_skips} consecutive skip(s), {self.skipped_steps} in total"
        )
        if limit is not None and self.consecutive_skips > limit:
            raise NonFiniteGradientError(
                msg + f" (more than max_consecutive_skips={limit}); parameters and state are "
                "unchanged"
            )
        warnings.warn(msg, NonFiniteGradientWarning, stacklevel=3)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k not in ("params", "param_names"):
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)
