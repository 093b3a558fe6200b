"""The depthwise convolution kernels (_core.depthwise_conv2d_forward / _backward), channels-last:
forward, dL/dx, dL/dW and dL/db against a float64 numpy reference (itself checked against
torch.nn.functional.conv2d(groups=C) on NCHW), with per-element error bounds from the sums of
|terms|; the fused ReLU, write vs accumulate, skipped outputs, 1-d, bitwise equality at 1 vs 2
threads, every ISA path, and the argument gate (nothing written on a refused call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads

from steadygrad import _core

TIME_BUDGET_S = 20

U = 2.0**-24  # float32 unit roundoff


@dataclass(frozen=True)
class Geo:
    n: int
    h: int
    w: int
    c: int
    m: int  # channel multiplier: c_out = m * c
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    ph0: int = 0
    ph1: int = 0
    pw0: int = 0
    pw1: int = 0

    def geom(self) -> _core.ConvGeometry:
        return _core.ConvGeometry(n=self.n, h=self.h, w=self.w, c_in=self.c, c_out=self.c * self.m,
                                  kh=self.kh, kw=self.kw, sh=self.sh, sw=self.sw, dh=self.dh,
                                  dw=self.dw, ph0=self.ph0, ph1=self.ph1, pw0=self.pw0,
                                  pw1=self.pw1, groups=self.c)

    @property
    def id(self) -> str:
        return (f"n{self.n}_{self.h}x{self.w}x{self.c}m{self.m}_k{self.kh}x{self.kw}_s{self.sh}"
                f"{self.sw}_d{self.dh}{self.dw}_p{self.ph0}{self.ph1}{self.pw0}{self.pw1}")


def _valid(g: Geo) -> bool:
    span_h = g.h + g.ph0 + g.ph1 - g.dh * (g.kh - 1) - 1
    span_w = g.w + g.pw0 + g.pw1 - g.dw * (g.kw - 1) - 1
    return span_h >= 0 and span_w >= 0


def _random_geometries(count: int, seed: int) -> list[Geo]:
    """Odd shapes over the issue's ranges: kernel 1/3/5/7 and non-square, stride 1-3, padding
    0/1/2 and asymmetric, dilation 1/2, multiplier 1/2, channels 1/3/8/17/33, H and W 1..33."""
    rng = np.random.default_rng(seed)
    out: list[Geo] = []
    while len(out) < count:
        kh, kw = (int(k) for k in rng.choice([1, 3, 5, 7, 2], 2))
        pad = [int(p) for p in rng.choice([0, 1, 2], 4)]
        g = Geo(n=int(rng.choice([1, 2])), h=int(rng.integers(1, 34)), w=int(rng.integers(1, 34)),
                c=int(rng.choice([1, 3, 8, 17, 33])), m=int(rng.choice([1, 2])), kh=kh, kw=kw,
                sh=int(rng.integers(1, 4)), sw=int(rng.integers(1, 4)),
                dh=int(rng.choice([1, 2])), dw=int(rng.choice([1, 2])),
                ph0=pad[0], ph1=pad[1], pw0=pad[2], pw1=pad[3])
        if _valid(g):
            out.append(g)
    return out


GEOMETRIES = [
    Geo(1, 5, 5, 3, 1, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1),   # the common 3x3 'same'
    Geo(1, 1, 1, 1, 1, 1, 1),                                # one pixel, one channel
    Geo(1, 1, 1, 17, 2, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1),   # window all padding but the centre
    Geo(2, 33, 33, 8, 1, 7, 7, ph0=3, ph1=3, pw0=3, pw1=3),  # big window, interior blocks
    Geo(1, 9, 12, 33, 1, 3, 5, sh=2, sw=3, ph0=2, ph1=0, pw0=0, pw1=2),  # asymmetric padding
    Geo(1, 11, 10, 17, 2, 5, 3, dh=2, dw=2, ph0=2, pw0=1, pw1=2),        # dilation, multiplier
    Geo(1, 4, 4, 3, 2, 5, 5, ph0=2, ph1=2, pw0=2, pw1=2),    # window larger than the input
    Geo(1, 6, 33, 1, 1, 1, 3, sh=3, sw=2),                   # c = 1, 1x3
    Geo(1, 8, 7, 8, 1, 5, 1, sh=2, ph0=2, ph1=1),            # 5x1
    Geo(2, 7, 7, 16, 3, 3, 3, sh=2, sw=2, ph0=1, pw0=1),     # multiplier 3, vector-exact
    *_random_geometries(22, seed=13),
]
ONE_D = [  # (N, L, C) as (N, 1, L, C)
    Geo(2, 1, 20, 8, 1, 1, 5, pw0=2, pw1=2),
    Geo(1, 1, 33, 17, 2, 1, 3, sw=2, dw=2, pw0=1, pw1=0),
    Geo(1, 1, 7, 3, 1, 1, 7, pw0=3, pw1=3),
    Geo(3, 1, 1, 33, 1, 1, 1),
]


# --- float64 reference (numpy), with the sums of |terms| for the error bounds -------------

def _windows(xp: np.ndarray, g: Geo, oh: int, ow: int, r: int, s: int) -> tuple[slice, slice]:
    """The rows and columns of the padded input that tap (r, s) reads for every output."""
    return (slice(r * g.dh, r * g.dh + g.sh * (oh - 1) + 1, g.sh),
            slice(s * g.dw, s * g.dw + g.sw * (ow - 1) + 1, g.sw))


def ref_forward(x: np.ndarray, wt: np.ndarray, b: np.ndarray | None, g: Geo, oh: int,
                ow: int) -> np.ndarray:
    """sum over taps of x(window) * w[co] (+ b): (n, oh, ow, c_out), channel ci * m + j."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (g.ph0, g.ph1), (g.pw0, g.pw1), (0, 0)))
    y = np.zeros((g.n, oh, ow, g.c * g.m)) + (0.0 if b is None else b.astype(np.float64))
    for r in range(g.kh):
        for s in range(g.kw):
            rs, cs = _windows(xp, g, oh, ow, r, s)
            y += np.repeat(xp[:, rs, cs, :], g.m, axis=3) * wt[:, 0, r, s].astype(np.float64)
    return y


