"""Pooling layers (nn/pooling.py, cpp/pooling): torch parity of outputs and dL/dx (random
upstream gradient) over kernel/stride/padding/dilation/ceil_mode/count_include_pad/
divisor_override, odd sizes and channel tails; ties, -inf and NaN for max pooling; adaptive
windows; 1-d layers; both layouts; every ISA path; bitwise 1 vs 2 threads; errors.

References are torch in float64 on the same (float32) values. Max pooling's forward is exact
and its gradient a sum of float32 terms routed by the same argmax (the tie rule, the first
maximum in row-major order, and the NaN rule, a NaN is the maximum, are the mathematics we
follow); an average is within (K + 2) eps of the float64 one, relative to the average of |x|
(K = terms summed, one or two roundings for the division), and so is each dL/dx element,
relative to the same backward run on |grad|."""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.conftest import assert_close, num_threads

from steadygrad import _core, nn
from steadygrad.nn._layout import FIRST, LAST

TIME_BUDGET_S = 40
EPS = float(np.finfo(np.float32).eps)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, np.float64))


def _run(layer: nn.Module, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = layer(x)
    dx = layer.backward(g)
    assert dx is not None
    return y, dx


def _torch_fwd_bwd(fn: Any, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xt = _t(x).requires_grad_(True)
    y = fn(xt)
    y.backward(_t(g))
    assert xt.grad is not None
    return y.detach().numpy(), xt.grad.numpy()


def _avg_bounds(fn: Any, x: np.ndarray, g: np.ndarray, terms: int) -> tuple[np.ndarray, np.ndarray]:
    """(K + 2) eps times the float64 pooling of |x| and the backward of |g|."""
    y_abs, dx_abs = _torch_fwd_bwd(fn, np.abs(x), np.abs(g))
    return (terms + 2) * EPS * np.abs(y_abs), (terms + 2) * EPS * np.abs(dx_abs)  # divisor < 0


# -- case lists (seeded, so every run checks the same cases) ------------------------------------
def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _out(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


def _has_empty_window(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> bool:
    """Whether some (dilated) window has no element inside the input (only padding)."""
    return any(all(not 0 <= o * s - p + j * d < n for j in range(k))
               for o in range(_out(n, k, s, p, d, ceil)))


def _window_cases(seed: int, count: int, dilated: bool) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    kernels = [1, 2, 3, 5, (2, 3), (3, 1), (1, 5)]
    cases: list[dict[str, Any]] = []
    while len(cases) < count:
        k = rnd.choice(kernels)
        s = rnd.choice([None, 1, 2, 3, (1, 2), (3, 2)])
        p = rnd.choice([0, 1, 2, (1, 0), (0, 2)])
        d = rnd.choice([1, 2, (2, 1)]) if dilated else 1
        ceil = rnd.random() < 0.5
        h, w = rnd.randint(1, 33), rnd.randint(1, 33)
        c = rnd.choice([1, 3, 8, 17])
        kk, ss, pp, dd = _pair(k), _pair(k if s is None else s), _pair(p), _pair(d)
        if any(pi > ki // 2 for ki, pi in zip(kk, pp, strict=True)):
            continue
        if min(_out(n, *a, ceil) for n, a in ((h, (kk[0], ss[0], pp[0], dd[0])),
                                                (w, (kk[1], ss[1], pp[1], dd[1])))) < 1:
            continue
        if _has_empty_window(h, kk[0], ss[0], pp[0], dd[0], ceil) or _has_empty_window(
                w, kk[1], ss[1], pp[1], dd[1], ceil):
            continue  # see test_max_pool_window_outside_the_input
        cases.append(dict(k=k, s=s, p=p, d=d, ceil=ceil, h=h, w=w, c=c))
    # corners: 1x1 input, the largest size, a window as large as the input
    cases += [dict(k=1, s=None, p=0, d=1, ceil=False, h=1, w=1, c=17),
              dict(k=3, s=1, p=1, d=1, ceil=True, h=33, w=33, c=8),
              dict(k=(5, 3), s=2, p=(2, 1), d=1, ceil=True, h=5, w=3, c=3),
              dict(k=2, s=3, p=1, d=1, ceil=True, h=4, w=7, c=1)]
    return cases


MAX_CASES = _window_cases(1, 20, dilated=True)
AVG_CASES = _window_cases(2, 20, dilated=False)


def _case_id(c: dict[str, Any]) -> str:
    return "k{k}-s{s}-p{p}-d{d}-{ceil}-{h}x{w}x{c}".format(**c).replace(" ", "")


def _input(rng: np.random.Generator, shape: tuple[int, ...], ties: bool = False) -> np.ndarray:
    if ties:  # few distinct values: many windows hold their maximum more than once
        return rng.integers(-2, 3, size=shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


# -- max pooling ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool2d_matches_torch(case: dict[str, Any], isa: str,
                                  rng: np.random.Generator) -> None:
    layer = nn.MaxPool2d(case["k"], case["s"], case["p"], case["d"], ceil_mode=case["ceil"])
    fn = lambda t: F.max_pool2d(t, case["k"], case["s"], case["p"], case["d"],  # noqa: E731
                                ceil_mode=case["ceil"])
    for ties in (False, True):
        x = _input(rng, (1, case["c"], case["h"], case["w"]), ties)
        xt = _t(x).requires_grad_(True)
        y_t = fn(xt)
        g = rng.standard_normal(tuple(y_t.shape)).astype(np.float32)
        y_t.backward(_t(g))
        y, dx = _run(layer, x, g)
        assert_close(y, y_t.detach().numpy(), 0.0, what=f"{layer} forward ties={ties}")
        _, dx_abs = _torch_fwd_bwd(fn, x, np.abs(g))
        kk = np.prod(_pair(case["k"]))
        assert_close(dx, xt.grad.numpy(), kk * EPS * dx_abs,  # type: ignore[union-attr]
                     what=f"{layer} dL/dx ties={ties}")


def test_max_pool_ties_send_gradient_to_first_maximum() -> None:
    # constant input: each 2x2 window's first element (row-major) gets the whole gradient
    x = np.full((1, 2, 4, 4), 3.0, np.float32)
    layer = nn.MaxPool2d(2)
    layer(x)
    dx = layer.backward(np.ones((1, 2, 2, 2), np.float32))
    want = np.zeros_like(x)
    want[:, :, ::2, ::2] = 1.0
    np.testing.assert_array_equal(dx, want)
    # overlapping windows (stride 1) with a repeated maximum: torch's argmax
    x = np.array([[[[1, 5, 5], [5, 0, 5], [5, 5, 1]]]], np.float32)
    layer = nn.MaxPool2d(2, stride=1)
    g = np.array([[[[1, 2], [4, 8]]]], np.float32)
    y, dx = _run(layer, x, g)
    yt, dxt = _torch_fwd_bwd(lambda t: F.max_pool2d(t, 2, 1), x, g)
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_array_equal(dx, dxt)
    # windows (0,0),(0,1): first 5 at (0,1); (1,0): (1,0); (1,1): (1,2)
    np.testing.assert_array_equal(dx[0, 0], [[0, 3, 0], [4, 0, 8], [0, 0, 0]])


def test_max_pool_inf_and_nan_follow_torch(isa: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((1, 17, 9, 8)).astype(np.float32)
    x[0, :, 0:3, 0:3] = -np.inf          # a window of -inf only (and padded -inf around it)
    x[0, 2, 4, 4] = np.nan                 # one NaN
    x[0, 5, 6, 1] = x[0, 5, 6, 2] = np.nan  # two NaNs in one window
    x[0, 7, 2, 6] = np.inf
    for k, s, p in ((3, 2, 1), (2, 1, 0), (3, 3, 0)):
        layer = nn.MaxPool2d(k, s, p)
        fn = lambda t, k=k, s=s, p=p: F.max_pool2d(t, k, s, p)  # noqa: E731
        y = layer(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(g)
        yt, dxt = _torch_fwd_bwd(fn, x, g)
        np.testing.assert_array_equal(y, yt, err_msg=f"{layer} forward")  # NaN, inf exactly
        _, dx_abs = _torch_fwd_bwd(fn, x, np.abs(g))
        assert_close(dx, dxt, k * k * EPS * dx_abs, what=f"{layer} dL/dx")
        assert np.isnan(y).any() and np.isneginf(y).any()


def test_max_pool_window_outside_the_input() -> None:
    # L = 1, dilation 2, padding 1: windows at -1, 1 (and 0, 2) see only padding there. torch
    # gives -inf with an index outside the input (its backward then writes out of bounds);
    # here -inf and no gradient from that window.
    x = np.arange(1, 4, dtype=np.float32).reshape(1, 3, 1)
    layer = nn.MaxPool1d(2, stride=1, padding=1, dilation=2)
    y = layer(x)
    with torch.no_grad():
        yt = F.max_pool1d(_t(x), 2, 1, 1, 2).numpy()
    np.testing.assert_array_equal(y, yt)
    assert np.isneginf(y).all()
    dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx, np.zeros_like(x))


@pytest.mark.parametrize("case", MAX_CASES[:10], ids=_case_id)
def test_max_pool1d_matches_torch(case: dict[str, Any], isa: str,
                                  rng: np.random.Generator) -> None:
    k, s, p, d = (_pair(case[n])[1] if case[n] is not None else None for n in "kspd")
    if p > k // 2:  # type: ignore[operator]
        p = 0
    layer = nn.MaxPool1d(k, s, p, d, ceil_mode=case["ceil"])  # type: ignore[arg-type]
    fn = lambda t: F.max_pool1d(t, k, s, p, d, ceil_mode=case["ceil"])  # noqa: E731
    for ties in (False, True):
        x = _input(rng, (2, case["c"], case["w"]), ties)
        with torch.no_grad():
            shape = tuple(fn(_t(x)).shape)
        g = rng.standard_normal(shape).astype(np.float32)
        y, dx = _run(layer, x, g)
        yt, dxt = _torch_fwd_bwd(fn, x, g)
        _, dx_abs = _torch_fwd_bwd(fn, x, np.abs(g))
        assert_close(y, yt, 0.0, what=f"{layer} forward")
        assert_close(dx, dxt, k * EPS * dx_abs, what=f"{layer} dL/dx")  # type: ignore[operator]


# -- average pooling --------------------------------------------------------------------------
@pytest.mark.parametrize("case", AVG_CASES, ids=_case_id)
def test_avg_pool2d_matches_torch(case: dict[str, Any], isa: str,
                                  rng: np.random.Generator) -> None:
    x = _input(rng, (1, case["c"], case["h"], case["w"]))
    kk = int(np.prod(_pair(case["k"])))
    for cip, div in ((True, None), (False, None), (True, 3), (False, -2)):
        layer = nn.AvgPool2d(case["k"], case["s"], case["p"], ceil_mode=case["ceil"],
                             count_include_pad=cip, divisor_override=div)
        fn = lambda t, cip=cip, div=div: F.avg_pool2d(  # noqa: E731
            t, case["k"], case["s"], case["p"], ceil_mode=case["ceil"],
            count_include_pad=cip, divisor_override=div)
        with torch.no_grad():
            shape = tuple(fn(_t(x)).shape)
        g = rng.standard_normal(shape).astype(np.float32)
        y, dx = _run(layer, x, g)
        yt, dxt = _torch_fwd_bwd(fn, x, g)
        ty, tdx = _avg_bounds(fn, x, g, kk)
        assert_close(y, yt, ty, what=f"{layer} forward")
        assert_close(dx, dxt, tdx, what=f"{layer} dL/dx")


@pytest.mark.parametrize("case", AVG_CASES[:10], ids=_case_id)
def test_avg_pool1d_matches_torch(case: dict[str, Any], isa: str,
                                  rng: np.random.Generator) -> None:
    k, s, p = (_pair(case[n])[1] if case[n] is not None else None for n in "ksp")
    if p > k // 2:  # type: ignore[operator]
        p = 0
    x = _input(rng, (2, case["c"], case["w"]))
    for cip in (True, False):
        layer = nn.AvgPool1d(k, s, p, ceil_mode=case["ceil"],  # type: ignore[arg-type]
                             count_include_pad=cip)
        fn = lambda t, cip=cip: F.avg_pool1d(t, k, s, p, ceil_mode=case["ceil"],  # noqa: E731
                                             count_include_pad=cip)
        with torch.no_grad():
            shape = tuple(fn(_t(x)).shape)
        g = rng.standard_normal(shape).astype(np.float32)
        y, dx = _run(layer, x, g)
        yt, dxt = _torch_fwd_bwd(fn, x, g)
        ty, tdx = _avg_bounds(fn, x, g, k)  # type: ignore[arg-type]
        assert_close(y, yt, ty, what=f"{layer} forward")
        assert_close(dx, dxt, tdx, what=f"{layer} dL/dx")


# -- adaptive average pooling -----------------------------------------------------------------
ADAPTIVE = [((1, 1), 7, 5), ((2, 2), 8, 8), ((3, 2), 7, 5), ((5, 7), 5, 7), ((4, 3), 13, 1),
            ((6, 9), 4, 5), ((2, None), 9, 6), ((None, 3), 5, 10), (1, 33, 33), (3, 1, 1)]


@pytest.mark.parametrize("size,h,w", ADAPTIVE)
def test_adaptive_avg_pool2d_matches_torch(size: Any, h: int, w: int, isa: str,
                                           rng: np.random.Generator) -> None:
    for c in (1, 17):
        x = _input(rng, (1, c, h, w))
        layer = nn.AdaptiveAvgPool2d(size)
        fn = lambda t: F.adaptive_avg_pool2d(t, size)  # noqa: E731
        with torch.no_grad():
            shape = tuple(fn(_t(x)).shape)
        assert layer.output_shape(x.shape) == shape
        g = rng.standard_normal(shape).astype(np.float32)
        y, dx = _run(layer, x, g)
        yt, dxt = _torch_fwd_bwd(fn, x, g)
        terms = (-(-h // shape[2]) + 1) * (-(-w // shape[3]) + 1)
        ty, tdx = _avg_bounds(fn, x, g, terms + 1)
        assert_close(y, yt, ty, what=f"{layer} forward")
        assert_close(dx, dxt, tdx, what=f"{layer} dL/dx")


@pytest.mark.parametrize("size,length", [(1, 9), (4, 9), (7, 3), (5, 5), (None, 6)])
def test_adaptive_avg_pool1d_matches_torch(size: Any, length: int,
                                           rng: np.random.Generator) -> None:
    x = _input(rng, (3, 8, length))
    layer = nn.AdaptiveAvgPool1d(size)
    fn = lambda t: F.adaptive_avg_pool1d(t, length if size is None else size)  # noqa: E731
    with torch.no_grad():
        shape = tuple(fn(_t(x)).shape)
    g = rng.standard_normal(shape).astype(np.float32)
    y, dx = _run(layer, x, g)
    yt, dxt = _torch_fwd_bwd(fn, x, g)
    ty, tdx = _avg_bounds(fn, x, g, length + 2)
    assert_close(y, yt, ty, what=f"{layer} forward")
    assert_close(dx, dxt, tdx, what=f"{layer} dL/dx")


# -- layouts, threads, memory, plan attributes ------------------------------------------------
LAYERS = [lambda: nn.MaxPool2d(3, 2, 1), lambda: nn.AvgPool2d((3, 2), 2, (1, 0), ceil_mode=True),
          lambda: nn.AdaptiveAvgPool2d((3, 5)), lambda: nn.MaxPool1d(3, 2, 1, dilation=2),
          lambda: nn.AvgPool1d(4, 3, 2, count_include_pad=False),
          lambda: nn.AdaptiveAvgPool1d(4)]


def _last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


@pytest.mark.parametrize("make", LAYERS, ids=lambda f: repr(f()))
def test_layouts_give_the_same_results(make: Any, rng: np.random.Generator) -> None:
    layer = make()
    two_d = isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d))
    x = _input(rng, (2, 17, 11, 9) if two_d else (2, 17, 13))
    g = rng.standard_normal(layer.output_shape(x.shape)).astype(np.float32)
    y, dx = _run(layer, x, g)
    for lin, lout in ((LAST, LAST), (LAST, FIRST), (FIRST, LAST)):
        xin = _last(x) if lin == LAST else x
        y2 = layer.forward(xin, layout_in=lin, layout_out=lout)
        np.testing.assert_array_equal(y2, _last(y) if lout == LAST else y)
        dx2 = layer._backward(_last(g) if lout == LAST else g)
        assert dx2 is not None
        np.testing.assert_array_equal(dx2, _last(dx) if lin == LAST else dx)
    assert layer.channels_last and layer.owns_output and layer.grad_into_input
    assert layer.skips_grad_input and not layer.reads_output_in_backward
    # input_grad=False: no dL/dx
    layer(x)
    assert layer.backward(g, input_grad=False) is None


@pytest.mark.parametrize("make", LAYERS, ids=lambda f: repr(f()))
def test_bitwise_equal_for_one_and_two_threads(make: Any, rng: np.random.Generator) -> None:
    layer = make()
    two_d = isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d))
    x = _input(rng, (4, 17, 33, 33) if two_d else (16, 33, 200))
    g = rng.standard_normal(layer.output_shape(x.shape)).astype(np.float32)
    with num_threads(1):
        y1, dx1 = _run(layer, x, g)
    with num_threads(2):
        y2, dx2 = _run(layer, x, g)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(dx1, dx2)


def test_donated_input_receives_the_gradient(rng: np.random.Generator) -> None:
    layer = nn.MaxPool2d(2)
    x = _last(_input(rng, (2, 3, 6, 6)))
    ref = nn.MaxPool2d(2)
    y = layer.forward(x.copy(), layout_in=LAST, layout_out=LAST)
    g = rng.standard_normal(y.shape).astype(np.float32)
    ref.forward(x, layout_in=LAST, layout_out=LAST)
    want = ref._backward(g)
    xin = layer._saved[0]  # type: ignore[index]
    dx = layer._backward(g, donate_input=True)
    assert dx is xin
    np.testing.assert_array_equal(dx, want)


def test_memory_keeps_int32_indices_not_the_input() -> None:
    shape = (8, 16, 32, 32)
    out = 8 * 16 * 16 * 16
    assert nn.MaxPool2d(2).memory(shape) == (4 * out + 4 * out, 4 * int(np.prod(shape)))
    assert nn.AvgPool2d(2).memory(shape) == (4 * out, 4 * int(np.prod(shape)))
    assert nn.AdaptiveAvgPool2d(1).memory(shape) == (4 * 8 * 16, 4 * int(np.prod(shape)))
    assert nn.MaxPool2d(2).memory(shape)[0] < 4 * int(np.prod(shape))  # smaller than a mask
    assert not nn.MaxPool2d(2).parameters()


def test_in_a_sequential(rng: np.random.Generator) -> None:
    model = nn.Sequential(nn.MaxPool2d(2, 1), nn.ReLU(), nn.AvgPool2d(3, 2, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))
    twin = torch.nn.Sequential(torch.nn.MaxPool2d(2, 1), torch.nn.ReLU(),
                               torch.nn.AvgPool2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(5, 2)).double()
    twin.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                          for k, v in model.state_dict().items()})
    x = _input(rng, (3, 5, 9, 9))
    g = rng.standard_normal((3, 2)).astype(np.float32)
    y, dx = _run(model, x, g)
    yt, dxt = _torch_fwd_bwd(twin, x, g)
    assert_close(y, yt, 1e-5, what="forward")
    assert_close(dx, dxt, 1e-5, what="dL/dx")


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,err,match", [
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "MaxPool2d: pad should be smaller than"),
    (lambda: nn.MaxPool2d(3, padding=2, dilation=2), ValueError, "pad=2 and kernel_size=3"),
    (lambda: nn.MaxPool2d(0), ValueError, "kernel_size must be >= 1"),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: nn.MaxPool2d(2, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: nn.MaxPool2d(2, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: nn.MaxPool2d((2, 2, 2)), ValueError, "tuple of 2"),
    (lambda: nn.MaxPool2d(2.0), TypeError, "kernel_size must be an int"),
    (lambda: nn.MaxPool1d(2, return_indices=True), ValueError, "return_indices"),
    (lambda: nn.AvgPool2d(2, divisor_override=0), ValueError, "divisor must be not zero"),
    (lambda: nn.AvgPool1d(3, padding=2), ValueError, "AvgPool1d: pad should be"),
    (lambda: nn.AdaptiveAvgPool2d((2, 0)), ValueError, "output_size must be positive"),
    (lambda: nn.AdaptiveAvgPool2d((2, 2, 2)), ValueError, "tuple of 2"),
    (lambda: nn.AdaptiveAvgPool1d("3"), TypeError, "output_size must be an int"),
])
def test_constructor_errors(make: Any, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        make()


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.MaxPool2d(2), (3, 4), r"expected 3-d \(unbatched\) or 4-d input \(N, C, H, "
                                      r"W\), got input of shape \(3, 4\)"),
    (lambda: nn.MaxPool1d(2), (2, 3, 4, 4), r"expected 2-d \(unbatched\) or 3-d input \(N, C, L\)"),
    (lambda: nn.MaxPool2d(5), (1, 3, 4, 9), r"input of shape \(1, 3, 4, 9\) is too small"),
    (lambda: nn.MaxPool2d(3, dilation=2), (1, 3, 4, 9),
     r"input of shape \(1, 3, 4, 9\) is too small: the window \(kernel_size=3, dilation=2\)"),
    (lambda: nn.AvgPool2d(3, padding=1), (1, 2, 9, 0), r"spatial sizes >= 1"),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 0, 4, 4), r"C and the spatial sizes >= 1"),
])
def test_forward_shape_errors_name_layer_and_shape(make: Any, shape: tuple[int, ...],
                                                   match: str) -> None:
    layer = make()
    with pytest.raises(ValueError, match=re.escape(repr(layer)) + ": .*" + match):
        layer(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=match):
        layer.output_shape(shape)
    seq = nn.Sequential(nn.Identity(), layer)
    with pytest.raises(ValueError, match=r"Sequential\[1\] " + re.escape(repr(layer))):
        seq(np.zeros(shape, np.float32))


