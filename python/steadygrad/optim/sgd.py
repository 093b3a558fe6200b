"""SGD with momentum, dampening, Nesterov and weight decay over the flat buffer: one fused C++
kernel per parameter group per step.

Sutskever et al., "On the importance of initialization and momentum in deep learning" (2013).
Semantics, defaults and validation follow
https://pytorch.org/docs/stable/generated/torch.optim.SGD.html (the momentum buffer starts as a
copy of the first gradient, without dampening).
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


class SGD(Optimizer[_core.SgdHyper]):
    """SGD with the fused clipping / guard options of `Optimizer`. `step()` returns the
    pre-clip norm. State per parameter: "momentum_buffer" once momentum has been used."""

    _buffer_names = ("momentum_buffer",)
    # dampening before nesterov: the nesterov rule reads momentum and dampening.
    _hyper_keys = ("lr", "momentum", "weight_decay", "dampening", "nesterov", "maximize")
    _hyper_type = _core.SgdHyper

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0.0,
        dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
        maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        **options: Unpack[FusedStepOptions],
    ) -> None:
        del foreach, fused  # accepted for PyTorch compatibility: always fused
        self._buf_init = np.zeros(0, dtype=bool)
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize), **options)

    def _on_params_added(self, count: int) -> None:
        self._buf_init = np.concatenate([self._buf_init, np.zeros(count, dtype=bool)])

    def _phases(self, idx: np.ndarray | slice) -> np.ndarray:
        # The first step with momentum initialises the buffer (buf = g): a different kernel.
        return self._buf_init[idx].astype(np.int64)

    def _next_phase(self, group: dict[str, Any], buffer_started: int) -> int:
        return 1 if group["momentum"] != 0 else buffer_started

    def _after_update(self, idx: np.ndarray | slice, group: dict[str, Any]) -> None:
        self._step[idx] += 1
        if group["momentum"] != 0:
            self._buf_init[idx] = True

    def _has_state(self, i: int) -> bool:
        return bool(self._buf_init[i])

    def _state_buffers(self, group: dict[str, Any]) -> list[str]:
        return ["momentum_buffer"] if group["momentum"] != 0 else []

    def _param_state(self, i: int, group: dict[str, Any]) -> dict[str, Any] | None:
        st = super()._param_state(i, group)
        if st is not None:
            del st["step"]  # PyTorch's SGD keeps no step count
        return st

    def _apply_param_state(self, i: int, st: dict[str, Any]) -> None:
        super()._apply_param_state(i, st)
        self._buf_init[i] = "momentum_buffer" in st

    def _update(self, group: dict[str, Any], hyper: _core.SgdHyper, off: np.ndarray,
                ln: np.ndarray, buffer_started: int) -> None:
        hyper.first = not buffer_started
        s = self.storage
        _core.sgd_step(
            s.data, s.grad, self._buf("momentum_buffer") if group["momentum"] != 0 else None,
            off, ln, hyper,
        )
