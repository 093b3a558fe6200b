"""Every loss of nn/loss.py against float64 references and torch 2.13.0, on every ISA path:
each reduction, class weights, ignore_index (all ignored: nan for 'mean'), soft targets,
label smoothing, pos_weight, weights broadcast; gradients against central differences of the
float64 loss; BCEWithLogits at logits of +-1e4; 'none' with an upstream gradient; bad input
(the message, nothing changed, the pending gradient kept); 1 vs 2 threads bitwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads

from steadygrad import nn

TIME_BUDGET_S = 40
EPS32 = float(np.finfo(np.float32).eps)
REDUCTIONS = ["none", "mean", "sum"]


# -- float64 references: (per-item losses, d per-item / d input rows, mean denominator) -------

def _logsoftmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


def ce_ref(x, y, w=None, ignore_index=-100, eps=0.0):
    x = x.astype(np.float64)
    B, C = x.shape
    wv = np.ones(C) if w is None else w.astype(np.float64)
    lp = _logsoftmax(x)
    p = np.exp(lp)
    if y.dtype.kind == "f":  # probabilities
        q = wv * (y.astype(np.float64) * (1 - eps) + eps / C)
        return -(q * lp).sum(1), q.sum(1, keepdims=True) * p - q, float(B)
    valid = y != ignore_index
    yc = np.where(valid, y, 0)
    wy = wv[yc] * valid
    onehot = np.eye(C)[yc]
    rows = -(1 - eps) * wy * lp[np.arange(B), yc] - eps / C * (lp * wv).sum(1) * valid
    g = ((1 - eps) * wy[:, None] * (p - onehot) + eps / C * (wv.sum() * p - wv)) * valid[:, None]
    return rows, g, wy.sum()


def nll_ref(x, y, w=None, ignore_index=-100):
    x = x.astype(np.float64)
    B, C = x.shape
    wv = np.ones(C) if w is None else w.astype(np.float64)
    valid = y != ignore_index
    yc = np.where(valid, y, 0)
    wy = wv[yc] * valid
    return -wy * x[np.arange(B), yc], -wy[:, None] * np.eye(C)[yc], wy.sum()


def elem_ref(kind, x, t, w=None, pw=None, param=1.0):
    x, t = x.astype(np.float64), t.astype(np.float64)
    d = x - t
    if kind == "mse":
        li, g = d * d, 2 * d
    elif kind == "l1" or (kind == "smooth_l1" and param == 0):
        li, g = np.abs(d), np.sign(d)
    elif kind == "smooth_l1":
        li = np.where(np.abs(d) < param, 0.5 * d * d / param, np.abs(d) - 0.5 * param)
        g = np.clip(d / param, -1, 1)
    elif kind == "huber":
        li = np.where(np.abs(d) < param, 0.5 * d * d, param * (np.abs(d) - 0.5 * param))
        g = np.clip(d, -param, param)
    elif kind == "bce":
        with np.errstate(divide="ignore"):
            li = -(t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
        g = (x - t) / np.maximum(x * (1 - x), 1e-12)
    else:  # bce_logits
        pwv = np.ones_like(x) if pw is None else np.broadcast_to(pw.astype(np.float64), x.shape)
        lw = 1 + (pwv - 1) * t
        li = (1 - t) * x + lw * (np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x))))
        g = lw * np.exp(-np.logaddexp(0.0, -x)) - pwv * t  # lw sigmoid(x) - pw y, no overflow
    if w is not None:
        wb = np.broadcast_to(w.astype(np.float64), x.shape)
        li, g = li * wb, g * wb
    return li, g, float(x.size)


def reduce_ref(rows, g, denom, reduction, upstream=None):
    """The reduced float64 loss and dL/dinput."""
    if reduction == "none":
        u = upstream.astype(np.float64)
        return rows, g * (u[:, None] if g.ndim == 2 and u.ndim == 1 else u)
    if reduction == "sum":
        return rows.sum(), g
    return rows.sum() / denom if denom else np.nan, g / denom if denom else np.zeros_like(g)


# -- the cases: (sg loss, torch loss, inputs, float64 reference) --------------------------------

Case = tuple[Callable[[str], Any], Callable[[str], Any], Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]], Callable[[np.ndarray, np.ndarray], tuple]]

B_, C_ = 13, 11
W_CLS = np.linspace(0.2, 2.0, C_).astype(np.float32)


def _logits(rng, scale=3.0, shape=(B_, C_)):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _labels(rng, ignore=None, dtype=np.int64):
    y = rng.integers(0, C_, B_).astype(dtype)
    if ignore is not None:
        y[::3] = ignore
    return y


def _probs(rng):
    t = rng.random((B_, C_)).astype(np.float32)
    return (t / t.sum(1, keepdims=True)).astype(np.float32)


def _tw(w):
    return None if w is None else torch.from_numpy(w)


def ce_case(w=None, ignore=None, eps=0.0, soft=False, dtype=np.int64) -> Case:
    ii = -100 if ignore is None else ignore
    return (lambda r: nn.CrossEntropyLoss(weight=w, ignore_index=ii, reduction=r, label_smoothing=eps),
            lambda r: torch.nn.CrossEntropyLoss(weight=_tw(w), ignore_index=ii, reduction=r, label_smoothing=eps),
            lambda rng: (_logits(rng), _probs(rng) if soft else _labels(rng, ignore, dtype)),
            lambda x, y: ce_ref(x, y, w, ii, eps))


def nll_case(w=None, ignore=None) -> Case:
    ii = -100 if ignore is None else ignore
    return (lambda r: nn.NLLLoss(weight=w, ignore_index=ii, reduction=r),
            lambda r: torch.nn.NLLLoss(weight=_tw(w), ignore_index=ii, reduction=r),
            lambda rng: (_logsoftmax(_logits(rng).astype(np.float64)).astype(np.float32), _labels(rng, ignore)),
            lambda x, y: nll_ref(x, y, w, ii))


SHAPE_E = (9, 37)  # 333 elements: whole vectors and a tail on every ISA


def _pair(rng, kind):
    x = (rng.standard_normal(SHAPE_E) * 2).astype(np.float32)
    t = (rng.standard_normal(SHAPE_E) * 2).astype(np.float32)
    if kind == "bce":
        x = rng.uniform(0, 1, SHAPE_E).astype(np.float32)
        x.flat[:3] = [0.0, 1.0, 1e-30]  # the clamped logs
        t = rng.uniform(0, 1, SHAPE_E).astype(np.float32)
        t.flat[:3] = [1.0, 0.0, 1.0]
    elif kind == "bce_logits":
        x = (rng.standard_normal(SHAPE_E) * 8).astype(np.float32)
        t = rng.uniform(0, 1, SHAPE_E).astype(np.float32)
        t[:, ::4] = rng.integers(0, 2, t[:, ::4].shape)
    else:
        x.flat[:4] = t.flat[:4]  # d = 0 exactly: L1's gradient 0
        x.flat[4:6] = t.flat[4:6] + np.float32([0.5, -0.25])
    return x, t


def elem_case(kind, w=None, pw=None, param=None) -> Case:
    def mk(r):
        if kind == "mse":
            return nn.MSELoss(reduction=r)
        if kind == "l1":
            return nn.L1Loss(reduction=r)
        if kind == "smooth_l1":
            return nn.SmoothL1Loss(reduction=r, beta=param)
        if kind == "huber":
            return nn.HuberLoss(reduction=r, delta=param)
        if kind == "bce":
            return nn.BCELoss(weight=w, reduction=r)
        return nn.BCEWithLogitsLoss(weight=w, reduction=r, pos_weight=pw)

    def mk_t(r):
        if kind == "mse":
            return torch.nn.MSELoss(reduction=r)
        if kind == "l1":
            return torch.nn.L1Loss(reduction=r)
        if kind == "smooth_l1":
            return torch.nn.SmoothL1Loss(reduction=r, beta=param)
        if kind == "huber":
            return torch.nn.HuberLoss(reduction=r, delta=param)
        if kind == "bce":
            return torch.nn.BCELoss(weight=_tw(w), reduction=r)
        return torch.nn.BCEWithLogitsLoss(weight=_tw(w), reduction=r, pos_weight=_tw(pw))

    return (mk, mk_t, lambda rng: _pair(rng, kind),
            lambda x, t: elem_ref(kind, x, t, w, pw, 1.0 if param is None else param))


W_ROW = np.linspace(0.0, 2.0, SHAPE_E[1]).astype(np.float32)  # broadcast over rows
W_FULL = np.random.default_rng(5).uniform(0, 2, SHAPE_E).astype(np.float32)
PW = np.linspace(0.5, 3.0, SHAPE_E[1]).astype(np.float32)

CASES: dict[str, Case] = {
    "ce": ce_case(), "ce_int32": ce_case(dtype=np.int32), "ce_w": ce_case(w=W_CLS),
    "ce_ignore": ce_case(ignore=-100), "ce_ignore3_w": ce_case(w=W_CLS, ignore=3),
    "ce_smooth": ce_case(eps=0.2), "ce_smooth_w_ignore": ce_case(w=W_CLS, ignore=-100, eps=0.15),
    "ce_soft": ce_case(soft=True), "ce_soft_w_smooth": ce_case(w=W_CLS, soft=True, eps=0.1),
    "nll": nll_case(), "nll_w_ignore": nll_case(w=W_CLS, ignore=-100),
    "mse": elem_case("mse"), "l1": elem_case("l1"),
    "smooth_l1": elem_case("smooth_l1", param=1.0), "smooth_l1_b0.3": elem_case("smooth_l1", param=0.3),
    "smooth_l1_b0": elem_case("smooth_l1", param=0.0),
    "huber": elem_case("huber", param=1.0), "huber_d2.5": elem_case("huber", param=2.5),
    "bce": elem_case("bce"), "bce_w": elem_case("bce", w=W_ROW),
    "bce_logits": elem_case("bce_logits"), "bce_logits_w": elem_case("bce_logits", w=W_FULL),
    "bce_logits_pw": elem_case("bce_logits", pw=PW),
    "bce_logits_w_pw": elem_case("bce_logits", w=W_ROW, pw=PW),
}


def _tols(name: str, x: np.ndarray, rows: np.ndarray, denom: float, reduction: str,
          up: np.ndarray | None):
    """Error bounds. Loss: each float32 item loss is within a few ulps of |its terms| (the class
    losses add a log-sum-exp over C terms: ~C ulps of |x|), the sums run in double. Gradient:
    a few ulps of its largest term (weights <= 2, pos_weight <= 3: |terms| <= 6), times the
    mean's 1/denominator and the upstream gradient, plus a few ulps relative."""
    terms = np.abs(rows) + (np.float64(C_) * 3.0 if name.startswith(("ce", "nll")) else 1e-30)
    if name.startswith("bce_logits"):  # (1-y) x + lw max(-x, 0) cancels: ulps of |x| (1 + lw)
        terms = terms + 4.0 * np.abs(x.astype(np.float64))
    item = 16 * EPS32 * terms
    scale = 1.0 / denom if reduction == "mean" and denom else 1.0
    umax = 1.0 if up is None else float(np.abs(up).max())
    gtol = 64 * EPS32 * 6 * scale * umax
    if reduction == "none":
        return item, gtol
    return item.sum() * scale, gtol


