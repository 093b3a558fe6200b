"""Gradient clipping over the flat buffer, PyTorch's `torch.nn.utils.clip_grad_norm_` and
`clip_grad_value_` semantics: only fresh gradients count, the coefficient is
min(max_norm / (total_norm + 1e-6), 1), and the pre-clip total norm is returned (a float).

When the gradients share one FlatStorage, the norm is one read-only C++ pass and the scaling one
in-place pass (skipped when the coefficient is exactly 1, which would change no value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from steadygrad import _core
from steadygrad.nn.parameter import Parameter, shared_storage
from steadygrad.optim._norms import (
    _np_norm,
    check_norm_type,
    clip_coefficient,
    fused_norm_type,
    segment_norms,
)


def _fresh(parameters: Parameter | Iterable[Parameter]) -> list[Parameter]:
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    seen: set[int] = set()
    out = []
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"expected Parameters, got {type(p).__name__}")
        if p.grad_fresh and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _segs(params: list[Parameter], sort: bool) -> tuple[np.ndarray, np.ndarray]:
    ps = sorted(params, key=lambda p: p.offset) if sort else params
    return (np.array([p.offset for p in ps], dtype=np.int64),
            np.array([p.size for p in ps], dtype=np.int64))


def _apply_prologue(params: list[Parameter], per_buffer: Callable[[np.ndarray], object],
                    pre: _core.GradPreHyper) -> None:
    """Applies the gradient prologue `pre` to the fresh gradients in place: one fused pass
    over their shared FlatStorage, else `per_buffer` (the same operation in numpy) on each
    gradient."""
    storage = shared_storage(params)
    if storage is not None:
        off, ln = _segs(params, sort=True)
        _core.grad_scale_clamp(storage.grad, off, ln, pre)
    else:
        for p in params:
            per_buffer(p.grad_buffer)


def get_total_norm(parameters: Parameter | Iterable[Parameter], norm_type: float = 2.0) -> float:
    """The `norm_type` norm of all fresh gradients together (0.0 if there are none)."""
    params = _fresh(parameters)
    nt = check_norm_type(norm_type)
    return _total_norm(params, nt) if params else 0.0


def _total_norm(params: list[Parameter], nt: float) -> float:
    """get_total_norm for a non-empty list of distinct fresh parameters and a checked norm_type."""
    storage = shared_storage(params)
    if storage is not None and fused_norm_type(nt):
        off, ln = _segs(params, sort=False)
        return segment_norms(storage.grad, off, ln, nt)[0]
    norms = np.array([_np_norm(p.grad_buffer, nt) for p in params])
    return _np_norm(norms, nt)


def clip_grad_norm_(
    parameters: Parameter | Iterable[Parameter],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> float:
    """Scale fresh gradients in place so their total norm is at most max_norm; returns the
    total norm before clipping (inf/NaN included). `foreach` is accepted for PyTorch
    compatibility and ignored."""
    del foreach
    params = _fresh(parameters)
    max_norm = float(max_norm)
    nt = check_norm_type(norm_type)
    if not params:
        return 0.0
    total = _total_norm(params, nt)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {nt} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite "
            "norm anyway, set `error_if_nonfinite=False`"
        )
    coef = clip_coefficient(max_norm, total)
    if coef == 1.0:
        return total
    _apply_prologue(params, lambda g: np.multiply(g, np.float32(coef), out=g),
                    _core.GradPreHyper(grad_scale=coef))
    return total


def clip_grad_value_(
    parameters: Parameter | Iterable[Parameter], clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every fresh gradient element to [-clip_value, clip_value] in place."""
    del foreach
    params = _fresh(parameters)
    clip_value = float(clip_value)
    if not clip_value >= 0.0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    if not params:
        return
    _apply_prologue(params, lambda g: np.clip(g, -clip_value, clip_value, out=g),
                    _core.GradPreHyper(clip_value=clip_value))