def test_errors_leave_a_pending_backward_intact(rng: np.random.Generator) -> None:
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d(2)):
        x = _input(rng, (2, 3, 6, 6))
        y = layer(x).copy()
        g = rng.standard_normal(y.shape).astype(np.float32)
        with pytest.raises(ValueError, match="or 4-d input"):
            layer(np.zeros((2, 3), np.float32))
        if not isinstance(layer, nn.AdaptiveAvgPool2d):
            with pytest.raises(ValueError, match="input of shape"):
                layer(np.zeros((2, 3, 1, 1), np.float32) if layer.padding == 0  # type: ignore[attr-defined]
                      else np.zeros((2, 3, 0, 1), np.float32))
        with pytest.raises(TypeError, match="input must be a float32"):
            layer(x.astype(np.float64))
        with pytest.raises(ValueError, match="grad_output must have the output's shape"):
            layer.backward(np.zeros((2, 3, 2, 2, 1), np.float32))
        # the failed calls changed nothing: the backward of the good forward still matches
        layer2 = type(layer)(*_ctor_args(layer))
        layer2(x)
        np.testing.assert_array_equal(layer.backward(g), layer2.backward(g))


def _ctor_args(layer: nn.Module) -> tuple[Any, ...]:
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return (layer.output_size,)
    return (layer.kernel_size, layer.stride, layer.padding)  # type: ignore[attr-defined]