def _run(lf, x, y, reduction, upstream):
    loss = lf(x, y)
    grad = lf.backward(upstream) if reduction == "none" else lf.backward()
    return loss, grad.copy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", CASES)
def test_vs_float64_and_torch(isa, rng, name, reduction):
    mk, mk_t, inputs, ref = CASES[name]
    x, y = inputs(rng)
    x0, y0 = x.copy(), y.copy()
    rows, g, denom = ref(x, y)
    up = rng.standard_normal(rows.shape).astype(np.float32) if reduction == "none" else None
    loss, grad = _run(mk(reduction), x, y, reduction, up)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    want, want_g = reduce_ref(rows, g, denom, reduction, up)
    ltol, gtol = _tols(name, x, rows, denom, reduction, up)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == np.float32 and loss.shape == rows.shape
        assert_close(loss, want, ltol, what=f"{name} losses")
    else:
        assert isinstance(loss, float)
        assert abs(loss - want) <= ltol, f"{name} {reduction}: {loss!r} vs float64 {want!r}"
    assert grad.dtype == np.float32 and grad.shape == x.shape
    assert_close(grad, want_g, gtol, rtol=16 * EPS32, what=f"{name} {reduction} grad")

    # torch 2.13.0, the oracle of the semantics
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = torch.from_numpy(y.astype(np.int64) if y.dtype.kind == "i" else y.copy())
    lt = mk_t(reduction)(xt, yt)
    lt.backward(torch.from_numpy(up) if up is not None else None)
    tl, tg = lt.detach().numpy().astype(np.float64), xt.grad.numpy()
    if reduction == "none":
        assert_close(loss, tl, ltol * 2 + 4 * EPS32 * np.abs(tl), what=f"{name} losses vs torch")
    else:
        assert abs(loss - float(tl)) <= 2 * ltol + 4 * EPS32 * abs(float(tl)), (name, loss, float(tl))
    assert_close(grad, tg, 2 * gtol, rtol=32 * EPS32, what=f"{name} grad vs torch")


