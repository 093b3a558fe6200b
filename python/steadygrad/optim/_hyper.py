"""Hyperparameters: their validation and the kernel struct each parameter group runs with.

`check_hyperparameters` is the one validator of hyperparameter values (the binding checks none:
see cpp/bindings/optim/optim.cpp), used by the constructor (on the defaults, with PyTorch's
exact messages), by add_param_group, by a step for every group that changed since its last
check (all groups checked before any is touched) and by load_state_dict (the merged groups
checked before anything is written), so no value an optimizer runs with has escaped it.
`GroupHyper` caches a group's bound struct (`_core.AdamHyper`, ...) between steps.

Rules are PyTorch's (`Invalid learning rate: -1.0`, `Invalid beta parameter at index 0: 1.0`,
`Nesterov momentum requires a momentum and zero dampening`), plus what PyTorch lets through
into a silently NaN result: NaN anywhere (PyTorch's SGD accepts `lr=nan`), infinite values,
and values of the wrong type (a string lr, a non-bool flag).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, overload

import numpy as np

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    from steadygrad import _core
else:
    from typing import TypeVar


class KernelHyper(Protocol):
    """What GroupHyper needs of a kernel's bound struct (`_core.AdamHyper`, ...): its `pre`."""

    pre: _core.GradPreHyper


# An optimizer's kernel struct (`Adam` is an `Optimizer[_core.AdamHyper]`). A bare `Optimizer`,
# as a caller annotates one, takes the default: any struct. The default is for type checkers
# only: typing's TypeVar takes one from Python 3.13 on.
if TYPE_CHECKING:
    HyperT = TypeVar("HyperT", bound=KernelHyper, default=KernelHyper)
else:
    HyperT = TypeVar("HyperT", bound=KernelHyper)


class _Spec(NamedTuple):
    """How a hyperparameter is checked, printed and handed to the kernel."""

    rule: str  # see below
    label: str  # as in "Invalid <label>: <value>"
    field: str | None  # the kernel struct's field; None: none (maximize is the struct's `pre`)


#   "nonneg": a real number in [0, inf)   "real": any finite real number   "bool": True/False
#   "betas": a pair, each in [0, 1)       "nesterov": a bool, and True needs momentum > 0 and
#                                         dampening == 0 (check those keys before it)
# The betas pair is the struct's two fields beta1 and beta2.
_SPECS: dict[str, _Spec] = {
    "lr": _Spec("nonneg", "learning rate", "lr"),
    "eps": _Spec("nonneg", "epsilon value", "eps"),
    "momentum": _Spec("nonneg", "momentum value", "momentum"),
    "weight_decay": _Spec("nonneg", "weight_decay value", "weight_decay"),
    "alpha": _Spec("nonneg", "alpha value", "alpha"),
    "dampening": _Spec("real", "dampening value", "dampening"),
    "betas": _Spec("betas", "betas", "beta1, beta2"),
    "nesterov": _Spec("nesterov", "nesterov value", "nesterov"),
    "maximize": _Spec("bool", "maximize value", None),
    "amsgrad": _Spec("bool", "amsgrad value", "amsgrad"),
    "centered": _Spec("bool", "centered value", "centered"),
    "decoupled_weight_decay": _Spec("bool", "decoupled_weight_decay value", "decoupled"),
    "lr_decay": _Spec("nonneg", "lr_decay value", "lr_decay"),
    # torch fills every accumulator with the constructor's value: no per-step field
    "initial_accumulator_value": _Spec("nonneg", "initial_accumulator_value value", None),
    "momentum_decay": _Spec("nonneg", "momentum_decay value", "momentum_decay"),
}