def ref_input_grad(dy: np.ndarray, wt: np.ndarray, g: Geo) -> np.ndarray:
    """The transposed convolution: (n, h, w, c_in)."""
    oh, ow = dy.shape[1:3]
    dxp = np.zeros((g.n, g.h + g.ph0 + g.ph1, g.w + g.pw0 + g.pw1, g.c))
    for r in range(g.kh):
        for s in range(g.kw):
            rs, cs = _windows(dxp, g, oh, ow, r, s)
            t = dy.astype(np.float64) * wt[:, 0, r, s].astype(np.float64)
            dxp[:, rs, cs, :] += t.reshape(g.n, oh, ow, g.c, g.m).sum(axis=4)
    return dxp[:, g.ph0:g.ph0 + g.h, g.pw0:g.pw0 + g.w, :]


def ref_weight_grad(dy: np.ndarray, x: np.ndarray, g: Geo) -> np.ndarray:
    """(c_out, 1, kh, kw): sum over every output pixel of dy * x(window)."""
    oh, ow = dy.shape[1:3]
    xp = np.pad(x.astype(np.float64), ((0, 0), (g.ph0, g.ph1), (g.pw0, g.pw1), (0, 0)))
    dw = np.zeros((g.c * g.m, 1, g.kh, g.kw))
    for r in range(g.kh):
        for s in range(g.kw):
            rs, cs = _windows(xp, g, oh, ow, r, s)
            dw[:, 0, r, s] = (np.repeat(xp[:, rs, cs, :], g.m, axis=3) * dy).sum(axis=(0, 1, 2))
    return dw


def bound(abs_sum: np.ndarray, terms: int) -> np.ndarray:
    """The worst-case error of a float32 sum of `terms` products (each rounded, FMA or not) in
    any order: (terms + 2) * u * sum |terms| (Higham, Accuracy and Stability, eq. 3.5)."""
    return (terms + 2) * U * abs_sum


@dataclass
class Case:
    g: Geo
    x: np.ndarray
    wt: np.ndarray
    b: np.ndarray
    dy: np.ndarray
    oh: int
    ow: int


