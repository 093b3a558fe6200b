"""Activations forward and backward on every ISA path: float64 references, PyTorch 2.13 parity
(torch.nn.functional + autograd), large magnitudes, NaN/Inf against the mathematical limits,
in-place operation, every tail length 1..33 (no write past the end), empty inputs,
thread-count invariance and central finite differences through the float32 kernels. The
references and tolerances are in activation_refs.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from activation_refs import ACTS, RTOL, TINY, Act
from conftest import assert_close, num_threads

import steadygrad as sg

TIME_BUDGET_S = 30


def _data(rng: np.random.Generator, n: int = 3001) -> np.ndarray:
    special = np.array([0.0, -0.0, 50, -50, 1e4, -1e4, 20, -20, 87.5, -87.5, 100, -100,
                        1e-3, -1e-3, 1e-20, -1e-20, 5, -5, 0.625, -0.625, 9, -9], np.float32)
    body = np.concatenate([rng.standard_normal(n // 2) * 3, rng.uniform(-12, 12, n - n // 2)])
    x = np.concatenate([special, body.astype(np.float32)])
    rng.shuffle(x)
    return x


def _saved(act: Act, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x if act.saved == "x" else y


@pytest.fixture(params=ACTS.keys())
def act(request) -> Act:
    return ACTS[request.param]


def test_forward_vs_float64(isa, rng, act):
    x = _data(rng)
    x_copy = x.copy()
    y = act.fwd(x)
    np.testing.assert_array_equal(x, x_copy)
    assert y.dtype == np.float32 and y.shape == x.shape
    x64 = x.astype(np.float64)
    ref = act.ref(x64)
    assert_close(y, ref, TINY + act.fwd_atol(x64, ref), rtol=RTOL, what=f"forward isa={isa}")


def test_backward_vs_float64(isa, rng, act):
    x = _data(rng)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = act.fwd(x)
    dx = act.bwd(dy, _saved(act, x, y))
    x64 = x.astype(np.float64)
    d = act.dref(x64, y.astype(np.float64))
    assert_close(dx, dy * d, TINY + act.bwd_atol(x64, d) * np.abs(dy), rtol=RTOL,
                 what=f"backward isa={isa}")


def _torch_fwd_bwd(act: Act, x: np.ndarray, dy: np.ndarray):
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    y = act.torch_fn(t)
    (g,) = torch.autograd.grad(y, t, torch.from_numpy(dy.copy()))
    return y.detach().numpy(), g.numpy()


def test_vs_torch(isa, rng, act):
    x = _data(rng)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y = act.fwd(x)
    dx = act.bwd(dy, _saved(act, x, y))
    ty, tdx = _torch_fwd_bwd(act, x, dy)
    x64 = x.astype(np.float64)
    ref, d = act.ref(x64), act.dref(x64, y.astype(np.float64))
    assert_close(y, ty, TINY + act.fwd_atol(x64, ref) + act.torch_atol(x64), rtol=RTOL,
                 what="forward vs torch")
    assert_close(dx, tdx, TINY + (act.bwd_atol(x64, d) + act.torch_atol(x64)) * np.abs(dy),
                 rtol=RTOL, what="backward vs torch")


def _nonfinite_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """45 values (vector bodies and tails on every ISA path) with NaN/Inf in x and NaN in dy."""
    x = rng.uniform(-3, 3, 45).astype(np.float32)
    where = {"nan": [0, 9, 17, 44], "+inf": [3, 20, 43], "-inf": [5, 21, 42],
             "nan_dy": [1, 2, 10, 41]}  # x finite at nan_dy; x[2] <= 0 for relu's select
    x[where["nan"]] = np.nan
    x[where["+inf"]] = np.inf
    x[where["-inf"]] = -np.inf
    x[2] = -1.0
    dy = rng.standard_normal(45).astype(np.float32)
    dy[where["nan_dy"]] = np.nan
    return x, dy, where


def test_finite_values_between_nan_inf_like_torch(isa, rng, act):
    """Where x and dy are finite, NaN/Inf elsewhere in the vector changes nothing: torch parity."""
    x, dy, _ = _nonfinite_case(rng)
    y = act.fwd(x)
    dx = act.bwd(dy, _saved(act, x, y))
    ty, tdx = _torch_fwd_bwd(act, x, dy)
    fin = np.isfinite(x) & np.isfinite(dy)
    x64 = x[fin].astype(np.float64)
    ref, d = act.ref(x64), act.dref(x64, y[fin].astype(np.float64))
    assert_close(y[fin], ty[fin], TINY + act.fwd_atol(x64, ref) + act.torch_atol(x64), rtol=RTOL,
                 what="forward between NaN/Inf vs torch")
    assert_close(dx[fin], tdx[fin], TINY + (act.bwd_atol(x64, d) + act.torch_atol(x64))
                 * np.abs(dy[fin]), rtol=RTOL, what="backward between NaN/Inf vs torch")


def _expected_at(act: Act, point: str, x: np.ndarray, dy: np.ndarray, direction: str):
    lim = act.limits
    if direction == "forward":
        return np.full(x.shape, {"+inf": lim.f_pos, "-inf": lim.f_neg, "nan": np.nan}[point])
    if point == "nan_dy":
        return lim.dx_at_nan_dy(x.astype(np.float64))
    if point == "nan":
        return lim.dx_at_nan_x(dy.astype(np.float64))
    return dy.astype(np.float64) * (lim.d_pos if point == "+inf" else lim.d_neg)


_NONFINITE_CASES = [
    pytest.param(name, point, direction, id=f"{name}-{point}-{direction}")
    for name in ACTS for point in ("+inf", "-inf", "nan", "nan_dy")
    for direction in ("forward", "backward") if not (point == "nan_dy" and direction == "forward")]


@pytest.mark.parametrize("name,point,direction", _NONFINITE_CASES)
def test_nonfinite_like_mathematics(isa, rng, name, point, direction):
    """At NaN/Inf in x (and NaN in dy) the result is the mathematical limit (Limits), on every
    ISA path, in vector bodies and tails; not torch's answer, which depends on its kernel."""
    act = ACTS[name]
    x, dy, where = _nonfinite_case(rng)
    y = act.fwd(x)
    got = y if direction == "forward" else act.bwd(dy, _saved(act, x, y))
    at = where[point]
    want = _expected_at(act, point, x[at], dy[at], direction)
    # exact for infinities, zeros and NaN; a backward dy * slope rounds once in float32
    assert_close(got[at], want, TINY, rtol=RTOL, what=f"{name} {direction} at x={point}")


