"""Gradient norms over segments of a flat gradient buffer, and the non-finite guard's types.

The 2-norm and inf-norm go through one read-only C++ pass (`_core.grad_norms`: per-parameter
norms and the total, bitwise identical for any thread count and ISA); any other `norm_type`
falls back to numpy in float64, per parameter, as PyTorch's norm of per-tensor norms.
"""

from __future__ import annotations

import math

import numpy as np

from steadygrad import _core


class NonFiniteGradientWarning(UserWarning):
    """A step was skipped because a gradient held NaN or Inf (parameters and state untouched)."""


class NonFiniteGradientError(RuntimeError):
    """More consecutive steps were skipped for non-finite gradients than the optimizer allows."""


def check_norm_type(norm_type: float) -> float:
    try:
        nt = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"norm_type must be a float, got {type(norm_type).__name__}") from None
    if math.isnan(nt):
        raise ValueError("norm_type must not be NaN")
    return nt


def fused_norm_type(norm_type: float) -> bool:
    return norm_type == 2.0 or norm_type == math.inf


def segment_norms(
    grad: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, norm_type: float,
    out: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """(total norm, per-segment norms as float64) of `grad` over the given segments."""
    if fused_norm_type(norm_type):
        total, per = _core.grad_norms(grad, offsets, lengths, norm_type, out)
        return float(total), per
    per = np.array(
        [_np_norm(grad[o : o + n], norm_type) for o, n in zip(offsets.tolist(), lengths.tolist(), strict=False)],
        dtype=np.float64,
    )
    return _np_norm(per, norm_type), per


def _np_norm(x: np.ndarray, norm_type: float) -> float:
    if x.size == 0:
        return 0.0
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64).ravel(), ord=norm_type))


def clip_coefficient(max_norm: float, total_norm: float) -> float:
    """PyTorch's min(max_norm / (total_norm + 1e-6), 1); NaN stays NaN (as torch.clamp)."""
    coef = max_norm / (total_norm + 1e-6)
    return coef if (coef != coef or coef < 1.0) else 1.0
