"""LayerNorm (kernels and layer) on every ISA path: torch 2.13 in float64 as the oracle of
forward and backward (the same float32 inputs, random upstream gradients) with tolerances
from the summation error bounds, float64 finite differences, row tails 1..33, empty batches,
non-finite rows against the mathematics, 1 vs 2 vs 3 threads bitwise, bad input (message and
nothing changed), state_dict round trips and torch interop, and training inside a Sequential
by sg.fit against the same steps in torch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads

import steadygrad as sg
from steadygrad import _core, nn
from steadygrad.nn._layout import FIRST

EPS = float(np.finfo(np.float32).eps)
TINY = 1e-30


# -- float64 references and error bounds ----------------------------------------------------

def torch_ref(x: np.ndarray, ns: tuple[int, ...], w: np.ndarray | None, b: np.ndarray | None,
              eps: float, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """torch's layer_norm in float64 on the float32 inputs: y, dx, dweight, dbias."""
    t = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    tw = None if w is None else torch.from_numpy(w.astype(np.float64)).requires_grad_(True)
    tb = None if b is None else torch.from_numpy(b.astype(np.float64)).requires_grad_(True)
    y = torch.nn.functional.layer_norm(t, ns, tw, tb, eps)
    y.backward(torch.from_numpy(g.astype(np.float64)))
    dw = None if tw is None else tw.grad.numpy()
    db = None if tb is None else tb.grad.numpy()
    return y.detach().numpy(), t.grad.numpy(), dw, db