def test_relu_nan_semantics(isa):
    x = np.array([np.nan, -1.0, 2.0], np.float32)
    assert np.isnan(sg.ops.relu(x)[0])
    dx = sg.ops.relu_backward(np.array([3.0, np.nan, 4.0], np.float32), x)
    np.testing.assert_array_equal(dx, [3.0, 0.0, 4.0])  # torch.threshold_backward semantics


def test_in_place(isa, rng, act):
    x = _data(rng, 301)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y_ref = act.fwd(x)
    dx_ref = act.bwd(dy, _saved(act, x, y_ref))
    buf = x.copy()
    y = act.fwd(buf, out=buf)
    assert y is buf
    np.testing.assert_array_equal(buf, y_ref)
    g = dy.copy()
    dx = act.bwd(g, _saved(act, x, y_ref), out=g)
    assert dx is g
    np.testing.assert_array_equal(g, dx_ref)


def test_tail_lengths(isa, rng, act):
    """Every n in 1..33 (below, at and past one vector of 4, 8 or 16 lanes): right values and
    not a byte written past the end of out."""
    for n in range(1, 34):
        x = _data(rng, 64)[:n].copy()
        dy = rng.standard_normal(n).astype(np.float32)
        ybuf = np.full(n + 16, 7.0, np.float32)
        act.fwd(x, out=ybuf[:n])
        assert (ybuf[n:] == 7.0).all(), f"forward n={n} wrote past the end: {ybuf[n:]}"
        x64 = x.astype(np.float64)
        ref = act.ref(x64)
        assert_close(ybuf[:n], ref, TINY + act.fwd_atol(x64, ref), rtol=RTOL,
                     what=f"forward n={n}")
        gbuf = np.full(n + 16, 7.0, np.float32)
        act.bwd(dy, _saved(act, x, ybuf[:n]), out=gbuf[:n])
        assert (gbuf[n:] == 7.0).all(), f"backward n={n} wrote past the end: {gbuf[n:]}"
        d = act.dref(x64, ybuf[:n].astype(np.float64))
        assert_close(gbuf[:n], dy * d, TINY + act.bwd_atol(x64, d) * np.abs(dy), rtol=RTOL,
                     what=f"backward n={n}")


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 5)])
def test_empty(isa, act, shape):
    x = np.zeros(shape, np.float32)
    y = act.fwd(x)
    assert y.shape == shape and y.dtype == np.float32
    assert act.bwd(x, x).shape == shape


def test_keeps_shape(isa, rng, act):
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    y = act.fwd(x)
    assert y.shape == (2, 3, 5)
    np.testing.assert_array_equal(y.ravel(), act.fwd(x.ravel()))
    assert act.bwd(x, _saved(act, x, y)).shape == (2, 3, 5)


def test_thread_count_invariance(isa, rng, act):
    x = (rng.standard_normal(100_003) * 4).astype(np.float32)  # past the parallel threshold
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out = []
    for t in (1, 2):
        with num_threads(t):
            y = act.fwd(x)
            out.append((y, act.bwd(dy, _saved(act, x, y))))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_finite_differences(isa, rng, act):
    """Backward (dy = 1) against central differences of the float32 forward kernel."""
    h = 1e-2
    x = rng.uniform(-4, 4, 257).astype(np.float32)
    if act.kink:
        x = x[np.abs(x - act.kink_at) > 2 * h]
    xp, xm = (x + np.float32(h)), (x - np.float32(h))
    fd = (act.fwd(xp).astype(np.float64) - act.fwd(xm)) / (xp.astype(np.float64) - xm)
    dx = act.bwd(np.ones_like(x), _saved(act, x, act.fwd(x)))
    assert_close(dx, fd, 5e-4, what=f"finite differences h={h}")


def test_leaky_relu_default_slope_is_torchs(isa, rng):
    x = rng.standard_normal(37).astype(np.float32)
    np.testing.assert_array_equal(sg.ops.leaky_relu(x), sg.ops.leaky_relu(x, 0.01))
    np.testing.assert_array_equal(sg.ops.leaky_relu(x),
                                  torch.nn.functional.leaky_relu(torch.from_numpy(x)).numpy())
