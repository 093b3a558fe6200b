"""LR schedulers with PyTorch's semantics (torch.optim.lr_scheduler, 2.13): the same recursive
`get_lr()` forms on `step()` and closed forms on `step(epoch)` / SequentialLR milestones, so lr
trajectories match torch's float for float. They act on any object with `param_groups` (list of
dicts with "lr"), which every steadygrad optimizer has. Unlike torch, no optimizer-step-order
warnings are emitted.

Each scheduler declares the unit its `step()` counts in `interval`: "epoch" (the default, and
what torch's docs assume for StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR)
or "step" (one optimizer step: OneCycleLR, CyclicLR, which are defined per batch). `sg.fit`
steps each scheduler in its declared unit; set `sched.interval = "step"` (or pass
`fit(..., scheduler_interval="step")`) to run an epoch-style schedule, e.g. a LinearLR warmup
over `total_iters` batches, per batch.
"""

from __future__ import annotations

import math
import types
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any


def _lrs(optimizer: Any, key: str = "lr") -> list[Any]:
    return [group[key] for group in optimizer.param_groups]


def callable_state(fn: Any) -> dict[str, Any] | None:
    """How torch saves a schedule's function: a callable object's __dict__ (copied), None for a
    plain function or lambda (the scheduler loaded into brings its own)."""
    return None if isinstance(fn, types.FunctionType) else dict(fn.__dict__)


def load_callable_state(fn: Any, state: dict[str, Any] | None) -> None:
    if state is not None:
        fn.__dict__.update(state)


def _check_optimizer(optimizer: Any) -> None:
    if not hasattr(optimizer, "param_groups"):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")


def _per_group(name: str, optimizer: Any, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. {name} has "
                f"{len(value)} values, param_groups has {len(optimizer.param_groups)}."
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


def _set_momentum(group: dict[str, Any], use_beta1: bool, momentum: float) -> None:
    """Writes a cycled momentum into a group: beta1 of its betas (Adam-like), else momentum."""
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


def _cycle_momentum_setup(optimizer: Any, max_momentum: Any, base_momentum: Any,
                          last_epoch: int, *, base_first: bool) -> tuple[bool, list[Any], list[Any]]:
    """cycle_momentum=True's setup, CyclicLR's and OneCycleLR's: the optimizer must have a
    momentum or a beta1; max_momentum and base_momentum per group, validated in torch's order
    for the scheduler (base_first: CyclicLR's); on a fresh start (last_epoch == -1) each group
    starts at its max_momentum and records both. Returns (use_beta1, max_ms, base_ms)."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(
            "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"
        )
    use_beta1 = "betas" in optimizer.defaults
    if base_first:
        base_ms = _per_group("base_momentum", optimizer, base_momentum)
        max_ms = _per_group("max_momentum", optimizer, max_momentum)
    else:
        max_ms = _per_group("max_momentum", optimizer, max_momentum)
        base_ms = _per_group("base_momentum", optimizer, base_momentum)
    if last_epoch == -1:
        for m_mom, b_mom, group in zip(max_ms, base_ms, optimizer.param_groups, strict=True):
            _set_momentum(group, use_beta1, m_mom)
            group["max_momentum"] = m_mom
            group["base_momentum"] = b_mom
    return use_beta1, max_ms, base_ms


class LRScheduler:
    """Base class: `step()` advances `last_epoch` and writes `get_lr()` into each group.
    `interval` says what one `step()` stands for ("epoch" or "step"); see the module docstring."""

    interval: str = "epoch"
    _is_initial: bool = False

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        "scheduler with last_epoch >= 0."
                    )
        self.base_lrs: list[float] = _lrs(optimizer, "initial_lr")
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer (as torch)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes a state_dict() saved."""
        self.__dict__.update(state_dict)

    # A scheduler holding a list of parts (SequentialLR's schedulers, LambdaLR's lr_lambdas)
    # saves them one by one, after every other attribute, and loads them into its own parts.
    def _state_with_parts(self, key: str, save: Callable[[Any], Any]) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", key)}
        state[key] = [save(part) for part in getattr(self, key)]
        return state

    def _load_with_parts(self, state_dict: dict[str, Any], key: str,
                         load: Callable[[Any, Any], None]) -> None:
        state = dict(state_dict)
        saved = state.pop(key)
        self.__dict__.update(state)
        for part, st in zip(getattr(self, key), saved, strict=True):
            load(part, st)

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group as the last step set it."""
        return self._last_lr

    def get_lr(self) -> list[float]:
        """The learning rates of the current step (a subclass computes them; call step)."""
        raise NotImplementedError

    def step(self, epoch: int | None = None) -> None:
        """Advance one unit of the schedule (an epoch, or a batch for a per-step scheduler)
        and set each group's lr."""
        self._step_count += 1
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _lrs(self.optimizer)


class StepLR(LRScheduler):
    """Decay each group's lr by gamma every step_size epochs."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if (self.last_epoch == 0) or (self.last_epoch % self.step_size != 0):
            return _lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Decay each group's lr by gamma at each milestone (repeated milestones compound)."""

    def __init__(
        self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return _lrs(self.optimizer)
        return [
            group["lr"] * self.gamma ** self.milestones[self.last_epoch]
            for group in self.optimizer.param_groups
        ]

    def _get_closed_form_lr(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [base * self.gamma ** bisect_right(milestones, self.last_epoch) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Decay each group's lr by gamma every epoch."""

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return _lrs(self.optimizer)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale lr linearly from start_factor to end_factor over total_iters epochs (warmup)."""

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError(
                "Starting multiplicative factor expected to be greater than 0 and less or equal to 1."
            )
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _lrs(self.optimizer)
        d = self.end_factor - self.start_factor
        return [
            group["lr"] * (1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d))
            for group in self.optimizer.param_groups
        ]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            base
            * (
                self.start_factor
                + (self.end_factor - self.start_factor)
                * min(self.total_iters, self.last_epoch)
                / self.total_iters
            )
            for base in self.base_lrs
        ]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base lr to eta_min over T_max epochs (SGDR without restarts),
    in torch's recursive form (which keeps oscillating past T_max)."""

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups = self.optimizer.param_groups
        if self._is_initial:
            return _lrs(self.optimizer)
        if self._step_count == 1 and self.last_epoch > 0:
            return [
                self.eta_min
                + (base - self.eta_min) * (1 + math.cos(self.last_epoch * math.pi / self.T_max)) / 2
                for base in self.base_lrs
            ]
        if (self.last_epoch - 1 - self.T_max) % (2 * self.T_max) == 0:
            return [
                group["lr"] + (base - self.eta_min) * (1 - math.cos(math.pi / self.T_max)) / 2
                for base, group in zip(self.base_lrs, groups, strict=True)
            ]
        return [
            (1 + math.cos(math.pi * self.last_epoch / self.T_max))
            / (1 + math.cos(math.pi * (self.last_epoch - 1) / self.T_max))
            * (group["lr"] - self.eta_min)
            + self.eta_min
            for group in groups
        ]

    def _get_closed_form_lr(self) -> list[float]:
        return [
            self.eta_min
            + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
            for base in self.base_lrs
        ]
