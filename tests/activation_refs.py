"""The activations' float64 references, float32 error bounds (steadygrad's kernels and torch's)
and mathematical limits at non-finite inputs: one table shared by the activation kernel tests
and the network error bounds (roundoff.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import steadygrad as sg

EPS32 = float(np.finfo(np.float32).eps)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def _phi_cdf(x: np.ndarray) -> np.ndarray:
    return _erfc(-x / math.sqrt(2.0)).astype(np.float64) / 2.0


def _gelu_tanh_parts(x: np.ndarray):
    c = math.sqrt(2.0 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x**3))
    return t, c * (1.0 + 3 * 0.044715 * x**2)


def _zero(x, ref=None):
    return np.zeros_like(x)


def _nan_like(v):
    return np.full_like(v, np.nan)


@dataclass(frozen=True)
class Limits:
    """What an activation gives at non-finite inputs, from the mathematics, not from torch's
    kernels (torch's GELU(+inf) is NaN on its AVX-512 kernel and +inf on AVX2).
    f(+-inf) and f'(+-inf) are the limits x -> +-inf; backward there is dy * f'(+-inf). NaN
    propagates (f(NaN) = NaN, f'(NaN) dy = NaN, NaN dy * f'(x) = NaN) except where the
    function is defined by a comparison, which is false for NaN: relu's backward is torch's
    threshold_backward (x <= 0 ? 0 : dy), leaky_relu's is (x > 0 ? dy : slope * dy)."""

    f_neg: float
    f_pos: float
    d_neg: float
    d_pos: float
    dx_at_nan_x: Callable = _nan_like  # dy -> dx where x (or y) is NaN
    dx_at_nan_dy: Callable = _nan_like  # x -> dx where dy is NaN and x finite


@dataclass(frozen=True)
class Act:
    """One activation: its sg forward/backward, float64 references and the torch oracle.
    Backward takes what forward cached: x (saved='x') or the forward output y (saved='y').
    Tolerances are RTOL (relative) plus these absolute terms, justified where defined."""

    fwd: Callable
    bwd: Callable
    saved: str
    ref: Callable  # x64 -> y64
    dref: Callable  # (x64, y_from_kernel64) -> dy/dx
    torch_fn: Callable
    fwd_atol: Callable = _zero  # (x64, ref) -> extra absolute error of the forward
    bwd_atol: Callable = _zero  # (x64, dref) -> extra absolute error of f' (times |dy|)
    torch_atol: Callable = _zero  # x64 -> extra error torch's own float32 kernel makes
    kink: bool = False  # derivative jumps at 0: finite differences skip |x| < h
    limits: Limits = Limits(0.0, 0.0, 0.0, 0.0)


def leaky(slope: float) -> Act:
    """leaky_relu with this slope (ACTS holds a few)."""
    return Act(
        fwd=lambda x, **kw: sg.ops.leaky_relu(x, slope, **kw),
        bwd=lambda dy, s, **kw: sg.ops.leaky_relu_backward(dy, s, slope, **kw),
        saved="x",
        ref=lambda x: np.where(x > 0, x, slope * x),
        dref=lambda x, y: np.where(x > 0, 1.0, slope),
        torch_fn=lambda t: torch.nn.functional.leaky_relu(t, slope),
        kink=True,
        # slope * x for x < 0: -inf for slope > 0, the constant 0 for slope 0 (limit 0)
        limits=Limits(-math.inf if slope > 0 else 0.0, math.inf, slope, 1.0,
                      dx_at_nan_x=lambda dy: slope * dy))


def _gelu(approximate: str) -> Act:
    if approximate == "none":
        def ref(x):
            return x * _phi_cdf(x)

        def dref(x, y):
            return _phi_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

        # Phi(x) for x << 0 is erfc(|x|/sqrt2)/2 ~ exp(-x^2/2): rounding x^2/2 in float32 costs
        # ~x^2/2 ulps. f' = Phi + x phi is a sum of O(1) terms with a zero near x = -0.75.
        fwd_atol = lambda x, r: 2 * EPS32 * x * x * np.abs(r)  # noqa: E731
        bwd_atol = lambda x, r: 4 * EPS32 + 2 * EPS32 * x * x * np.abs(r)  # noqa: E731
    else:
        def ref(x):
            return 0.5 * x * (1.0 + _gelu_tanh_parts(x)[0])

        def dref(x, y):
            t, dinner = _gelu_tanh_parts(x)
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner

        # The formula torch uses: 1 + tanh(.) and 1 - tanh^2 cancel for x << 0 in float32,
        # so errors are ~eps |x| (forward) and ~eps |x|^3 (backward, via d inner/dx ~ x^2).
        fwd_atol = lambda x, r: 4 * EPS32 * np.abs(x)  # noqa: E731
        bwd_atol = lambda x, r: 4 * EPS32 * (1 + np.abs(x) ** 3)  # noqa: E731
    return Act(
        fwd=lambda x, **kw: sg.ops.gelu(x, approximate=approximate, **kw),
        bwd=lambda dy, s, **kw: sg.ops.gelu_backward(dy, s, approximate=approximate, **kw),
        saved="x", ref=ref, dref=dref,
        torch_fn=lambda t: torch.nn.functional.gelu(t, approximate=approximate),
        fwd_atol=fwd_atol, bwd_atol=bwd_atol,
        # x Phi(x) -> 0 (from below) and -> x; f' = Phi + x phi -> 0 and 1 (likewise tanh form)
        limits=Limits(0.0, math.inf, 0.0, 1.0),
        # torch computes 0.5 x (1 + erf(x/sqrt2)): 1 + erf cancels for x << 0 (50% off at -6).
        torch_atol=lambda x: 4 * EPS32 * (1 + np.abs(x)))


def _y_based_torch_atol(x):
    # Backward from y: f'(y) = 1 - y^2 or y(1 - y) near |y| = 1 turns a 1-ulp difference
    # between torch's y and ours into ~2 eps absolute.
    return np.full_like(x, 4 * EPS32)


ACTS = {
    "relu": Act(sg.ops.relu, sg.ops.relu_backward, "x", lambda x: np.maximum(x, 0.0),
                lambda x, y: (x > 0).astype(np.float64), torch.nn.functional.relu, kink=True,
                limits=Limits(0.0, math.inf, 0.0, 1.0, dx_at_nan_x=lambda dy: dy,
                              dx_at_nan_dy=lambda x: np.where(x <= 0, 0.0, np.nan))),
    "leaky_relu_0.01": leaky(0.01),
    "leaky_relu_0.2": leaky(0.2),
    "leaky_relu_0": leaky(0.0),
    "leaky_relu_1.5": leaky(1.5),
    "gelu": _gelu("none"),
    "gelu_tanh": _gelu("tanh"),
    "tanh": Act(sg.ops.tanh, sg.ops.tanh_backward, "y", np.tanh, lambda x, y: 1.0 - y * y,
                torch.tanh, torch_atol=_y_based_torch_atol, limits=Limits(-1.0, 1.0, 0.0, 0.0)),
    "sigmoid": Act(sg.ops.sigmoid, sg.ops.sigmoid_backward, "y",
                   lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                      np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
                   lambda x, y: y * (1.0 - y), torch.sigmoid, torch_atol=_y_based_torch_atol,
                   limits=Limits(0.0, 1.0, 0.0, 0.0)),
}
RTOL = 8 * EPS32  # a few float32 ulps, relative: no absolute floor, so sigmoid(-50) must be right
TINY = 1e-37  # below float32's normal range: vexp flushes subnormal results to 0

