"""Adagrad over the flat buffer: one fused C++ kernel per parameter group per step.

Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
Optimization" (2011). Semantics, defaults and validation follow
https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html: the step's learning rate is
lr / (1 + (step - 1) * lr_decay), and every accumulator starts at the constructor's
initial_accumulator_value when the optimizer is made (torch's state exists from step 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _core
from steadygrad.optim._hyper import _is_real
from steadygrad.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from steadygrad.optim.optimizer import FusedStepOptions


class Adagrad(Optimizer[_core.AdagradHyper]):
    """Adagrad (lr_decay, weight decay, maximize) with the fused clipping / non-finite guard
    options of `Optimizer`. `step()` returns the pre-clip norm. State per parameter, from
    construction on (as torch's): "step" and "sum", the accumulated squared gradients.

    torch starts every accumulator at the constructor's initial_accumulator_value, whatever a
    parameter group says; a group that asks for another value is refused (ValueError) rather
    than silently ignored."""

    _buffer_names = ("sum",)
    _nonneg_buffers = ("sum",)
    _hyper_keys = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps",
                   "maximize")
    _hyper_type = _core.AdagradHyper
    _hyper_has_step = True

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0,
        weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10,
        foreach: bool | None = None, *, maximize: bool = False, fused: bool | None = None,
        **options: Unpack[FusedStepOptions],
    ) -> None:
        del foreach, fused  # accepted for PyTorch compatibility: always fused
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      maximize=maximize), **options)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        init = self.defaults["initial_accumulator_value"]
        v = param_group.get("initial_accumulator_value", init) if isinstance(
            param_group, dict) else init
        # A value that is no valid accumulator at all gets the standard message (super).
        if _is_real(v) and 0.0 <= v < math.inf and v != init:
            raise ValueError(
                f"param_groups[{len(self.param_groups)}]: initial_accumulator_value "
                f"{param_group['initial_accumulator_value']!r} differs from the optimizer's "
                f"{init!r}: torch's Adagrad starts every accumulator at the constructor's value, "
                "so a per-group value is not supported")
        super().add_param_group(param_group)

    def _on_params_added(self, count: int) -> None:
        # torch fills state["sum"] when the optimizer is made (and for a parameter added later,
        # at its first step): the same value either way, so fill it now.
        self._fill_sum(range(len(self._params) - count, len(self._params)))

    def _fill_sum(self, idx: Iterable[int]) -> None:
        s = self._buf("sum")
        init = self.defaults["initial_accumulator_value"]
        for i in idx:
            p = self._params[i]
            s[p.offset : p.offset + p.size] = init

    def _has_state(self, i: int) -> bool:
        return True  # torch's Adagrad has state (step 0, sum) from construction on

    def _apply_param_state(self, i: int, st: dict[str, Any]) -> None:
        super()._apply_param_state(i, st)
        if "sum" not in st:
            self._fill_sum([i])

    def _update(self, group: dict[str, Any], hyper: _core.AdagradHyper, off: np.ndarray,
                ln: np.ndarray, steps_taken: int) -> None:
        s = self.storage
        _core.adagrad_step(s.data, s.grad, self._buf("sum"), off, ln, hyper)
