"""CyclicLR with PyTorch's semantics (see _base.py): the lr cycles between base_lr and max_lr
over step_size_up + step_size_down optimizer steps (Smith 2017, "Cyclical Learning Rates for
Training Neural Networks"), cycling momentum or beta1 the opposite way."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from steadygrad.optim.lr_scheduler._base import (
    LRScheduler,
    _check_optimizer,
    _cycle_momentum_setup,
    _per_group,
    _set_momentum,
    callable_state,
    load_callable_state,
)


class CyclicLR(LRScheduler):
    """Cyclical learning rate, defined per optimizer step (`interval = "step"`): `sg.fit` steps
    it after every batch. mode is "triangular", "triangular2" (amplitude halves every cycle) or
    "exp_range" (amplitude scaled by gamma**step), or a custom `scale_fn` with `scale_mode`
    "cycle" or "iterations" (torch.optim.lr_scheduler.CyclicLR)."""

    interval = "step"

    def __init__(
        self,
        optimizer: Any,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.8,
        max_momentum: float | list[float] = 0.9,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups, strict=True):
                group["lr"] = lr
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        if not up > 0 or not down >= 0:  # torch divides by zero here
            raise ValueError(f"CyclicLR: need step_size_up > 0 and step_size_down >= 0, got "
                             f"{step_size_up} and {step_size_down}")
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        self.mode = mode
        self.gamma = gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode
        self._init_scale_mode()
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self.use_beta1, self.max_momentums, self.base_momentums = _cycle_momentum_setup(
                optimizer, max_momentum, base_momentum, last_epoch, base_first=True)
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _init_scale_mode(self) -> None:
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x: float) -> float:
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        # float ** float is Any to the type checker (a negative base gives a complex)
        scale: float = 1 / (2.0 ** (x - 1)) if self.mode == "triangular2" else self.gamma**x
        return scale

    def get_lr(self) -> list[float]:
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)
        at = cycle if self.scale_mode == "cycle" else self.last_epoch
        lrs = [base + (top - base) * scale_factor * self.scale_fn(at)
               for base, top in zip(self.base_lrs, self.max_lrs, strict=True)]
        if self.cycle_momentum:
            for group, b_mom, m_mom in zip(self.optimizer.param_groups, self.base_momentums,
                                           self.max_momentums, strict=True):
                mom = m_mom - (m_mom - b_mom) * scale_factor * self.scale_fn(at)
                _set_momentum(group, self.use_beta1, mom)
        return lrs

    def state_dict(self) -> dict[str, Any]:
        """As torch: a custom scale_fn is kept only as a callable object's __dict__."""
        state = super().state_dict()
        fn = state.pop("_scale_fn_custom")
        state["_scale_fn_custom"] = callable_state(fn) if fn is not None else None
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        fn = state_dict.pop("_scale_fn_custom", None)
        super().load_state_dict(state_dict)
        if self._scale_fn_custom is not None:
            load_callable_state(self._scale_fn_custom, fn)
        self._init_scale_mode()
