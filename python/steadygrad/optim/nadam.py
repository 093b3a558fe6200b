"""NAdam over the flat buffer: one fused C++ kernel per parameter group per step.

Dozat, "Incorporating Nesterov Momentum into Adam" (2016). Semantics, defaults and validation
follow https://pytorch.org/docs/stable/generated/torch.optim.NAdam.html: the momentum cache
mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)), its running product `mu_product` kept per
parameter in float32 as torch keeps it (the C++ driver computes both and returns the new
product), coupled or decoupled weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _core
from steadygrad.optim._state import saved_number
from steadygrad.optim.optimizer import Optimizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from steadygrad.optim.optimizer import FusedStepOptions


class NAdam(Optimizer[_core.NadamHyper]):
    """NAdam (maximize, L2 or decoupled weight decay) with the fused clipping / non-finite
    guard options of `Optimizer`. `step()` returns the pre-clip norm. State per parameter once
    it has stepped (torch's keys): "step", "mu_product", "exp_avg", "exp_avg_sq"."""

    _buffer_names = ("exp_avg", "exp_avg_sq")
    _nonneg_buffers = ("exp_avg_sq",)
    _hyper_keys = ("lr", "eps", "betas", "weight_decay", "momentum_decay",
                   "decoupled_weight_decay", "maximize")
    _hyper_type = _core.NadamHyper
    _hyper_has_step = True

    def __init__(
        self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 0.0, momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False, *, foreach: bool | None = None,
        maximize: bool = False, **options: Unpack[FusedStepOptions],
    ) -> None:
        del foreach  # accepted for PyTorch compatibility: always fused
        self._mu = np.zeros(0, dtype=np.float32)  # mu_product per parameter (torch: float32)
        self._pending: tuple[_core.NadamHyper, np.ndarray, np.ndarray] | None = None
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize), **options)

    def _on_params_added(self, count: int) -> None:
        self._mu = np.concatenate([self._mu, np.ones(count, dtype=np.float32)])

    # The kernel's scalars depend on a parameter's step (its phase) and on its mu_product,
    # which parameters at one step share unless their beta1 histories differ (a stale
    # gradient while a scheduler cycles beta1, a loaded state). `_update` keeps the call's
    # segments and `_after_update`, which knows the parameters, runs it: one kernel call per
    # distinct mu_product, which is one call.
    def _update(self, group: dict[str, Any], hyper: _core.NadamHyper, off: np.ndarray,
                ln: np.ndarray, steps_taken: int) -> None:
        self._pending = (hyper, off, ln)

    def _after_update(self, idx: np.ndarray | slice, group: dict[str, Any]) -> None:
        assert self._pending is not None
        hyper, off, ln = self._pending
        self._pending = None
        mus = self._mu[idx]
        if mus.size == 0:
            return
        if (mus == mus[0]).all():
            self._mu[idx] = self._run(hyper, off, ln, float(mus[0]))
        else:
            where = np.arange(len(self._mu))[idx]
            for u in np.unique(mus).tolist():
                sub = where[mus == u]
                o, n, _ = self._segments(sub.tolist())
                self._mu[sub] = self._run(hyper, o, n, u)
        self._step[idx] += 1

    def _run(self, hyper: _core.NadamHyper, off: np.ndarray, ln: np.ndarray,
             mu_product: float) -> float:
        hyper.mu_product = mu_product
        s = self.storage
        return _core.nadam_step(s.data, s.grad, self._buf("exp_avg"), self._buf("exp_avg_sq"),
                                off, ln, hyper)

    def _param_state(self, i: int, group: dict[str, Any]) -> dict[str, Any] | None:
        st = super()._param_state(i, group)
        if st is not None:
            st["mu_product"] = float(self._mu[i])
        return st

    def _checked_state(self, i: int, where: str, st: Any) -> dict[str, Any]:
        mu = None
        if isinstance(st, Mapping) and "mu_product" in st:
            st = dict(st)
            mu = _checked_mu_product(st.pop("mu_product"), f"{where}['mu_product']")
        out = super()._checked_state(i, where, st)
        if mu is not None:
            out["mu_product"] = mu
        return out

    def _apply_param_state(self, i: int, st: dict[str, Any]) -> None:
        super()._apply_param_state(i, st)
        self._mu[i] = st.get("mu_product", 1.0)


def _checked_mu_product(val: Any, where: str) -> np.float32:
    """A saved mu_product (torch: a float32 scalar tensor): a number in [0, 1]."""
    arr = saved_number(val, where)
    mu = np.float32(arr)
    if not (math.isfinite(mu) and 0.0 <= mu <= 1.0):
        raise ValueError(f"{where} must be in [0, 1] (a product of momentum factors), got {float(arr)}")
    return mu
