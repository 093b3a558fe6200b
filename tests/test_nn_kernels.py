"""Layer kernels (sg._core linear/batchnorm/add/dropout/mse) on every ISA path against float64
numpy references, plus thread-count and ISA independence of the deterministic reductions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, gemm_tolerance, num_threads
from reference_net import ReferenceNet
from roundoff import Noisy

from steadygrad import _core, nn

# batch x in x out around the 64-column tile and the 128-row block of the reductions
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 64, 64), (129, 33, 65), (257, 130, 200)]


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _gemm_tol(a: np.ndarray, b: np.ndarray, extra: np.ndarray | float = 0.0) -> np.ndarray:
    """The GEMM tests' bound for op(a) @ op(b) (+ extra terms): 32 eps times the summed
    magnitudes |a| |b| (+ |extra|), whatever the cancellation (conftest.gemm_tolerance)."""
    k = a.shape[1]
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)) + np.abs(extra)
    return gemm_tolerance(k, mag / np.sqrt(max(k, 1))) + 1e-30


@pytest.mark.parametrize("batch,inf,outf", SHAPES, ids=lambda v: str(v))
def test_linear_forward_backward_match_float64(isa: str, rng: np.random.Generator, batch: int, inf: int, outf: int) -> None:
    x, w, b = _f32(rng, batch, inf), _f32(rng, outf, inf), _f32(rng, outf)
    dy = _f32(rng, batch, outf)
    xd, wd, dyd = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    ones = np.ones((1, batch), np.float32)  # db = 1^T dy: a sum of batch terms
    y = _core.linear_forward(x, w, b)
    assert_close(y, xd @ wd.T + b, _gemm_tol(x, w.T, b))
    yr = _core.linear_forward(x, w, b, activation="relu")
    assert_close(yr, np.maximum(xd @ wd.T + b, 0), _gemm_tol(x, w.T, b))
    dw = np.full_like(w, np.nan)  # beta = 0 must never read the output
    db = np.full_like(b, np.nan)
    dx = _core.linear_backward(dy, x, w, dw, db, accumulate=False)
    assert_close(dx, dyd @ wd, _gemm_tol(dy, w))
    assert_close(dw, dyd.T @ xd, _gemm_tol(dy.T, x))
    assert_close(db, dyd.sum(0), _gemm_tol(ones, dy)[0])
    _core.linear_backward(dy, x, w, dw, db, accumulate=True, compute_grad_input=False)
    # twice the magnitudes: the first result, the second, and the rounding of their sum
    assert_close(dw, 2 * dyd.T @ xd, 2 * _gemm_tol(dy.T, x))
    assert_close(db, 2 * dyd.sum(0), 2 * _gemm_tol(ones, dy)[0])
    # grad_input written over the input itself: the weight gradient read it first
    dw1, db1 = np.empty_like(w), np.empty_like(b)
    dx1 = _core.linear_backward(dy, x, w, dw1, db1)
    dw2, db2, xin = np.empty_like(w), np.empty_like(b), x.copy()
    dx2 = _core.linear_backward(dy, xin, w, dw2, db2, grad_input=xin)
    assert dx2 is xin
    for a, b_ in ((dx2, dx1), (dw2, dw1), (db2, db1)):
        np.testing.assert_array_equal(a, b_)


def test_linear_backward_grad_input_may_be_the_input_only_exactly() -> None:
    rng = np.random.default_rng(3)
    w, dy = _f32(rng, 4, 6), _f32(rng, 8, 4)
    buf = np.zeros((9, 6), np.float32)
    before = buf.copy()
    dw = np.zeros((4, 6), np.float32)
    with pytest.raises(ValueError, match="linear_backward: grad_input must not overlap input"):
        _core.linear_backward(dy, buf[:8], w, dw, None, grad_input=buf[1:])
    np.testing.assert_array_equal(buf, before)
    np.testing.assert_array_equal(dw, 0)


def _bn_reference(x: np.ndarray, g: np.ndarray, b: np.ndarray, rm: np.ndarray, rv: np.ndarray,
                  dy: np.ndarray, train: bool, eps: float, momentum: float = 0.1) -> tuple:
    """torch's BatchNorm1d on these arrays in float64, with float32 rounding bounds
    (reference_net, roundoff): output, input gradient, dgamma, dbeta, running statistics."""
    bn = nn.BatchNorm1d(x.shape[1], eps=eps, momentum=momentum)
    bn.weight.data, bn.bias.data = g, b
    bn.running_mean[...], bn.running_var[...] = rm, rv
    bn.train(train)
    ref = ReferenceNet(bn)
    y = ref.forward(x)
    dx, grads = ref.backward(dy)
    return y, dx, grads["weight"], grads["bias"], ref.buffers()


def _close(got: np.ndarray, ref: Noisy, what: str) -> None:
    assert_close(got, ref.v, ref.bound(), what=what)


@pytest.mark.parametrize("n,c", [(2, 1), (5, 3), (130, 64), (300, 65), (64, 200)])
def test_batchnorm_train_forward_backward_match_float64(isa: str, rng: np.random.Generator, n: int, c: int) -> None:
    x = (_f32(rng, n, c) * 3 + 5).astype(np.float32)
    g, b, dy = _f32(rng, c), _f32(rng, c), _f32(rng, n, c)
    rm, rv = _f32(rng, c), np.abs(_f32(rng, c)) + 0.5
    ry, rdx, rdg, rdb, rstats = _bn_reference(x, g, b, rm, rv, dy, train=True, eps=1e-5)
    nbt = np.zeros((), np.int64)
    sm, si = np.empty(c, np.float32), np.empty(c, np.float32)
    ctx = _core.BatchNormContext(sm, si, batch_stats=True)
    y = _core.batchnorm_forward(x, g, b, rm, rv, nbt, ctx, momentum=0.1, eps=1e-5)
    _close(y, ry, "output")
    _close(rm, rstats["running_mean"], "running_mean")
    _close(rv, rstats["running_var"], "running_var (unbiased batch variance)")
    assert int(nbt) == 1
    dg, db = np.full(c, np.nan, np.float32), np.full(c, np.nan, np.float32)
    dx = _core.batchnorm_backward(dy, g, b, ctx, dg, db)
    _close(dx, rdx, "grad_input")
    _close(dg, rdg, "dgamma")
    _close(db, rdb, "dbeta")


def test_batchnorm_eval_uses_running_stats(isa: str, rng: np.random.Generator) -> None:
    n, c = 33, 70
    x, g, b, dy = _f32(rng, n, c), _f32(rng, c), _f32(rng, c), _f32(rng, n, c)
    rm, rv = _f32(rng, c), np.abs(_f32(rng, c)) + 0.5
    ry, rdx, rdg, rdb, _ = _bn_reference(x, g, b, rm, rv, dy, train=False, eps=1e-3)
    sm, si = np.empty(c, np.float32), np.empty(c, np.float32)
    ctx = _core.BatchNormContext(sm, si, batch_stats=False)
    y = _core.batchnorm_forward(x, g, b, rm, rv, None, ctx, eps=1e-3)
    _close(y, ry, "eval output")
    dg, db = np.empty(c, np.float32), np.empty(c, np.float32)
    dx = _core.batchnorm_backward(dy, g, b, ctx, dg, db)
    _close(dx, rdx, "eval grad_input")
    _close(dg, rdg, "eval dgamma")
    _close(db, rdb, "eval dbeta")


def test_reductions_bitwise_identical_for_any_thread_count(isa: str, rng: np.random.Generator) -> None:
    # (Across ISA paths they agree to rounding only: GCC contracts mul+add into FMA in the
    # -mfma translation units even with -std=c++17, so the sum of squares differs in the last bit.)
    n, c = 1000, 300
    x, g, b, dy = _f32(rng, n, c), _f32(rng, c), _f32(rng, c), _f32(rng, n, c)
    results = []
    if True:
        for t in (1, 2, 3):
            with num_threads(t):
                sm, si = np.empty(c, np.float32), np.empty(c, np.float32)
                rm, rv, nbt = np.zeros(c, np.float32), np.ones(c, np.float32), np.zeros((), np.int64)
                ctx = _core.BatchNormContext(sm, si, batch_stats=True)
                _core.batchnorm_forward(x, g, b, rm, rv, nbt, ctx)
                dg, dbb, dbl = (np.empty(c, np.float32) for _ in range(3))
                _core.batchnorm_backward(dy, g, b, ctx, dg, dbb)
                _core.linear_backward(dy, x, np.zeros((c, c), np.float32), np.empty((c, c), np.float32),
                                      dbl, compute_grad_input=False)
                loss, _ = _core.mse_loss(x, dy)
                drop = _core.dropout(x, 0.3, 42)
                # the fused BatchNorm + ReLU path (masked dy in every reduction)
                ctx = _core.BatchNormContext(sm, si, batch_stats=True, activation="relu")
                yr = _core.batchnorm_forward(x, g, b, None, None, None, ctx)
                ctx.output = yr
                dgr, dbr = np.empty(c, np.float32), np.empty(c, np.float32)
                dxr = _core.batchnorm_backward(dy, g, b, ctx, dgr, dbr)
                # the mask recomputed from the input instead of the kept output: the same bits
                ctx.output = None
                dgm, dbm = np.empty(c, np.float32), np.empty(c, np.float32)
                dxm = _core.batchnorm_backward(dy, g, b, ctx, dgm, dbm)
                for u, v in ((dxm, dxr), (dgm, dgr), (dbm, dbr)):
                    np.testing.assert_array_equal(u, v)
                results.append((sm, si, rm, rv, dg, dbb, dbl, loss, drop, yr, dgr, dbr, dxr))
    for r in results[1:]:
        for a, b_ in zip(results[0], r, strict=True):
            assert np.array_equal(a, b_), "reduction differs between thread counts"


def test_add_and_mse(isa: str, rng: np.random.Generator) -> None:
    for n in (0, 1, 7, 8, 17, 8192 * 3 + 5):
        a, b = _f32(rng, n), _f32(rng, n)
        np.testing.assert_array_equal(_core.add(a, b), a + b)
        loss, grad = _core.mse_loss(a, b, reduction="sum")
        d = (a - b).astype(np.float64)  # the kernel forms the difference in float32
        assert loss == pytest.approx((d * d).sum(), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(grad, 2 * d, rtol=1e-6, atol=1e-7)
        if n:
            loss, grad = _core.mse_loss(a, b)
            assert loss == pytest.approx((d * d).mean(), rel=1e-12)
            np.testing.assert_allclose(grad, 2 * d / n, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_mask_rate_scale_and_backward(isa: str, rng: np.random.Generator, p: float) -> None:
    x = _f32(rng, 200, 300) + 10.0  # no zeros in x, so zeros in y are the mask
    y = _core.dropout(x, p, 7)
    kept = y != 0
    assert abs(kept.mean() - (1 - p)) < 0.01
    if p < 1:
        np.testing.assert_allclose(y[kept], x[kept] * np.float32(1 / (1 - p)), rtol=1e-6)
    dy = _f32(rng, 200, 300)
    dx = _core.dropout(dy, p, 7)
    np.testing.assert_array_equal(dx != 0, kept & (dy != 0))
    assert not np.array_equal(_core.dropout(x, 0.5, 8) != 0, _core.dropout(x, 0.5, 7) != 0)


@pytest.mark.parametrize("use_batch_stats", [True, False])
def test_batchnorm_fused_relu_is_bitwise_relu_of_batchnorm(isa: str, rng: np.random.Generator,
                                                           use_batch_stats: bool) -> None:
    # Exactly torch's relu after batchnorm, NaN included: forward relu(NaN) = NaN; backward
    # (threshold_backward) gives 0 where the output is <= 0 even for dy = NaN, and passes dy
    # where the output is > 0 or NaN.
    n, c = 37, 70
    x, g, b, dy = _f32(rng, n, c), _f32(rng, c), _f32(rng, c), _f32(rng, n, c)
    x[3, 5] = np.nan  # channel 5: all NaN in train, one NaN in eval
    g[7] = 0.0  # channel 7: y = relu(beta) exactly
    b[7] = -1.0
    rmv = _f32(rng, c), np.abs(_f32(rng, c)) + 0.5
    outs = []
    for act in ("none", "relu"):
        rm, rv = rmv[0].copy(), rmv[1].copy()
        ctx = _core.BatchNormContext(np.empty(c, np.float32), np.empty(c, np.float32),
                                     batch_stats=use_batch_stats, activation=act)
        y = _core.batchnorm_forward(x, g, b, rm, rv, np.zeros((), np.int64), ctx)
        outs.append((y, rm, rv, ctx.save_mean, ctx.save_invstd))
    (z, *stats), (y, *stats_r) = outs
    for a, b_ in zip(stats, stats_r, strict=True):
        np.testing.assert_array_equal(a, b_)
    np.testing.assert_array_equal(y, _core.relu(z))
    assert np.isnan(y[3, 5]) and (y[:, 7] == 0).all() and (y == 0).any()
    dy[y == 0] = np.where(rng.random(int((y == 0).sum())) < 0.2, np.nan, 1.0)  # NaN dy where masked
    grads = []
    # relu_backward then plain BN; the mask from the kept output (no bias needed); the mask
    # recomputed from the input (no output kept); and that, in place over grad_output and over
    # the input. Each backward reads a context its own forward (on a copy of x) filled.
    for mode in ("unfused", "output", "recompute", "over_dy", "over_x"):
        dg, db = np.empty(c, np.float32), np.empty(c, np.float32)
        d = _core.relu_backward(dy, z) if mode == "unfused" else dy.copy()
        xin = x.copy()
        ctx = _core.BatchNormContext(np.empty(c, np.float32), np.empty(c, np.float32),
                                     batch_stats=use_batch_stats,
                                     activation="none" if mode == "unfused" else "relu")
        _core.batchnorm_forward(xin, g, b, rmv[0].copy(), rmv[1].copy(), None, ctx)
        np.testing.assert_array_equal(ctx.save_mean, stats[2])
        np.testing.assert_array_equal(ctx.save_invstd, stats[3])
        if mode == "output":
            ctx.output = y
        kw = {"over_dy": {"grad_input": d}, "over_x": {"grad_input": xin}}.get(mode, {})
        dx = _core.batchnorm_backward(d, g, None if mode == "output" else b, ctx, dg, db, **kw)
        assert dx is kw.get("grad_input", dx)
        grads.append((dx, dg, db))
    for other in grads[1:]:
        for a, b_ in zip(grads[0], other, strict=True):
            np.testing.assert_array_equal(a, b_)
    assert np.isfinite(grads[1][0][:, 7]).all() and not np.isnan(grads[1][2][7])  # masked NaN dy


def test_batchnorm_fused_relu_argument_errors(rng: np.random.Generator) -> None:
    n, c = 4, 3
    x, g, dy = _f32(rng, n, c), _f32(rng, c), _f32(rng, n, c)
    dg, db = np.empty(c, np.float32), np.empty(c, np.float32)

    def context(activation: str = "relu", forward_on: np.ndarray | None = x) -> _core.BatchNormContext:
        ctx = _core.BatchNormContext(np.zeros(c, np.float32), np.ones(c, np.float32),
                                     batch_stats=True, activation=activation)
        if forward_on is not None:
            _core.batchnorm_forward(forward_on, g, None, None, None, None, ctx)
        return ctx

    with pytest.raises(ValueError, match=r"batchnorm_backward: bias must have shape \(3,\)"):
        _core.batchnorm_backward(dy, g, np.zeros(4, np.float32), context(), dg, db)
    ctx = context()
    ctx.output = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"batchnorm_backward: ctx.output must have .*got \(4, 2\)"):
        _core.batchnorm_backward(dy, g, None, ctx, dg, db)
    ctx = context("none")
    ctx.output = dy
    with pytest.raises(ValueError, match=r"ctx\.output is only used with activation='relu'"):
        _core.batchnorm_backward(dy, g, None, ctx, dg, db)
    with pytest.raises(ValueError, match="BatchNormContext: activation must be 'none' or 'relu'"):
        context("gelu", None)
    with pytest.raises(ValueError, match="batchnorm_backward: ctx has no input: run "
                                         "batchnorm_forward with it first"):
        _core.batchnorm_backward(dy, g, None, context(forward_on=None), dg, db)
    y = np.zeros((n + 1, c), np.float32)
    ctx = context()
    ctx.output = y[:n]
    with pytest.raises(ValueError, match=r"batchnorm_backward: grad_input must not overlap ctx.output"):
        _core.batchnorm_backward(dy, g, None, ctx, dg, db, grad_input=y[1:])
    xx = np.zeros((n + 1, c), np.float32)
    with pytest.raises(ValueError, match=r"batchnorm_backward: grad_input must not overlap ctx.input"):
        _core.batchnorm_backward(dy, g, None, context("none", xx[:n]), dg, db, grad_input=xx[1:])