def bounds(x: np.ndarray, ns: tuple[int, ...], w: np.ndarray | None, g: np.ndarray,
           eps: float) -> dict[str, np.ndarray]:
    """Worst-case float32 error bounds of y, dx, dweight and dbias for any summation order:
    a sum of k terms errs by at most (k + 8) eps times the sum of their magnitudes (+8 for the
    lane combines), and each further operation by eps relative."""
    d = int(np.prod(ns))
    x2 = x.astype(np.float64).reshape(-1, d)
    g2 = g.astype(np.float64).reshape(-1, d)
    w1 = np.ones(d) if w is None else np.abs(w.astype(np.float64)).reshape(d)
    m = x2.mean(1, keepdims=True)
    dev = np.abs(x2 - m)
    r = 1.0 / np.sqrt(dev.__pow__(2).mean(1, keepdims=True) + eps)
    xh = np.abs(x2 - m) * r
    k = (d + 16) * EPS
    # the mean (corrected two-pass): the deviations' sum, its rounding, and that of m0
    dm = k * (dev.mean(1, keepdims=True) + k * np.abs(x2).mean(1, keepdims=True)) + EPS * np.abs(m)
    xe = r * (2 * EPS * dev + dm) + k * xh  # absolute error of xhat (k: that of rstd)
    y = xh * w1
    tol_y = w1 * xe + 2 * EPS * (y + 1.0 * (w is not None))  # the affine's two roundings
    gg = np.abs(g2) * w1
    mg, mgx = gg.mean(1, keepdims=True), (gg * xh).mean(1, keepdims=True)
    s = gg + mg + xh * mgx
    tol_dx = (r * (3 * k * s + xe.max(1, keepdims=True) * mg * xh + xe * mgx)
              + k * r * s)
    n = x2.shape[0]
    kn = (n + 8) * EPS
    tol_dw = kn * (np.abs(g2) * xh).sum(0) + (np.abs(g2) * xe).sum(0)
    tol_db = kn * np.abs(g2).sum(0)
    return {"y": tol_y.reshape(x.shape) + TINY, "dx": tol_dx.reshape(x.shape) + TINY,
            "dw": tol_dw.reshape(ns) + TINY, "db": tol_db.reshape(ns) + TINY}


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def run_layer(m: nn.LayerNorm, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    m.zero_grad()
    y = m(x)
    dx = m.backward(g)
    w = None if m.weight is None else m.weight.grad
    b = None if m.bias is None else m.bias.grad
    return y, dx, w, b


# (normalized_shape, input shape): tails, a single feature, no leading dims, several trailing
CASES = [(8, (5, 8)), ((3, 4), (2, 3, 4)), (33, (7, 33)), (1, (3, 1)), (17, (17,)),
         ((2, 3, 5), (2, 2, 3, 5)), (64, (2, 3, 4, 64)), (200, (6, 200))]
OPTIONS = [dict(), dict(bias=False), dict(elementwise_affine=False), dict(eps=0.1)]


@pytest.mark.parametrize("ns,shape", CASES)
@pytest.mark.parametrize("opts", OPTIONS, ids=["affine", "no_bias", "no_affine", "eps0.1"])
def test_layer_vs_torch_float64(isa, rng, ns, shape, opts):
    m = nn.LayerNorm(ns, **opts)
    nst = (ns,) if isinstance(ns, int) else ns
    if m.weight is not None:  # parameters away from their init, so that they matter
        m.weight.data[...] = _f32(rng, *nst, scale=0.5, shift=1.0)
    if m.bias is not None:
        m.bias.data[...] = _f32(rng, *nst)
    x = _f32(rng, *shape, scale=3.0, shift=2.0)
    g = _f32(rng, *shape)
    x_copy, g_copy = x.copy(), g.copy()
    y, dx, dw, db = run_layer(m, x, g)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(g, g_copy)
    w = None if m.weight is None else m.weight.data
    b = None if m.bias is None else m.bias.data
    ry, rdx, rdw, rdb = torch_ref(x, nst, w, b, m.eps, g)
    tol = bounds(x, nst, w, g, m.eps)
    what = f"isa={isa} ns={ns} shape={shape} {opts}"
    assert y.shape == shape and dx.shape == shape
    assert_close(y, ry, tol["y"], what=f"y {what}")
    assert_close(dx, rdx, tol["dx"], what=f"dx {what}")
    if w is not None:
        assert dw.shape == nst
        assert_close(dw, rdw, tol["dw"], what=f"dweight {what}")
    if b is not None:
        assert_close(db, rdb, tol["db"], what=f"dbias {what}")


def test_torch_module_interop(isa, rng):
    """state_dict both ways with torch.nn.LayerNorm, and the same forward/backward as torch's
    module (in float64, loaded from our float32 parameters)."""
    ns, shape = (4, 6), (3, 5, 4, 6)
    m = nn.LayerNorm(ns)
    t = torch.nn.LayerNorm(ns, dtype=torch.float64)
    with torch.no_grad():
        t.weight.uniform_(0.5, 1.5)
        t.bias.uniform_(-1, 1)
    sd_t = {k: v.float() for k, v in t.state_dict().items()}
    assert m.load_state_dict(sd_t) is not None
    assert list(m.state_dict()) == ["weight", "bias"] == list(t.state_dict())
    np.testing.assert_array_equal(m.weight.data, sd_t["weight"].numpy())
    t.load_state_dict({k: torch.from_numpy(v).double() for k, v in m.state_dict().items()})
    x, g = _f32(rng, *shape), _f32(rng, *shape)
    y, dx, dw, db = run_layer(m, x, g)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    ty = t(tx)
    ty.backward(torch.from_numpy(g.astype(np.float64)))
    tol = bounds(x, ns, m.weight.data, g, m.eps)
    assert_close(y, ty.detach().numpy(), tol["y"], what="y vs torch module")
    assert_close(dx, tx.grad.numpy(), tol["dx"], what="dx vs torch module")
    assert_close(dw, t.weight.grad.numpy(), tol["dw"], what="dweight vs torch module")
    assert_close(db, t.bias.grad.numpy(), tol["db"], what="dbias vs torch module")


def test_state_dict_keys_and_round_trip():
    assert list(nn.LayerNorm(5, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(5, elementwise_affine=False).state_dict()) == []
    assert list(torch.nn.LayerNorm(5, bias=False).state_dict()) == ["weight"]
    m = nn.LayerNorm((2, 3))
    np.testing.assert_array_equal(m.weight.data, np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(m.bias.data, np.zeros((2, 3), np.float32))
    sd = {"weight": np.arange(6, dtype=np.float32).reshape(2, 3),
          "bias": -np.arange(6, dtype=np.float32).reshape(2, 3)}
    m.load_state_dict(sd)
    m2 = nn.LayerNorm((2, 3))
    m2.load_state_dict(m.state_dict())
    for k in sd:
        np.testing.assert_array_equal(m2.state_dict()[k], sd[k])
    with pytest.raises(RuntimeError, match="size mismatch"):
        m2.load_state_dict({"weight": np.ones(6, np.float32), "bias": np.zeros(6, np.float32)})
    np.testing.assert_array_equal(m2.weight.data, sd["weight"])  # unchanged


def test_finite_differences_float64(isa, rng):
    """The layer's backward against central differences of a float64 LayerNorm forward of
    L = sum(w_up * y) (h = 1e-6: the differences are exact to ~1e-9)."""
    ns, shape, h, eps = (5,), (3, 5), 1e-6, 1e-5
    m = nn.LayerNorm(ns)
    m.weight.data[...] = _f32(rng, 5, scale=0.5, shift=1.0)
    m.bias.data[...] = _f32(rng, 5)
    x = _f32(rng, *shape)
    up = rng.standard_normal(shape)

    def loss(x64: np.ndarray, w64: np.ndarray, b64: np.ndarray) -> float:
        mu = x64.mean(-1, keepdims=True)
        var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
        return float((up * ((x64 - mu) / np.sqrt(var + eps) * w64 + b64)).sum())

    args = [x.astype(np.float64), m.weight.data.astype(np.float64), m.bias.data.astype(np.float64)]
    fds = []
    for a in range(3):
        fd = np.empty(args[a].shape)
        for idx in np.ndindex(args[a].shape):
            plus, minus = [v.copy() for v in args], [v.copy() for v in args]
            plus[a][idx] += h
            minus[a][idx] -= h
            fd[idx] = (loss(*plus) - loss(*minus)) / (2 * h)
        fds.append(fd)
    g = up.astype(np.float32)
    _, dx, dw, db = run_layer(m, x, g)
    tol = bounds(x, ns, m.weight.data, g, eps)
    assert_close(dx, fds[0], tol["dx"] + 1e-6, what="dx vs finite differences")
    assert_close(dw, fds[1], tol["dw"] + 1e-6, what="dweight vs finite differences")
    assert_close(db, fds[2], tol["db"] + 1e-6, what="dbias vs finite differences")


def test_large_offset_keeps_the_deviations(isa, rng):
    """A row of mean 1e4 and spread 1: the corrected two-pass mean removes the float32 error of
    the plain mean (d/32 ulp(1e4) ~ 2e-2 here), leaving about ulp(1e4) / std."""
    d = 4096
    x = _f32(rng, 4, d, shift=1e4)
    y = nn.LayerNorm(d, elementwise_affine=False)(x)
    ry = torch_ref(x, (d,), None, None, 1e-5, np.zeros_like(x))[0]
    assert_close(y, ry, bounds(x, (d,), None, x, 1e-5)["y"], what="large offset")
    assert np.abs(y - ry).max() < 4e-3


# -- kernels: tails, empty, aliasing, accumulation, non-finite ------------------------------

def _stats(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)


def test_row_tails_and_no_write_past_end(isa, rng):
    for d in range(1, 34):
        n = 3
        x, g = _f32(rng, n, d), _f32(rng, n, d)
        w, b = _f32(rng, d, shift=1.0), _f32(rng, d)
        mean, rstd = _stats(n)
        ybuf = np.full(n * d + 16, 7.0, np.float32)
        y = _core.layernorm_forward(x, w, b, mean, rstd, out=ybuf[:n * d].reshape(n, d))
        assert (ybuf[n * d:] == 7.0).all(), f"forward d={d} wrote past the end"
        dxbuf = np.full(n * d + 16, 7.0, np.float32)
        dw = np.full(d + 16, 7.0, np.float32)
        db = np.full(d + 16, 7.0, np.float32)
        dx = _core.layernorm_backward(g, x, w, mean, rstd, dw[:d], db[:d],
                                      grad_input=dxbuf[:n * d].reshape(n, d))
        for buf, k in ((dxbuf, n * d), (dw, d), (db, d)):
            assert (buf[k:] == 7.0).all(), f"backward d={d} wrote past the end"
        ry, rdx, rdw, rdb = torch_ref(x, (d,), w, b, 1e-5, g)
        tol = bounds(x, (d,), w, g, 1e-5)
        x64 = x.astype(np.float64)
        assert_close(mean, x64.mean(1), 1e-6 * (1 + np.abs(x64).max()), what=f"mean d={d}")
        assert_close(rstd, 1 / np.sqrt(x64.var(1) + 1e-5), (d + 16) * EPS / np.sqrt(x64.var(1) + 1e-5),
                     what=f"rstd d={d}")
        assert_close(y, ry, tol["y"], what=f"y d={d}")
        assert_close(dx, rdx, tol["dx"], what=f"dx d={d}")
        assert_close(dw[:d], rdw, tol["dw"], what=f"dw d={d}")
        assert_close(db[:d], rdb, tol["db"], what=f"db d={d}")


def test_empty_batch_writes_zero_parameter_gradients(isa):
    x = np.empty((0, 6), np.float32)
    mean, rstd = _stats(0)
    y = _core.layernorm_forward(x, None, None, mean, rstd)
    assert y.shape == (0, 6)
    dw, db = np.full(6, 5.0, np.float32), np.full(6, 5.0, np.float32)
    dx = _core.layernorm_backward(x, x, None, mean, rstd, dw, db)
    assert dx.shape == (0, 6)
    np.testing.assert_array_equal(dw, 0.0)
    np.testing.assert_array_equal(db, 0.0)
    _core.layernorm_backward(x, x, None, mean, rstd, dw, db, accumulate=True)
    np.testing.assert_array_equal(dw, 0.0)


def test_accumulate_and_in_place_grad_input(isa, rng):
    n, d = 9, 37
    x, g, w = _f32(rng, n, d), _f32(rng, n, d), _f32(rng, d, shift=1.0)
    mean, rstd = _stats(n)
    _core.layernorm_forward(x, w, None, mean, rstd)
    dw1, db1 = np.empty(d, np.float32), np.empty(d, np.float32)
    dx = _core.layernorm_backward(g, x, w, mean, rstd, dw1, db1)
    dw2, db2 = dw1.copy(), np.full(d, 3.0, np.float32)
    _core.layernorm_backward(g, x, w, mean, rstd, dw2, db2, accumulate=True,
                             accumulate_bias=False, compute_grad_input=False)
    np.testing.assert_array_equal(dw2, (dw1 + dw1).astype(np.float32))  # w + w is exact
    np.testing.assert_array_equal(db2, db1)  # written, not accumulated
    # grad_input over grad_output, then over the input itself: the same bits
    g2, x2 = g.copy(), x.copy()
    out = _core.layernorm_backward(g2, x, w, mean, rstd, None, None, grad_input=g2)
    assert out is g2 or np.shares_memory(out, g2)
    np.testing.assert_array_equal(g2, dx)
    _core.layernorm_backward(g, x2, w, mean, rstd, None, None, grad_input=x2)
    np.testing.assert_array_equal(x2, dx)


def test_non_finite_rows_are_nan_and_stay_in_their_row(isa, rng):
    """A row holding +-inf or NaN has an undefined mean (inf - inf): NaN throughout, as the
    mathematics says; the other rows are unaffected (the same bits as without it)."""
    n, d = 4, 19
    x = _f32(rng, n, d)
    mean, rstd = _stats(n)
    clean = _core.layernorm_forward(x, None, None, mean, rstd)
    for bad in (np.inf, -np.inf, np.nan):
        xb = x.copy()
        xb[1, 7] = bad
        y = _core.layernorm_forward(xb, None, None, mean, rstd)
        assert np.isnan(y[1]).all(), f"{bad}: row 1 not NaN"
        np.testing.assert_array_equal(np.delete(y, 1, 0), np.delete(clean, 1, 0))


def test_constant_row_gives_bias_and_zero_input_gradient(isa):
    """var = 0: xhat = 0 exactly, y = bias, and dx = rstd * (g - mean(g)) with rstd = 1/sqrt(eps)."""
    d = 10
    x = np.full((2, d), 3.25, np.float32)
    b = np.arange(d, dtype=np.float32)
    mean, rstd = _stats(2)
    y = _core.layernorm_forward(x, np.ones(d, np.float32), b, mean, rstd, eps=0.25)
    np.testing.assert_array_equal(y, np.broadcast_to(b, (2, d)))
    np.testing.assert_array_equal(mean, 3.25)
    np.testing.assert_array_equal(rstd, 2.0)
    g = np.ones((2, d), np.float32)
    dx = _core.layernorm_backward(g, x, None, mean, rstd, None, None)
    np.testing.assert_array_equal(dx, 0.0)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_count_invariance(rng, threads):
    """Rows and column tiles split among threads: bitwise the single-thread results, on every
    path the machine supports."""
    n, d = 300, 1000  # above the parallel thresholds
    x, g, w, b = _f32(rng, n, d), _f32(rng, n, d), _f32(rng, d), _f32(rng, d)
    before = sg.get_isa()
    try:
        for isa in sg.cpu_info()["isa_supported"]:
            sg.set_isa(isa)
            got = []
            for t in (1, threads):
                with num_threads(t):
                    mean, rstd = _stats(n)
                    y = _core.layernorm_forward(x, w, b, mean, rstd)
                    dw, db = np.empty(d, np.float32), np.empty(d, np.float32)
                    dx = _core.layernorm_backward(g, x, w, mean, rstd, dw, db)
                    got.append((y, mean, rstd, dx, dw, db))
            for a, c in zip(*got, strict=True):
                np.testing.assert_array_equal(a, c, err_msg=f"isa={isa} threads={threads}")
    finally:
        sg.set_isa(before)


# -- bad input ------------------------------------------------------------------------------

def _trained(rng: np.random.Generator) -> tuple[nn.LayerNorm, np.ndarray]:
    m = nn.LayerNorm((3, 4))
    m.weight.data[...] = _f32(rng, 3, 4)
    x = _f32(rng, 2, 3, 4)
    m(x)
    m.backward(np.ones(x.shape, np.float32))
    return m, x


def _snapshot(m: nn.LayerNorm) -> list[np.ndarray]:
    return [m.weight.data.copy(), m.bias.data.copy(), m.weight.grad.copy(), m.bias.grad.copy()]


@pytest.mark.parametrize("bad,err,msg", [
    (np.zeros((2, 4, 3), np.float32), ValueError,
     r"LayerNorm.*Given normalized_shape=\[3, 4\], expected input with shape \[\*, 3, 4\], "
     r"but got input of size\[2, 4, 3\]"),
    (np.zeros((4,), np.float32), ValueError, r"normalized_shape=\[3, 4\].*size\[4\]"),
    (np.zeros((2, 3, 4), np.float64), TypeError, r"LayerNorm.*layernorm_forward.*input.*float32"),
    ([[1.0]], TypeError, r"LayerNorm.*input"),
])
def test_bad_input_raises_and_changes_nothing(rng, bad, err, msg):
    m, _ = _trained(rng)
    before = _snapshot(m)
    with pytest.raises(err, match=msg):
        m(bad)
    for a, c in zip(before, _snapshot(m), strict=True):
        np.testing.assert_array_equal(a, c)


def test_bad_grad_output_raises_and_changes_nothing(rng):
    m, x = _trained(rng)
    m(x)
    before = _snapshot(m)
    with pytest.raises(ValueError, match=r"LayerNorm.*grad_output must have the output's shape"):
        m.backward(np.ones((2, 12), np.float32))
    with pytest.raises(TypeError, match=r"LayerNorm.*grad_output.*float32"):
        m.backward(np.ones(x.shape, np.float64))
    for a, c in zip(before, _snapshot(m), strict=True):
        np.testing.assert_array_equal(a, c)
    m.backward(np.ones(x.shape, np.float32))  # the pending backward is still there


def test_binding_checks_leave_outputs_untouched(rng):
    n, d = 3, 5
    x, g, w = _f32(rng, n, d), _f32(rng, n, d), _f32(rng, d)
    mean, rstd = _stats(n)
    _core.layernorm_forward(x, w, None, mean, rstd)
    dw, db, dx = np.full(d, 9.0, np.float32), np.full(d, 9.0, np.float32), np.full((n, d), 9.0, np.float32)
    cases = [
        (lambda: _core.layernorm_forward(x, w[:4], None, mean, rstd), ValueError, "weight"),
        (lambda: _core.layernorm_forward(x, None, None, mean[:2], rstd), ValueError, "save_mean"),
        (lambda: _core.layernorm_forward(x, None, None, mean, mean), ValueError, "save_rstd"),
        (lambda: _core.layernorm_forward(x, None, None, mean, rstd, eps=-1.0), ValueError, "eps"),
        (lambda: _core.layernorm_forward(x, None, None, mean, rstd, out=x), ValueError, "out"),
        (lambda: _core.layernorm_forward(x.reshape(-1), None, None, mean, rstd), ValueError,
         r"input must have shape \(rows, features\)"),
        (lambda: _core.layernorm_backward(g[:2], x, w, mean, rstd, dw, db, grad_input=dx),
         ValueError, "grad_output must have the input's shape"),
        (lambda: _core.layernorm_backward(g, x, w, mean, rstd, dw[:4], db, grad_input=dx),
         ValueError, "grad_weight"),
        (lambda: _core.layernorm_backward(g, x, w, mean, rstd, dw, dw, grad_input=dx),
         ValueError, "grad_bias"),
        (lambda: _core.layernorm_backward(g, x, w, mean, rstd, dw, db, grad_input=g[:, :]
                                          .reshape(-1)[1:].reshape(1, -1)[:, :n * d - 1]),
         ValueError, "grad_input"),
        (lambda: _core.layernorm_backward(g, x, w, mean, rstd, dw, db,
                                          grad_input=np.zeros((n, d), np.float64)),
         TypeError, "grad_input"),
    ]
    for i, (call, err, msg) in enumerate(cases):
        mean_b, rstd_b = mean.copy(), rstd.copy()
        with pytest.raises(err, match=msg):
            call()
        np.testing.assert_array_equal(mean, mean_b, err_msg=f"case {i}")
        np.testing.assert_array_equal(rstd, rstd_b, err_msg=f"case {i}")
        for a in (dw, db, dx):
            np.testing.assert_array_equal(a, 9.0, err_msg=f"case {i}")


@pytest.mark.parametrize("args,err,msg", [
    ((0,), ValueError, "normalized_shape"), (((),), ValueError, "normalized_shape"),
    (((3, -1),), ValueError, "normalized_shape"), (("3",), TypeError, "normalized_shape"),
    ((True,), TypeError, "normalized_shape"), (((2, 1.5),), TypeError, "normalized_shape"),
    ((None,), TypeError, "normalized_shape"), ((4, -1e-3), ValueError, "eps"),
    ((4, "x"), TypeError, "eps"),
])
def test_constructor_checks(args, err, msg):
    with pytest.raises(err, match=f"LayerNorm: {msg}"):
        nn.LayerNorm(*args)


def test_repr_shapes_and_memory():
    m = nn.LayerNorm([2, 3], eps=1e-3, bias=False)
    assert m.normalized_shape == (2, 3)
    assert repr(torch.nn.LayerNorm([2, 3], eps=1e-3, bias=False)) == repr(m)
    assert m.output_shape((7, 2, 3)) == (7, 2, 3)
    assert m.memory((7, 2, 3)) == (4 * 42 + 8 * 7, 4 * 42)
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.ReLU())
    s = model.summary(5, file=None)
    assert s["layers"][1]["output_shape"] == (5, 6)
    assert s["layers"][1]["params"] == 12


# -- inside a model ------------------------------------------------------------------------

def test_sequential_plan_gives_the_standalone_results(isa, rng):
    """In a Sequential its dL/dx may go over its (dead) input and is left out when it is the
    first layer; the results are those of the same layers called one by one, bit for bit."""
    x, g = _f32(rng, 6, 8), _f32(rng, 6, 4)
    model = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 10), nn.LayerNorm(10), nn.Tanh(),
                          nn.Linear(10, 4))
    alone = copy.deepcopy(model)
    plan = {lp.index: lp for lp in model.plan()}
    assert plan[2].donate_input  # over Linear's own output, which nothing else reads
    model.zero_grad()
    y = model(x)
    dx = model.backward(g)
    h = x
    for layer in alone:
        h = layer(h)
    np.testing.assert_array_equal(h, y)
    gg = g
    for layer in reversed(list(alone)):
        layer.zero_grad()
        gg = layer.backward(gg)
    if dx is not None:
        np.testing.assert_array_equal(dx, gg)
    for (k, p), (k2, q) in zip(model.named_parameters(), alone.named_parameters(), strict=True):
        assert k == k2
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=k)