def make_case(g: Geo, seed: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    geom = g.geom()
    co = g.c * g.m
    return Case(g, rng.standard_normal((g.n, g.h, g.w, g.c)).astype(np.float32),
                rng.standard_normal((co, 1, g.kh, g.kw)).astype(np.float32),
                rng.standard_normal(co).astype(np.float32),
                rng.standard_normal((g.n, geom.oh, geom.ow, co)).astype(np.float32),
                geom.oh, geom.ow)


def run_all(c: Case, **kw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    geom = c.g.geom()
    y = _core.depthwise_conv2d_forward(c.x, c.wt, c.b, geom, **kw)
    gw = np.full_like(c.wt, np.nan)
    gb = np.full_like(c.b, np.nan)
    dx = _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, gw, gb)
    return y, dx, gw, gb


def check_against_reference(c: Case, y: np.ndarray, dx: np.ndarray, gw: np.ndarray,
                            gb: np.ndarray) -> None:
    g = c.g
    what = g.id
    taps = g.kh * g.kw
    ax, awt, ady = np.abs(c.x), np.abs(c.wt), np.abs(c.dy)
    assert_close(y, ref_forward(c.x, c.wt, c.b, g, c.oh, c.ow),
                 bound(ref_forward(ax, awt, np.abs(c.b), g, c.oh, c.ow), taps + 1),
                 what=f"forward {what}")
    assert_close(dx, ref_input_grad(c.dy, c.wt, g), bound(ref_input_grad(ady, awt, g), taps * g.m),
                 what=f"dx {what}")
    pixels = g.n * c.oh * c.ow
    assert_close(gw, ref_weight_grad(c.dy, c.x, g), bound(ref_weight_grad(ady, ax, g), pixels),
                 what=f"dW {what}")
    assert_close(gb, c.dy.astype(np.float64).sum(axis=(0, 1, 2)),
                 bound(ady.astype(np.float64).sum(axis=(0, 1, 2)), pixels), what=f"db {what}")


# --- tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("g", GEOMETRIES + ONE_D, ids=lambda g: g.id)
def test_against_float64_reference(isa: str, g: Geo) -> None:
    c = make_case(g)
    check_against_reference(c, *run_all(c))


@pytest.mark.parametrize("g", GEOMETRIES[:12] + ONE_D[:2], ids=lambda g: g.id)
def test_reference_matches_torch(g: Geo) -> None:
    """The numpy reference is torch's conv2d(groups=C) in float64 on NCHW (asymmetric padding
    through F.pad), and torch's autograd gives the same gradients: values and random upstream
    gradient."""
    c = make_case(g, seed=1)
    xt = torch.tensor(c.x.transpose(0, 3, 1, 2), dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(c.wt, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(c.b, dtype=torch.float64, requires_grad=True)
    xp = torch.nn.functional.pad(xt, (g.pw0, g.pw1, g.ph0, g.ph1))
    yt = torch.nn.functional.conv2d(xp, wt, bt, stride=(g.sh, g.sw), dilation=(g.dh, g.dw),
                                    groups=g.c)
    yt.backward(torch.tensor(c.dy.transpose(0, 3, 1, 2), dtype=torch.float64))
    tol = 1e-12 * (1 + g.kh * g.kw * g.n * c.oh * c.ow)
    np.testing.assert_allclose(ref_forward(c.x, c.wt, c.b, g, c.oh, c.ow),
                               yt.detach().numpy().transpose(0, 2, 3, 1), atol=tol)
    assert xt.grad is not None and wt.grad is not None and bt.grad is not None
    np.testing.assert_allclose(ref_input_grad(c.dy, c.wt, g),
                               xt.grad.numpy().transpose(0, 2, 3, 1), atol=tol)
    np.testing.assert_allclose(ref_weight_grad(c.dy, c.x, g), wt.grad.numpy(), atol=tol)
    np.testing.assert_allclose(c.dy.astype(np.float64).sum(axis=(0, 1, 2)), bt.grad.numpy(),
                               atol=tol)


def test_reference_gradients_are_finite_differences() -> None:
    """The float64 reference's dX and dW are the derivatives of sum(dy * forward): central
    differences (the forward is linear in x and in w, so they are exact up to rounding)."""
    g = Geo(1, 5, 6, 3, 2, 3, 2, sh=2, sw=1, dh=1, dw=2, ph0=1, ph1=0, pw0=2, pw1=1)
    c = make_case(g, seed=11)
    x, wt, dy = c.x.astype(np.float64), c.wt.astype(np.float64), c.dy.astype(np.float64)

    def loss(xv: np.ndarray, wv: np.ndarray) -> float:
        return float((dy * ref_forward(xv, wv, None, g, c.oh, c.ow)).sum())

    eps = 1e-3
    dx, dw = ref_input_grad(dy, wt, g), ref_weight_grad(dy, x, g)
    for idx in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        fd = (loss(x + e, wt) - loss(x - e, wt)) / (2 * eps)
        assert abs(fd - dx[idx]) < 1e-9 * (1 + abs(fd)), idx
    for idx in np.ndindex(*wt.shape):
        e = np.zeros_like(wt)
        e[idx] = eps
        fd = (loss(x, wt + e) - loss(x, wt - e)) / (2 * eps)
        assert abs(fd - dw[idx]) < 1e-9 * (1 + abs(fd)), idx


def test_float32_torch_parity(isa: str) -> None:
    """Against torch's own float32 depthwise conv and autograd: each side within its error bound
    of the exact result, so within twice of each other."""
    g = Geo(2, 13, 11, 17, 2, 3, 5, sh=2, sw=1, dh=1, dw=2, ph0=1, ph1=1, pw0=4, pw1=4)
    c = make_case(g, seed=2)
    y, dx, gw, gb = run_all(c)
    xt = torch.tensor(c.x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(c.wt, requires_grad=True)
    bt = torch.tensor(c.b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=(2, 1), padding=(1, 4), dilation=(1, 2),
                                    groups=g.c)
    yt.backward(torch.tensor(c.dy.transpose(0, 3, 1, 2)))
    assert xt.grad is not None and wt.grad is not None and bt.grad is not None
    taps, pixels = g.kh * g.kw, g.n * c.oh * c.ow
    ax, awt, ady = np.abs(c.x), np.abs(c.wt), np.abs(c.dy)
    assert_close(y, yt.detach().numpy().transpose(0, 2, 3, 1),
                 2 * bound(ref_forward(ax, awt, np.abs(c.b), g, c.oh, c.ow), taps + 1), what="y")
    assert_close(dx, xt.grad.numpy().transpose(0, 2, 3, 1),
                 2 * bound(ref_input_grad(ady, awt, g), taps * g.m), what="dx")
    assert_close(gw, wt.grad.numpy(), 2 * bound(ref_weight_grad(ady, ax, g), pixels), what="dW")
    assert_close(gb, bt.grad.numpy(), 2 * bound(ady.astype(np.float64).sum((0, 1, 2)), pixels),
                 what="db")


# A case over the parallel threshold with several dW chunks and chunk blocks (n * oh * ow well
# over 8 * 1024 output pixels), and its widened (m = 2) variant.
BIG = [Geo(4, 48, 48, 8, 1, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1),
       Geo(3, 40, 37, 5, 2, 3, 5, sh=1, sw=2, ph0=2, pw0=2, pw1=1)]


@pytest.mark.parametrize("g", BIG, ids=lambda g: g.id)
def test_bitwise_one_vs_two_threads(isa: str, g: Geo) -> None:
    c = make_case(g, seed=3)
    with num_threads(1):
        one = run_all(c, activation="relu")
    with num_threads(2):
        two = run_all(c, activation="relu")
    for name, a, b in zip(("y", "dx", "dW", "db"), one, two, strict=True):
        assert a.tobytes() == b.tobytes(), f"{name} differs between 1 and 2 threads"


@pytest.mark.parametrize("g", BIG, ids=lambda g: g.id)
def test_big_against_reference(isa: str, g: Geo) -> None:
    c = make_case(g, seed=4)
    with num_threads(2):
        check_against_reference(c, *run_all(c))


def test_relu_fused(isa: str) -> None:
    """activation='relu' stores max(0, y) of the very same sums (bitwise), and NaN stays NaN
    (torch's relu)."""
    g = Geo(1, 9, 9, 17, 2, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1)
    c = make_case(g, seed=5)
    c.x[0, 4, 4, 3] = np.nan  # reaches output channels 6, 7 at the 3x3 pixels around (4, 4)
    geom = g.geom()
    plain = _core.depthwise_conv2d_forward(c.x, c.wt, c.b, geom)
    out = np.full_like(plain, 7.0)
    fused = _core.depthwise_conv2d_forward(c.x, c.wt, c.b, geom, activation="relu", out=out)
    assert fused is out
    assert np.isnan(fused[0, 3:6, 3:6, 6:8]).all() and np.isnan(fused).sum() == 18
    want = np.where(np.isnan(plain), plain, np.maximum(plain, 0.0))
    assert want.tobytes() == fused.tobytes()
    assert (fused[~np.isnan(fused)] >= 0).all() and (plain < 0).any()


def test_no_bias(isa: str) -> None:
    g = Geo(1, 6, 7, 8, 1, 3, 3, ph0=1, pw1=1)
    c = make_case(g, seed=6)
    y = _core.depthwise_conv2d_forward(c.x, c.wt, None, g.geom())
    assert_close(y, ref_forward(c.x, c.wt, None, g, c.oh, c.ow),
                 bound(ref_forward(np.abs(c.x), np.abs(c.wt), None, g, c.oh, c.ow), 10))


def test_accumulate(isa: str) -> None:
    """accumulate adds into grad_weight, accumulate_bias into grad_bias (None: as accumulate);
    written otherwise, without reading (NaN in the old gradient does not leak)."""
    g = Geo(2, 8, 9, 17, 2, 3, 3, sh=2, ph0=1, ph1=1, pw0=1, pw1=1)
    c = make_case(g, seed=7)
    geom = g.geom()
    rng = np.random.default_rng(8)
    gw0 = rng.standard_normal(c.wt.shape).astype(np.float32)
    gb0 = rng.standard_normal(c.b.shape).astype(np.float32)
    pixels = g.n * c.oh * c.ow
    dw_ref = ref_weight_grad(c.dy, c.x, g)
    db_ref = c.dy.astype(np.float64).sum(axis=(0, 1, 2))
    dw_tol = bound(ref_weight_grad(np.abs(c.dy), np.abs(c.x), g), pixels)
    db_tol = bound(np.abs(c.dy).astype(np.float64).sum(axis=(0, 1, 2)), pixels)
    for acc, acc_b in ((True, None), (True, False), (False, True), (True, True)):
        gw, gb = gw0.copy(), gb0.copy()
        eff_b = acc if acc_b is None else acc_b
        if not acc:
            gw[...] = np.nan
        if not eff_b:
            gb[...] = np.nan
        dx = _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, gw, gb, accumulate=acc,
                                             accumulate_bias=acc_b)
        assert dx is not None
        want_w = dw_ref + (gw0 if acc else 0.0)
        want_b = db_ref + (gb0 if eff_b else 0.0)
        assert_close(gw, want_w, dw_tol + U * np.abs(want_w), what=f"dW acc={acc}")
        assert_close(gb, want_b, db_tol + U * np.abs(want_b), what=f"db acc_b={acc_b}")


def test_skipped_outputs(isa: str) -> None:
    """grad_weight / grad_bias None: not computed; compute_grad_input=False: dx neither computed
    nor written; what is computed has the same bits as in the full call."""
    g = Geo(1, 10, 10, 17, 2, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1)
    c = make_case(g, seed=9)
    geom = g.geom()
    _, dx, gw, gb = run_all(c)
    dx_only = _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, None, None)
    assert dx_only is not None and dx_only.tobytes() == dx.tobytes()
    gw2 = np.zeros_like(gw)
    keep = np.full_like(dx, 3.0)
    ret = _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, gw2, None,
                                          compute_grad_input=False, grad_input=keep)
    assert ret is None and (keep == 3.0).all()
    assert gw2.tobytes() == gw.tobytes()
    gb2 = np.zeros_like(gb)
    _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, None, gb2, compute_grad_input=False)
    assert gb2.tobytes() == gb.tobytes()
    out = np.zeros_like(dx)
    ret = _core.depthwise_conv2d_backward(c.dy, c.x, c.wt, geom, None, None, grad_input=out)
    assert ret is out and out.tobytes() == dx.tobytes()


