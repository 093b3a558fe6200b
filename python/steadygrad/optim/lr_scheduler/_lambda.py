"""LambdaLR and MultiplicativeLR with PyTorch's semantics (see _base.py): lr = base_lr *
lr_lambda(epoch), or lr *= lr_lambda(epoch) each epoch after the first, one function for every
group or one per group. As torch, state_dict keeps a callable object's __dict__ (a plain
function or lambda is not saved: the scheduler being loaded into brings its own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from steadygrad.optim.lr_scheduler._base import (
    LRScheduler,
    _check_optimizer,
    _lrs,
    callable_state,
    load_callable_state,
)

LrLambda = Callable[[int], float]


class _LambdaScheduler(LRScheduler):
    """Holds `lr_lambdas`, one per group, and saves/loads them as torch does."""

    def __init__(self, optimizer: Any, lr_lambda: LrLambda | list[LrLambda] | tuple[LrLambda, ...],
                 last_epoch: int, check_callable: bool) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"Expected {n} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas: list[LrLambda] = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        if check_callable:  # MultiplicativeLR checks; LambdaLR fails at its first call, as torch
            for fn in self.lr_lambdas:
                if not callable(fn):
                    raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        return self._state_with_parts("lr_lambdas", callable_state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_with_parts(state_dict, "lr_lambdas", load_callable_state)


class LambdaLR(_LambdaScheduler):
    """Each group's lr is its initial lr times lr_lambda(epoch)."""

    def __init__(self, optimizer: Any, lr_lambda: LrLambda | list[LrLambda],
                 last_epoch: int = -1) -> None:
        super().__init__(optimizer, lr_lambda, last_epoch, check_callable=False)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch)
                for fn, base in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(_LambdaScheduler):
    """Each group's lr is multiplied by lr_lambda(epoch) at every step after the initial one."""

    def __init__(self, optimizer: Any, lr_lambda: LrLambda | list[LrLambda],
                 last_epoch: int = -1) -> None:
        super().__init__(optimizer, lr_lambda, last_epoch, check_callable=True)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return _lrs(self.optimizer)
        return [group["lr"] * fn(self.last_epoch)
                for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups, strict=True)]