@pytest.mark.parametrize("name", ["ce_w", "ce_smooth_w_ignore", "ce_soft_w_smooth", "nll_w_ignore",
                                  "smooth_l1_b0.3", "huber_d2.5", "bce_w", "bce_logits_w_pw"])
def test_gradient_matches_float64_finite_differences(rng, name):
    """Central differences of the float64 'mean' loss at a few coordinates vs the float32
    gradient: the derivative itself, not only agreement with a formula."""
    mk, _, inputs, ref = CASES[name]
    x, y = inputs(rng)
    if name == "bce_w":
        x = np.clip(x, 0.05, 0.95).astype(np.float32)
    lf = mk("mean")
    lf(x, y)
    grad = lf.backward()

    def f(xx):
        rows, _, denom = ref(xx, y)
        return rows.sum() / denom

    x64 = x.astype(np.float64)
    h = 1e-6
    for idx in [tuple(rng.integers(0, s) for s in x.shape) for _ in range(6)]:
        if name.startswith(("smooth", "huber")):  # stay off the kink
            continue_kink = abs(float(x64[idx]) - float(y[idx])) - (0.3 if "0.3" in name else 2.5)
            if abs(continue_kink) < 1e-3:
                continue
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (f(xp) - f(xm)) / (2 * h)
        assert abs(grad[idx] - fd) <= 1e-6 + 64 * EPS32 * abs(fd), (name, idx, grad[idx], fd)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_of_1e4_is_finite_and_exact(isa, reduction):
    x = np.array([[1e4, -1e4, 1e4, -1e4, 20.0, -20.0, 0.0, 88.0, -88.0]] * 3, np.float32)
    t = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.25, 0.75]] * 3, np.float32)
    for pw in (None, np.float32([2.0] * 9)):
        lf = nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=pw)
        loss = lf(x, t)
        up = np.ones(x.shape, np.float32) if reduction == "none" else None
        grad = lf.backward(up)
        rows, g, n = elem_ref("bce_logits", x, t, pw=pw)
        want, want_g = reduce_ref(rows, g, n, reduction, up)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        # the +-1e4 terms are exact: 0 or 1e4 (times the weights)
        assert_close(np.asarray(loss), np.asarray(want), 8 * EPS32 * np.abs(want), what="1e4 loss")
        # lw sigmoid(x) - pw y cancels (x = 20, y = 1: 1 - 1 in float32): ulps of its terms
        pwmax = 1.0 if pw is None else 2.0
        gscale = 1.0 / x.size if reduction == "mean" else 1.0
        assert_close(grad, want_g, 8 * EPS32 * (1 + 2 * pwmax) * gscale, what="1e4 grad")
    # y = 1 at x = 20: the loss is log1p(e^-20) = 2.06e-9, not 0 (and not lost to rounding)
    r = nn.BCEWithLogitsLoss(reduction="none")(np.float32([[20.0, -20.0]]), np.float32([[1.0, 0.0]]))
    assert_close(r, np.full((1, 2), np.log1p(np.exp(-20.0))), 4 * EPS32 * 2.1e-9, what="tail")