def test_trained_by_fit_like_torch(rng):
    """Two epochs of SGD with momentum through sg.fit (shuffle off), against torch's loop on
    the same data: the final parameters agree to float32 rounding of the trajectory."""
    x = _f32(rng, 48, 6)
    y = _f32(rng, 48, 3)
    model = nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3))
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.LayerNorm(16),
                                 torch.nn.GELU(), torch.nn.Linear(16, 3))
    sd = model.state_dict()
    sd["1.weight"] = _f32(rng, 16, shift=1.0)
    sd["1.bias"] = _f32(rng, 16, scale=0.1)
    model.load_state_dict(sd)
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
    opt = sg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9)
    sg.fit(model, nn.MSELoss(), opt, x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for _ in range(2):
        for i in range(0, 48, 16):
            topt.zero_grad()
            loss = torch.nn.functional.mse_loss(tmodel(torch.from_numpy(x[i:i + 16])),
                                                torch.from_numpy(y[i:i + 16]))
            loss.backward()
            topt.step()
    moved = False
    for k, v in model.state_dict().items():
        tv = tmodel.state_dict()[k].numpy()
        assert_close(v, tv, 2e-5 * (1 + np.abs(tv)), what=f"{k} after fit")
        moved |= not np.allclose(v, sd[k], atol=1e-3)
    assert moved


def test_after_a_conv_it_sees_torch_layout(rng):
    """Not channels-last: a conv run before it converts its output back to (N, C, H, W), so
    LayerNorm([C, H, W]) normalises what torch's would, as the same layers called one by one."""
    x = _f32(rng, 2, 3, 5, 5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LayerNorm([4, 5, 5]))
    alone = copy.deepcopy(model)
    assert model.plan()[2].layout_in == FIRST and not model.plan()[2].takes_layout
    y = model(x)
    h = x
    for layer in alone:
        h = layer(h)
    assert_close(y, h, 1e-4, what="y")  # the conv's channels-last GEMM may round otherwise
    g = _f32(rng, *y.shape)
    model.zero_grad()
    alone.zero_grad()
    model.backward(g)
    for layer in reversed(list(alone)):
        g = layer.backward(g)
    for (k, p), (_, q) in zip(model.named_parameters(), alone.named_parameters(), strict=True):
        assert_close(p.grad, q.grad, 1e-4 * (1 + np.abs(q.grad)), what=k)


def test_layer_gradients_write_then_accumulate(rng):
    """After zero_grad the first backward writes the parameter gradients (whatever the buffer
    held), later ones add to them, as torch's .grad does."""
    m = nn.LayerNorm(12)
    m.weight.data[...] = _f32(rng, 12)
    x, g = _f32(rng, 4, 12), _f32(rng, 4, 12)
    m.weight.grad_buffer[...] = 99.0
    m.bias.grad_buffer[...] = 99.0
    m.zero_grad()
    m(x)
    m.backward(g)
    w1, b1 = m.weight.grad.copy(), m.bias.grad.copy()
    assert np.abs(w1).max() < 50 and np.abs(b1).max() < 50
    m(x)
    m.backward(g)
    # exact: 4 rows are one float block of the column sums (colreduce_impl.h), so the second
    # sum adds the very same float to it
    np.testing.assert_array_equal(m.weight.grad, w1 + w1)
    np.testing.assert_array_equal(m.bias.grad, b1 + b1)
