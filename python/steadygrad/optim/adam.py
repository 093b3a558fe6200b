"""Adam and AdamW over the flat buffer: one fused C++ kernel per parameter group per step.

Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2015); Loshchilov & Hutter,
"Decoupled Weight Decay Regularization" (2019). Semantics, defaults and validation follow
https://pytorch.org/docs/stable/generated/torch.optim.Adam.html and .AdamW.html.
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


class Adam(Optimizer[_core.AdamHyper]):
    """Adam (optionally amsgrad, maximize, L2 or decoupled weight decay) with the fused
    clipping / non-finite guard options of `Optimizer`. `step()` returns the pre-clip norm."""

    _buffer_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _nonneg_buffers = ("exp_avg_sq", "max_exp_avg_sq")
    _hyper_keys = ("lr", "eps", "betas", "weight_decay", "amsgrad", "maximize",
                   "decoupled_weight_decay")
    _hyper_type = _core.AdamHyper
    _hyper_has_step = True

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False, *,
        maximize: bool = False, decoupled_weight_decay: bool = False, foreach: bool | None = None,
        fused: bool | None = None, **options: Unpack[FusedStepOptions],
    ) -> None:
        del foreach, fused  # accepted for PyTorch compatibility: always fused
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay), **options)

    def _state_buffers(self, group: dict[str, Any]) -> list[str]:
        names = ["exp_avg", "exp_avg_sq"]
        return [*names, "max_exp_avg_sq"] if group["amsgrad"] else names

    def _update(self, group: dict[str, Any], hyper: _core.AdamHyper, off: np.ndarray,
                ln: np.ndarray, steps_taken: int) -> None:
        s = self.storage
        _core.adam_step(s.data, s.grad, self._buf("exp_avg"), self._buf("exp_avg_sq"),
                        self._buf("max_exp_avg_sq") if group["amsgrad"] else None, off, ln, hyper)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay), default 1e-2."""

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
        maximize: bool = False, foreach: bool | None = None, fused: bool | None = None,
        **options: Unpack[FusedStepOptions],
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
            decoupled_weight_decay=True, foreach=foreach, fused=fused, **options,
        )