def test_empty_batch(isa: str) -> None:
    """n = 0: empty outputs, and the reductions over no pixel write zeros."""
    g = Geo(0, 5, 5, 3, 2, 3, 3)
    geom = g.geom()
    x = np.zeros((0, 5, 5, 3), np.float32)
    wt = np.ones((6, 1, 3, 3), np.float32)
    y = _core.depthwise_conv2d_forward(x, wt, None, geom)
    assert y.shape == (0, 3, 3, 6)
    gw, gb = np.full_like(wt, np.nan), np.full(6, np.nan, np.float32)
    dx = _core.depthwise_conv2d_backward(y, x, wt, geom, gw, gb)
    assert dx is not None and dx.shape == x.shape
    assert (gw == 0).all() and (gb == 0).all()


# --- the argument gate ----------------------------------------------------------------------

G_OK = Geo(1, 4, 5, 3, 2, 3, 3, ph0=1, ph1=1, pw0=1, pw1=1)  # out (1, 4, 5, 6)
FWD = "depthwise_conv2d_forward"
BWD = "depthwise_conv2d_backward"


def f32(*shape: int) -> np.ndarray:
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 7) / 7 - 0.4


def fwd_args(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(x=f32(1, 4, 5, 3), weight=f32(6, 1, 3, 3), bias=f32(6),
                              geom=G_OK.geom(), out=f32(1, 4, 5, 6))
    kw.update(over)
    return kw


def bwd_args(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(grad_out=f32(1, 4, 5, 6), x=f32(1, 4, 5, 3), weight=f32(6, 1, 3, 3),
                              geom=G_OK.geom(), grad_weight=f32(6, 1, 3, 3), grad_bias=f32(6),
                              grad_input=f32(1, 4, 5, 3))
    kw.update(over)
    return kw


def _aliased(fn: Callable[..., dict[str, Any]], out: str, src: str) -> dict[str, Any]:
    kw = fn()
    kw[out] = kw[src]
    return kw


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


BAD: list[tuple[str, str, Callable[[], dict[str, Any]], type[Exception], str]] = [
    (FWD, "x shape", lambda: fwd_args(x=f32(1, 4, 5, 4)), ValueError,
     f"{FWD}: x must have shape (n=1, h=4, w=5, c_in=3) from geom, got (1, 4, 5, 4)"),
    (FWD, "x rank (NCHW 3-d)", lambda: fwd_args(x=f32(4, 5, 3)), ValueError,
     "x must have shape (n=1, h=4, w=5, c_in=3) from geom, got (4, 5, 3)"),
    (FWD, "x float64", lambda: fwd_args(x=np.zeros((1, 4, 5, 3))), TypeError,
     f"{FWD}: x must have dtype float32, got float64"),
    (FWD, "x strided", lambda: fwd_args(x=f32(1, 4, 5, 6)[..., ::2]), ValueError,
     "x must be C-contiguous"),
    (FWD, "weight shape", lambda: fwd_args(weight=f32(6, 3, 3)), ValueError,
     "weight must have shape (c_out=6, 1=1, kh=3, kw=3) from geom, got (6, 3, 3)"),
    (FWD, "bias shape", lambda: fwd_args(bias=f32(3)), ValueError,
     "bias must have shape (6,), got (3,)"),
    (FWD, "out shape", lambda: fwd_args(out=f32(1, 5, 4, 6)), ValueError,
     "out must have shape (n=1, oh=4, ow=5, c_out=6) from geom, got (1, 5, 4, 6)"),
    (FWD, "out read-only", lambda: fwd_args(out=_readonly(f32(1, 4, 5, 6))), ValueError,
     "out must be writeable"),
    (FWD, "out is bias's memory", lambda: (lambda o: fwd_args(out=o, bias=o.reshape(-1)[:6]))(
        f32(1, 4, 5, 6)), ValueError, "out must not overlap bias"),
    (FWD, "geom groups=1", lambda: fwd_args(geom=_core.ConvGeometry(
        n=1, h=4, w=5, c_in=3, c_out=6, kh=3, kw=3, ph0=1, ph1=1, pw0=1, pw1=1)), ValueError,
     f"{FWD}: geom must be depthwise (groups == c_in, c_out a multiple of c_in), got groups=1, "
     "c_in=3, c_out=6"),
    (FWD, "activation gelu", lambda: fwd_args(activation="gelu"), ValueError,
     "activation must be 'none' or 'relu', got 'gelu'"),
    (BWD, "grad_out shape", lambda: bwd_args(grad_out=f32(1, 4, 5, 3)), ValueError,
     f"{BWD}: grad_out must have shape (n=1, oh=4, ow=5, c_out=6) from geom, got (1, 4, 5, 3)"),
    (BWD, "x shape", lambda: bwd_args(x=f32(2, 4, 5, 3)), ValueError,
     "x must have shape (n=1, h=4, w=5, c_in=3) from geom, got (2, 4, 5, 3)"),
    (BWD, "weight float64", lambda: bwd_args(weight=np.zeros((6, 1, 3, 3))), TypeError,
     "weight must have dtype float32, got float64"),
    (BWD, "grad_weight shape", lambda: bwd_args(grad_weight=f32(6, 1, 3, 2)), ValueError,
     "grad_weight must have shape (c_out=6, 1=1, kh=3, kw=3) from geom, got (6, 1, 3, 2)"),
    (BWD, "grad_weight read-only", lambda: bwd_args(grad_weight=_readonly(f32(6, 1, 3, 3))),
     ValueError, "grad_weight must be writeable"),
    (BWD, "grad_weight is weight", lambda: _aliased(bwd_args, "grad_weight", "weight"),
     ValueError, "grad_weight must not overlap weight"),
    (BWD, "grad_bias shape", lambda: bwd_args(grad_bias=f32(3)), ValueError,
     "grad_bias must have shape (c_out=6) from geom, got (3,)"),
    (BWD, "grad_bias inside grad_weight", lambda: (lambda w: bwd_args(
        grad_weight=w, grad_bias=w.reshape(-1)[3:9]))(f32(6, 1, 3, 3)), ValueError,
     "grad_bias must not overlap grad_weight"),
    (BWD, "grad_input is x", lambda: _aliased(bwd_args, "grad_input", "x"), ValueError,
     "grad_input must not overlap x"),
    (BWD, "grad_input in grad_out", lambda: (lambda d: bwd_args(
        grad_out=d, grad_input=d.reshape(-1)[:60].reshape(1, 4, 5, 3)))(f32(1, 4, 5, 6)),
     ValueError, "grad_input must not overlap grad_out"),
    (BWD, "grad_input shape", lambda: bwd_args(grad_input=f32(1, 4, 5, 6)), ValueError,
     "grad_input must have shape (n=1, h=4, w=5, c_in=3) from geom, got (1, 4, 5, 6)"),
    (BWD, "geom groups=1", lambda: bwd_args(geom=_core.ConvGeometry(
        n=1, h=4, w=5, c_in=3, c_out=6, kh=3, kw=3, ph0=1, ph1=1, pw0=1, pw1=1)),
     ValueError, f"{BWD}: geom must be depthwise"),
]


@pytest.mark.parametrize("fn,bad,make,exc,fragment", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_bad_arguments_leave_outputs_untouched(fn: str, bad: str,
                                               make: Callable[[], dict[str, Any]],
                                               exc: type[Exception], fragment: str) -> None:
    getattr(_core, fn)(**(fwd_args() if fn == FWD else bwd_args()))  # the good call passes
    kw = make()
    before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
    with pytest.raises(exc) as info:
        getattr(_core, fn)(**kw)
    assert type(info.value) is exc
    assert fragment in str(info.value), f"{str(info.value)!r} lacks {fragment!r}"
    for k, v in before.items():
        np.testing.assert_array_equal(kw[k], v, err_msg=f"{bad}: {k} was modified")