@pytest.mark.parametrize("weighted", [False, True])
def test_all_targets_ignored_mean_is_nan_like_torch(isa, rng, weighted):
    x = _logits(rng)
    y = np.full(B_, -100, np.int64)
    w = W_CLS if weighted else None
    for mk, mk_t in ((nn.CrossEntropyLoss, torch.nn.CrossEntropyLoss), (nn.NLLLoss, torch.nn.NLLLoss)):
        for eps in ((0.0, 0.3) if mk is nn.CrossEntropyLoss else (None,)):
            kw = {} if eps is None else {"label_smoothing": eps}
            lf = mk(weight=w, **kw)
            loss = lf(x, y)
            grad = lf.backward()
            xt = torch.from_numpy(x.copy()).requires_grad_(True)
            lt = mk_t(weight=_tw(w), **kw)(xt, torch.from_numpy(y))
            lt.backward()
            assert np.isnan(loss) and np.isnan(lt.item())
            np.testing.assert_array_equal(grad, xt.grad.numpy())  # zeros
            assert mk(weight=w, reduction="sum", **kw)(x, y) == 0.0


def test_sum_of_zero_weights_is_nan_not_inf(rng):
    """Weight 0 on every target class: torch's weighted mean is 0/0."""
    x, y = _logits(rng), _labels(rng)
    w = np.ones(C_, np.float32)
    w[np.unique(y)] = 0.0
    assert np.isnan(nn.CrossEntropyLoss(weight=w)(x, y))
    assert np.isnan(torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(y),
                                                      weight=torch.from_numpy(w)).item())