def kernel_fields(group: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The kernel struct's fields from a checked group's `keys` (all but `pre` and what
    depends on the step): each key's value under its field's name, betas split in two."""
    fields: dict[str, Any] = {}
    for key in keys:
        field = _SPECS[key].field
        if key == "betas":
            fields["beta1"], fields["beta2"] = group[key]
        elif field is not None:
            fields[field] = group[key]
    return fields


def stored(key: str, value: Any) -> Any:
    """A group value as an optimizer keeps it: a betas list or tuple as a tuple."""
    return tuple(value) if key == "betas" and isinstance(value, (tuple, list)) else value


def _is_real(v: Any) -> bool:
    return type(v) is float or type(v) is int or (
        isinstance(v, numbers.Real) and not isinstance(v, bool))


def _is_bool(v: Any) -> bool:
    return v is True or v is False or isinstance(v, np.bool_)


def _show(v: Any) -> str:
    """A real number as PyTorch prints it (`nan`, `-1.0`); anything else with its type."""
    return str(v) if _is_real(v) else f"{v!r} (expected a real number, got {type(v).__name__})"


def check_hyperparameters(
    group: Mapping[str, Any], keys: tuple[str, ...], where: str = "", after: str = ""
) -> None:
    """Raise ValueError `<where>Invalid <label>: <value><after>` for the first of `keys` (in
    PyTorch's checking order) whose value in `group` is not valid."""
    for key in keys:
        rule, label, _ = _SPECS[key]
        if key not in group:
            raise ValueError(f"{where}missing hyperparameter '{key}'{after}")
        v = group[key]
        if rule == "nonneg" or rule == "real":
            if not _is_real(v) or not (0.0 <= v < math.inf if rule == "nonneg" else math.isfinite(v)):
                raise ValueError(f"{where}Invalid {label}: {_show(v)}{after}")
        elif rule == "betas":
            if not isinstance(v, (tuple, list)) or len(v) != 2:
                raise ValueError(f"{where}Invalid betas: {v!r} (expected a pair of floats){after}")
            for i in (0, 1):
                if not _is_real(v[i]) or not 0.0 <= v[i] < 1.0:
                    raise ValueError(f"{where}Invalid beta parameter at index {i}: {_show(v[i])}{after}")
        else:
            if not _is_bool(v):
                raise ValueError(f"{where}Invalid {label}: {v!r} (expected a bool){after}")
            if rule == "nesterov" and v and (group["momentum"] <= 0 or group["dampening"] != 0):
                raise ValueError(
                    f"{where}Nesterov momentum requires a momentum and zero dampening{after}")


def check_clip_value(name: str, value: Any) -> float | None:
    """max_grad_norm / max_grad_value: None or a real number >= 0 (inf: no clipping)."""
    if value is None:
        return None
    if not _is_real(value) or not value >= 0.0:
        raise ValueError(f"Invalid {name} value: {_show(value)}")
    return float(value)


class ClipOption:
    """An optimizer's `max_grad_norm` or `max_grad_value` (the attribute this is assigned to):
    checked when set (check_clip_value), and at most one of the two set. The value lives in
    the instance's `_<name>`."""

    def __init__(self, exclusive_of: str) -> None:
        self.other = "_" + exclusive_of
        self.name = self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.attr = name, "_" + name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> ClipOption: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> float | None: ...
    def __get__(self, obj: object, objtype: type | None = None) -> ClipOption | float | None:
        if obj is None:
            return self
        value: float | None = obj.__dict__[self.attr]
        return value

    def __set__(self, obj: object, value: float | None) -> None:
        v = check_clip_value(self.name, value)
        if v is not None and obj.__dict__[self.other] is not None:
            raise ValueError("Only one of max_grad_norm and max_grad_value can be set")
        obj.__dict__[self.attr] = v


class GroupHyper(Generic[HyperT]):
    """One parameter group's kernel struct (`_core.AdamHyper`, ...), made once and refreshed
    by Optimizer._check_groups when the group changed, and what it was made from: the group's
    values at its last check, the struct's fields, max_grad_value, maximize and grad_scale."""

    __slots__ = ("clip", "fields", "group", "hyper", "maximize", "pre", "scale", "values")

    def __init__(self, group: dict[str, Any], hyper_type: type[HyperT],
                 fields: dict[str, Any]) -> None:
        self.group, self.fields = group, fields
        self.values: Any = None
        self.hyper = hyper_type(**fields)
        self.pre = self.hyper.pre  # a view of the struct's member: assigning it writes through
        self.clip, self.maximize, self.scale = self.pre.clip_value, False, 1.0

    def holds(self, group: dict[str, Any], values_of: Any, clip: float | None) -> bool:
        """Whether `group` is the dict last checked and still has its values. A missing key or
        a value that cannot be compared is a change (the check then says what is wrong)."""
        try:
            return self.group is group and self.clip == clip and self.values == values_of(group)
        except (KeyError, TypeError, ValueError):
            return False

    def refresh(self, fields: dict[str, Any], values: tuple[Any, ...], clip: float | None,
                maximize: bool) -> None:
        """Assign what changed (hyperparameters validated by the caller)."""
        for name, v in fields.items():
            if self.fields[name] != v:
                setattr(self.hyper, name, v)
        if clip != self.clip:
            self.pre.clip_value = self.clip = clip
        if maximize != self.maximize:
            self.pre.maximize = self.maximize = maximize
        self.fields = fields
        # A list compares equal to itself after an in-place change: keep a tuple, so that a
        # list-valued group (betas) is always re-checked.
        if any(isinstance(v, list) for v in values):
            values = tuple(tuple(v) if isinstance(v, list) else v for v in values)
        self.values = values
