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
    kink: bool = False  # derivative jumps at kink_at: finite differences skip |x - kink_at| < 2h
    kink_at: float = 0.0
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


FLT_MIN = float(np.finfo(np.float32).tiny)


def _sig64(x):
    """sigmoid in float64 without overflow or cancellation."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _silu() -> Act:
    # f = x sig(x) and f' = sig (1 + x (1 - sig)): terms of size sig (1 + |x|), each a few ulps;
    # vexp flushes results below FLT_MIN to 0 (sigmoid(-87.5) = 1e-38 -> 0: |x| FLT_MIN off).
    def atol(x, r):
        return 4 * EPS32 * _sig64(x) * (1 + np.abs(x)) + np.abs(x) * FLT_MIN

    return Act(sg.ops.silu, sg.ops.silu_backward, "x", lambda x: x * _sig64(x),
               lambda x, y: _sig64(x) * (1 + x * _sig64(-x)), torch.nn.functional.silu,
               fwd_atol=lambda x, r: np.abs(x) * FLT_MIN, bwd_atol=atol,
               # torch's 1 - sigmoid(x) is off by ~eps/2 absolute, times x in f'
               torch_atol=lambda x: 4 * EPS32 * _sig64(x) * (1 + np.abs(x)),
               # x sig(x) -> 0 and -> x; f' -> 0 and 1
               limits=Limits(0.0, math.inf, 0.0, 1.0))


def elu(alpha: float) -> Act:
    """ELU with this alpha (ACTS holds a few): expm1 keeps relative accuracy near 0."""
    return Act(
        fwd=lambda x, **kw: sg.ops.elu(x, alpha, **kw),
        bwd=lambda dy, s, **kw: sg.ops.elu_backward(dy, s, alpha, **kw),
        saved="x",
        ref=lambda x: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        dref=lambda x, y: np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))),
        torch_fn=lambda t: torch.nn.functional.elu(t, alpha),
        kink=True,  # f' jumps at 0 (alpha != 1), f'' does (alpha = 1)
        # alpha expm1(x) -> -alpha; f' = alpha e^x -> 0; NaN fails x > 0: alpha e^NaN = NaN
        limits=Limits(-alpha, math.inf, 0.0, 1.0))


def softplus(beta: float, threshold: float) -> Act:
    """Softplus with these parameters. z = beta x is rounded to float32 by the kernel (and
    torch's): an error of |z| eps/2 in z moves f' (f'/f for z < 0) by |z| eps relative."""
    b32 = np.float32(beta)

    def z_of(x):
        return (b32 * x.astype(np.float32)).astype(np.float64)

    def ref(x):
        z = z_of(x)
        soft = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / float(b32)
        return np.where(z > threshold, x, soft)

    def dref(x, y):
        z = z_of(x)
        return np.where(z > threshold, 1.0, _sig64(z))

    return Act(
        fwd=lambda x, **kw: sg.ops.softplus(x, beta, threshold, **kw),
        bwd=lambda dy, s, **kw: sg.ops.softplus_backward(dy, s, beta, threshold, **kw),
        saved="x", ref=ref, dref=dref,
        torch_fn=lambda t: torch.nn.functional.softplus(t, beta, threshold),
        fwd_atol=lambda x, r: np.abs(r) * np.abs(z_of(x)) * EPS32 + FLT_MIN / abs(beta),
        bwd_atol=lambda x, d: np.abs(d) * np.abs(z_of(x)) * EPS32 + FLT_MIN,
        kink=threshold < 5 * abs(beta), kink_at=threshold / beta,
        # log(1 + e^z)/beta -> 0 and -> x (the linear region); f' = sigmoid(z) -> 0 and 1
        limits=Limits(0.0, math.inf, 0.0, 1.0))


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
    "silu": _silu(),
    "elu": elu(1.0),
    "elu_0.5": elu(0.5),
    "elu_2": elu(2.0),
    "elu_0": elu(0.0),
    "softplus": softplus(1.0, 20.0),
    "softplus_2_3": softplus(2.0, 3.0),
    "softplus_0.3_5": softplus(0.3, 5.0),
}
RTOL = 8 * EPS32  # a few float32 ulps, relative: no absolute floor, so sigmoid(-50) must be right
TINY = 1e-37  # below float32's normal range: vexp flushes subnormal results to 0