def test_scalar_upstream_gradient_scales(rng):
    x, y = _logits(rng), _labels(rng)
    lf = nn.CrossEntropyLoss()
    lf(x, y)
    g1 = lf.backward().copy()
    lf(x, y)
    np.testing.assert_array_equal(lf.backward(2.0), g1 * np.float32(2.0))


def _big_case(rng: np.random.Generator, name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """Past the parallel thresholds: class losses B*C >= 2^15, elementwise 4 chunks of 8192."""
    B, C = 400, 110
    if name == "ce_w_ignore_smooth":
        y = rng.integers(0, C, B).astype(np.int64)
        y[::5] = -100
        w = rng.uniform(0, 2, C).astype(np.float32)
        return nn.CrossEntropyLoss(weight=w, label_smoothing=0.1), _logits(rng, shape=(B, C)), y
    if name == "ce_soft":
        t = rng.random((B, C)).astype(np.float32)
        return nn.CrossEntropyLoss(label_smoothing=0.1), _logits(rng, shape=(B, C)), t
    x = (rng.standard_normal((B, C)) * 3).astype(np.float32)
    t = rng.uniform(0, 1, (B, C)).astype(np.float32)
    if name == "bce_logits_w_pw":
        w = rng.uniform(0, 1, C).astype(np.float32)
        return nn.BCEWithLogitsLoss(weight=w, pos_weight=np.full(C, 2.0, np.float32)), x, t
    if name == "bce":
        return nn.BCELoss(), rng.uniform(0, 1, (B, C)).astype(np.float32), t
    return nn.HuberLoss(delta=0.5), x, t


@pytest.mark.parametrize("name", ["ce_w_ignore_smooth", "ce_soft", "bce_logits_w_pw", "bce", "huber"])
def test_thread_count_invariance(rng, name):
    """1 and 2 threads give the same bits (loss and gradient)."""
    lf, x, y = _big_case(rng, name)
    res = []
    for t in (1, 2):
        with num_threads(t):
            loss = lf(x, y)
            res.append((loss, lf.backward().copy()))
    assert np.float64(res[0][0]).tobytes() == np.float64(res[1][0]).tobytes()
    np.testing.assert_array_equal(res[0][1], res[1][1])


# -- bad input: the message names the loss and the argument, nothing changes -----------------

X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
Y = np.array([0, 2, 1, 2], np.int64)
P = np.full((4, 3), 0.5, np.float32)


@pytest.mark.parametrize("make,args,exc,msg", [
    (lambda: nn.CrossEntropyLoss(), (X, np.array([0, 3, 1, 2])), ValueError,
     r"^CrossEntropyLoss\(reduction='mean', label_smoothing=0.0\): .*labels\[1\] = 3 is out of range for 3 classes \(expected 0 <= label < 3\), and is not ignore_index=-100"),
    (lambda: nn.CrossEntropyLoss(ignore_index=5), (X, np.array([0, -100, 1, 2])), ValueError,
     r"labels\[1\] = -100 is out of range .*ignore_index=5"),
    (lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0]), (X, Y), ValueError, r"weight must have shape \(3,\)"),
    (lambda: nn.NLLLoss(), (X, np.array([0, 1, 1, 9], np.int32)), ValueError,
     r"^NLLLoss\(reduction='mean'\): .*labels\[3\] = 9 is out of range"),
    (lambda: nn.NLLLoss(), (X.astype(np.float64), Y), TypeError, r"input must have dtype float32"),
    (lambda: nn.CrossEntropyLoss(), (X, P[:, :2].copy()), ValueError,
     r"labels must have \(probabilities\) the logits' shape \(4, 3\), got \(4, 2\)"),
    (lambda: nn.CrossEntropyLoss(), (X, P.astype(np.float64)), TypeError,
     r"labels must have dtype int32 or int64, got float64 array of shape \(4, 3\) \(class indices; float32 probabilities must have the logits' shape \(4, 3\)\)"),
    (lambda: nn.BCELoss(), (np.float32([[0.5, 1.5]]), np.float32([[1, 0]])), ValueError,
     r"^BCELoss\(reduction='mean'\): .*all elements of input should be between 0 and 1, got input.flat\[1\] = 1.5"),
    (lambda: nn.BCELoss(), (np.float32([[0.5, np.nan]]), np.float32([[1, 0]])), ValueError,
     r"between 0 and 1"),
    (lambda: nn.BCEWithLogitsLoss(pos_weight=np.ones(4, np.float32)), (X, P), ValueError,
     r"^BCEWithLogitsLoss\(.*pos_weight of shape \(4,\) cannot be broadcast to the input's shape \(4, 3\)"),
    (lambda: nn.BCEWithLogitsLoss(), (X, P[:3]), ValueError, r"target must have the input's shape \(4, 3\), got \(3, 3\)"),
    (lambda: nn.L1Loss(), (X, P.astype(np.float16)), TypeError, r"^L1Loss\(reduction='mean'\): .*target must have dtype float32"),
    (lambda: nn.HuberLoss(), ([[1.0]], P), TypeError, r"^HuberLoss\(.*input must be a numpy.ndarray"),
    (lambda: nn.SmoothL1Loss(), (X, P.T), ValueError, r"target must be C-contiguous|target must have the input's shape"),
])
def test_bad_call_raises_and_keeps_the_pending_gradient(make, args, exc, msg, rng):
    lf = make()
    if isinstance(lf, (nn.CrossEntropyLoss, nn.NLLLoss)):
        c = 2 if lf.weight is not None and lf.weight.shape == (2,) else 3
        good_x, good_y = X[:, :c].copy(), np.minimum(Y, c - 1)
    else:
        good_x, good_y = (P.copy(), P.copy()) if isinstance(lf, nn.BCELoss) else (X.copy(), P.copy())
        if getattr(lf, "pos_weight", None) is not None:
            good_x, good_y = np.ones((2, 4), np.float32), np.ones((2, 4), np.float32)
    lf(good_x, good_y)
    pending = lf._grad.copy()
    copies = [np.array(a, copy=True) for a in args]
    with pytest.raises(exc, match=msg):
        lf(*args)
    for a, c in zip(args, copies, strict=True):
        np.testing.assert_array_equal(np.asarray(a), c)
    np.testing.assert_array_equal(lf.backward(), pending)  # the earlier call's gradient, once


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: nn.CrossEntropyLoss(weight=[1.0, -1.0, 1.0]), ValueError, r"^CrossEntropyLoss: weight must be non-negative, got weight.flat\[1\] = -1.0"),
    (lambda: nn.NLLLoss(weight=np.ones((2, 3))), ValueError, r"^NLLLoss: weight must be 1-D"),
    (lambda: nn.BCEWithLogitsLoss(pos_weight=[1.0, float("nan")]), ValueError, r"pos_weight must be non-negative"),
    (lambda: nn.BCELoss(weight=["a"]), TypeError, r"^BCELoss: weight must be an array of real numbers"),
    (lambda: nn.CrossEntropyLoss(ignore_index=1.5), TypeError, r"ignore_index must be an int"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, r"label_smoothing must be in \[0.0, 1.0\]"),
    (lambda: nn.SmoothL1Loss(beta=-1.0), ValueError, r"^SmoothL1Loss: beta must be non-negative"),
    (lambda: nn.HuberLoss(delta=0.0), ValueError, r"^HuberLoss: delta must be positive"),
    (lambda: nn.L1Loss(reduction="avg"), ValueError, r"^L1Loss: reduction must be 'none', 'mean' or 'sum', got 'avg'"),
    (lambda: nn.MSELoss("sum"), TypeError, r"^MSELoss: size_average must be a bool or None .*got 'sum'"),
])
def test_bad_constructor_arguments(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_legacy_size_average_and_reduce_like_torch():
    with pytest.warns(DeprecationWarning):
        assert nn.L1Loss(size_average=False).reduction == "sum"
    with pytest.warns(DeprecationWarning):
        assert nn.CrossEntropyLoss(None, None, -100, False).reduction == "none"


def test_none_backward_needs_an_upstream_gradient_of_the_losss_shape(rng):
    x, y = _logits(rng), _labels(rng)
    lf = nn.CrossEntropyLoss(reduction="none")
    lf(x, y)
    pending = lf._grad.copy()
    with pytest.raises(RuntimeError, match=r"reduction='none' needs grad_output, the upstream gradient of the loss's shape \(13,\)"):
        lf.backward()
    with pytest.raises(ValueError, match=r"grad_output must have the loss's shape \(13,\), got \(13, 11\)"):
        lf.backward(np.ones((B_, C_), np.float32))
    with pytest.raises(TypeError, match=r"grad_output must be a float32 numpy.ndarray of the loss's shape \(13,\), got float64 array"):
        lf.backward(np.ones(B_))
    np.testing.assert_array_equal(lf.backward(np.ones(B_, np.float32)), pending)
    with pytest.raises(RuntimeError, match="backward called twice"):
        lf.backward(np.ones(B_, np.float32))
    m = nn.MSELoss()
    m(x, x)
    with pytest.raises(TypeError, match=r"grad_output \(the upstream gradient of a scalar loss\) must be a real number"):
        m.backward(np.ones(3, np.float32))
    m.backward()
