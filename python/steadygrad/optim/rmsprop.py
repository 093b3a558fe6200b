"""RMSprop over the flat buffer: one fused C++ kernel per parameter group per step.

Hinton, Lecture 6e of "Neural Networks for Machine Learning" (2012); centered form from Graves,
"Generating Sequences With Recurrent Neural Networks" (2013). Semantics, defaults (eps outside
the sqrt) and validation follow https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _core
from steadygrad.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from steadygrad.optim.optimizer import FusedStepOptions


class RMSprop(Optimizer[_core.RmspropHyper]):
    """RMSprop (centered, momentum, maximize, weight decay) with the fused clipping / guard
    options of `Optimizer`. `step()` returns the pre-clip norm."""

    _buffer_names = ("square_avg", "momentum_buffer", "grad_avg")
    _nonneg_buffers = ("square_avg",)
    _hyper_keys = ("lr", "eps", "momentum", "weight_decay", "alpha", "centered", "maximize")
    _hyper_type = _core.RmspropHyper

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
        weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False, *,
        maximize: bool = False, foreach: bool | None = None, **options: Unpack[FusedStepOptions],
    ) -> None:
        del foreach  # accepted for PyTorch compatibility: always fused
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      maximize=maximize), **options)

    def _state_buffers(self, group: dict[str, Any]) -> list[str]:
        names = ["square_avg"]
        if group["momentum"] > 0:
            names.append("momentum_buffer")
        if group["centered"]:
            names.append("grad_avg")
        return names

    def _phases(self, idx: np.ndarray | slice) -> np.ndarray:
        # RMSprop's update does not depend on the step count: one phase, one call per group.
        return np.zeros(len(self._step[idx]), dtype=np.int64)

    def _next_phase(self, group: dict[str, Any], phase: int) -> int:
        return 0

    def _update(self, group: dict[str, Any], hyper: _core.RmspropHyper, off: np.ndarray,
                ln: np.ndarray, phase: int) -> None:
        s = self.storage
        _core.rmsprop_step(
            s.data, s.grad, self._buf("square_avg"),
            self._buf("grad_avg") if group["centered"] else None,
            self._buf("momentum_buffer") if group["momentum"] > 0 else None, off, ln, hyper,
        )