def test_binding_checks_before_writing(rng: np.random.Generator) -> None:
    x = _input(rng, (1, 6, 6, 3))
    geom = _core.ConvGeometry(n=1, h=6, w=6, c_in=3, c_out=3, kh=2, kw=2, sh=2, sw=2)
    out = np.full((1, 3, 3, 3), 7.0, np.float32)
    idx = np.full((1, 3, 3, 3), 7, np.int32)
    bad = _core.ConvGeometry(n=1, h=6, w=6, c_in=3, c_out=6, kh=2, kw=2)
    with pytest.raises(ValueError, match="c_out == c_in"):
        _core.max_pool2d_forward(x, bad, out=out, indices=idx)
    wide = _core.ConvGeometry(n=1, h=6, w=6, c_in=3, c_out=3, kh=2, kw=2, ph0=2, ph1=2)
    with pytest.raises(ValueError, match="pad should be smaller than or equal to half"):
        _core.avg_pool2d_forward(x, wide, out=out)
    dil = _core.ConvGeometry(n=1, h=6, w=6, c_in=3, c_out=3, kh=2, kw=2, dh=2)
    with pytest.raises(ValueError, match="dilation 1x1"):
        _core.avg_pool2d_forward(x, dil)
    with pytest.raises(TypeError, match="indices must have dtype int32"):
        _core.max_pool2d_forward(x, geom, out=out, indices=idx.astype(np.int64))
    with pytest.raises(ValueError, match="out must have shape"):
        _core.max_pool2d_forward(x, geom, out=out[:, :2], indices=idx)
    with pytest.raises(ValueError, match="input must have shape"):
        _core.max_pool2d_forward(x[:, :5].copy(), geom, out=out, indices=idx)
    with pytest.raises(TypeError, match="divisor_override must be an int"):
        _core.avg_pool2d_forward(x, geom, divisor_override=2.0, out=out)
    with pytest.raises(ValueError, match="divisor_override must be non-zero"):
        _core.avg_pool2d_backward(out, geom, divisor_override=0, grad_input=x.copy())
    with pytest.raises(ValueError, match="output_size must be positive"):
        _core.adaptive_avg_pool2d_forward(x, (0, 2), out=out)
    with pytest.raises(ValueError, match="grad_input"):
        _core.max_pool2d_backward(out, idx, geom, grad_input=out.reshape(1, 3, 3, 3)[:, :, :, :])
    assert (out == 7.0).all() and (idx == 7).all()
    # garbage indices are safe: they are only compared, so no gradient lands anywhere
    dx = _core.max_pool2d_backward(out, np.full_like(idx, 1 << 30), geom)
    assert (dx == 0).all()


def test_repr_matches_torch() -> None:
    assert repr(nn.MaxPool2d(2)) == repr(torch.nn.MaxPool2d(2))
    assert repr(nn.MaxPool1d(3, 1, 1)) == repr(torch.nn.MaxPool1d(3, 1, 1))
    assert repr(nn.AvgPool2d(3, 2, 1)) == repr(torch.nn.AvgPool2d(3, 2, 1))
    assert repr(nn.AvgPool1d(2)) == repr(torch.nn.AvgPool1d(2))
    assert repr(nn.AdaptiveAvgPool2d((2, None))) == repr(torch.nn.AdaptiveAvgPool2d((2, None)))
