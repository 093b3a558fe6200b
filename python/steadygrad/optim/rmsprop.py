"""RMSprop over the flat buffer: one fused C++ kernel per parameter group per step.

Hinton, Lecture 6e of "Neural Networks for Machine Learning" (2012); centered form from Graves,
"Generating Sequences With Recurrent Neural Networks" (2013). Semantics, defaults (eps outside
the sqrt) and validation follow https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from steadygrad import _core
from steadygrad.optim.optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop (centered, momentum, maximize, weight decay) with the fused clipping / guard
    options of `Optimizer`. `step()` returns the pre-clip norm."""

    _buffer_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        max_grad_norm: float | None = None,
        norm_type: float = 2.0,
        max_grad_value: float | None = None,
        skip_nonfinite: bool = True,
        max_consecutive_skips: int | None = 10,
    ) -> None:
        del foreach  # accepted for PyTorch compatibility: always fused
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not momentum >= 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not alpha >= 0.0:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(
            params,
            defaults,
            max_grad_norm=max_grad_norm,
            norm_type=norm_type,
            max_grad_value=max_grad_value,
            skip_nonfinite=skip_nonfinite,
            max_consecutive_skips=max_consecutive_skips,
        )

    def _state_buffers(self, group: dict[str, Any]) -> list[str]:
        names = ["square_avg"]
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return names

    def _keys(self, idx: np.ndarray | slice) -> np.ndarray:
        # RMSprop's update does not depend on the step count: one call per group always.
        return np.zeros(len(self._step[idx]), dtype=np.int64)

    def _next_key(self, group: dict[str, Any], key: int) -> int:
        return 0

    def _update(
        self, group: dict[str, Any], off: np.ndarray, ln: np.ndarray, key: int, scale: float
    ) -> None:
        momentum = float(group["momentum"])
        centered = bool(group["centered"])
        s = self.storage
        _core.rmsprop_step(
            s.data, s.grad, self._buf("square_avg"),
            self._buf("grad_avg") if centered else None,
            self._buf("momentum_buffer") if momentum > 0 else None, off, ln,
            float(group["lr"]), float(group["alpha"]), float(group["eps"]),
            float(group["weight_decay"]), momentum, centered, *self._pre(group, scale),
        )
