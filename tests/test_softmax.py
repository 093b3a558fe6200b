"""Softmax and LogSoftmax (kernels and layers) on every ISA path: float64 references with
error bounds from the summation length, torch 2.13 as oracle (float64 autograd, random upstream
gradients), float64 finite differences, every dim (negative too) and row/stride tails
1..33, huge and tiny logits, +-inf/NaN against the mathematical limits, aliasing, empty and
0-d inputs, 1 vs 2 threads bitwise, and the layers' errors, repr and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads

import steadygrad as sg
from steadygrad import _core, nn

EPS = float(np.finfo(np.float32).eps)
TINY = 1e-37  # vexp flushes results below float32's normal range to 0
KERNELS = {False: (_core.softmax, _core.softmax_backward),
           True: (_core.log_softmax, _core.log_softmax_backward)}


def ref_forward(x64: np.ndarray, dim: int, log: bool) -> np.ndarray:
    m = x64.max(axis=dim, keepdims=True)
    z = x64 - m
    lse = np.log(np.exp(z).sum(axis=dim, keepdims=True))
    return z - lse if log else np.exp(z - lse)


def ref_backward(g: np.ndarray, y: np.ndarray, dim: int, log: bool) -> np.ndarray:
    g, y = g.astype(np.float64), y.astype(np.float64)
    if log:
        return g - np.exp(y) * g.sum(axis=dim, keepdims=True)
    return y * (g - (g * y).sum(axis=dim, keepdims=True))


def fwd_tol(x64: np.ndarray, y64: np.ndarray, dim: int, log: bool) -> np.ndarray:
    """Sum of D exps: (D + 8) eps relative (sequential bound, ISA-independent); log_softmax
    adds the rounding of x - max and of the result."""
    k = (x64.shape[dim] + 8) * EPS if x64.ndim else 9 * EPS
    if log:
        z = x64 - x64.max(axis=dim, keepdims=True)
        return k + EPS * (np.abs(z) + np.abs(y64)) + TINY
    return k * np.abs(y64) + TINY


def bwd_tol(g: np.ndarray, y: np.ndarray, dim: int, log: bool) -> np.ndarray:
    g, y = np.abs(g.astype(np.float64)), y.astype(np.float64)
    k = (y.shape[dim] + 8) * EPS if y.ndim else 9 * EPS
    if log:
        return k * (g + np.exp(y) * g.sum(axis=dim, keepdims=True)) + TINY
    return k * np.abs(y) * (g + (g * np.abs(y)).sum(axis=dim, keepdims=True)) + TINY


SHAPES_DIMS = [((7,), 0), ((3, 33), 1), ((3, 33), 0), ((3, 33), -1), ((4, 5, 17), 1),
               ((4, 5, 17), -3), ((2, 3, 4, 5), 2), ((2, 3, 4, 5), -1), ((1, 1), 0),
               ((5, 1, 9), 1), ((2, 40, 3), 1), ((2, 1000), 1)]


@pytest.fixture(params=[False, True], ids=["softmax", "log_softmax"])
def log(request) -> bool:
    return bool(request.param)


@pytest.mark.parametrize("shape,dim", SHAPES_DIMS)
def test_vs_float64_and_torch(isa, rng, log, shape, dim):
    fwd, bwd = KERNELS[log]
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    x_copy = x.copy()
    y = fwd(x, dim)
    np.testing.assert_array_equal(x, x_copy)
    x64 = x.astype(np.float64)
    y64 = ref_forward(x64, dim, log)
    assert_close(y, y64, fwd_tol(x64, y64, dim, log), what=f"forward isa={isa}")
    dx = bwd(g, y, dim)
    assert_close(dx, ref_backward(g, y, dim, log), bwd_tol(g, y, dim, log), what="backward")
    # torch in float64 as the oracle of the whole forward + backward
    t = torch.from_numpy(x64).requires_grad_(True)
    ty = (torch.log_softmax if log else torch.softmax)(t, dim)
    (tdx,) = torch.autograd.grad(ty, t, torch.from_numpy(g.astype(np.float64)))
    assert_close(y, ty.detach().numpy(), fwd_tol(x64, y64, dim, log), what="forward vs torch")
    # y's own error moves dx by dy/dx-sized amounts: twice the backward bound, plus exp(y) dy
    extra = (np.exp(y64) * np.abs(g).sum(axis=dim, keepdims=True) * fwd_tol(x64, y64, dim, log)
             if log else 0.0)
    assert_close(dx, tdx.numpy(), 3 * bwd_tol(g, y, dim, log) + extra, what="backward vs torch")


def test_finite_differences_float64(isa, rng, log):
    """The kernels' backward against central differences of the float64 forward of
    L = sum(w * f(x)) (h = 1e-6: the differences are exact to ~1e-9)."""
    shape, dim, h = (3, 6, 5), 1, 1e-6
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(shape)
    x64 = x.astype(np.float64)
    fd = np.empty(shape)
    for idx in np.ndindex(shape):
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = ((w * ref_forward(xp, dim, log)).sum() - (w * ref_forward(xm, dim, log)).sum()) / (2 * h)
    fwd, bwd = KERNELS[log]
    y = fwd(x, dim)
    dx = bwd(w.astype(np.float32), y, dim)
    assert_close(dx, fd, 3 * bwd_tol(w, y, dim, log) + 1e-7, what="finite differences")


@pytest.mark.parametrize("where", ["last", "strided"])
def test_tails_and_no_write_past_end(isa, rng, log, where):
    """D in 1..33 along the last dim, and inner in 1..33 lanes along dim 0."""
    fwd, bwd = KERNELS[log]
    for n in range(1, 34):
        shape, dim = ((3, n), 1) if where == "last" else ((5, n), 0)
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        size = x.size
        ybuf = np.full(size + 16, 7.0, np.float32)
        y = fwd(x, dim, out=ybuf[:size].reshape(shape))
        assert (ybuf[size:] == 7.0).all(), f"forward n={n} wrote past the end"
        x64 = x.astype(np.float64)
        y64 = ref_forward(x64, dim, log)
        assert_close(y, y64, fwd_tol(x64, y64, dim, log), what=f"forward n={n}")
        gbuf = np.full(size + 16, 7.0, np.float32)
        dx = bwd(g, y, dim, out=gbuf[:size].reshape(shape))
        assert (gbuf[size:] == 7.0).all(), f"backward n={n} wrote past the end"
        assert_close(dx, ref_backward(g, y, dim, log), bwd_tol(g, y, dim, log),
                     what=f"backward n={n}")


@pytest.mark.parametrize("dim", [1, 0])
def test_huge_and_tiny_logits(isa, log, dim):
    rows = np.array([[1e30, -1e30, 0.0, 1e30 - 1e24, 5.0],
                     [3e38, -3e37, 3e38, 0.0, -1.0],
                     [-1e4, -1e4 - 1.0, -1e4 - 90.0, -1e4 - 200.0, -1e4 + 0.5],
                     [1e-30, -1e-30, 0.0, 1e-38, -1e-38]], np.float32)
    x = rows if dim == 1 else np.ascontiguousarray(rows.T)
    y = KERNELS[log][0](x, dim)
    x64 = x.astype(np.float64)
    y64 = ref_forward(x64, dim, log)
    assert np.isfinite(y).all()
    assert_close(y, y64, fwd_tol(x64, y64, dim, log), what="huge/tiny logits")


@pytest.mark.parametrize("dim", [1, 0])
def test_nonfinite_like_mathematics(isa, log, dim):
    """+inf entries share the mass (the limit x_i -> +inf), -inf entries get 0 (log: -inf); a
    row of -inf only (0/0) or with a NaN is NaN."""
    inf, nan = np.inf, np.nan
    rows = np.array([[inf, 1.0, -2.0, inf, 0.5], [-inf, 1.0, -inf, 2.0, 0.0],
                     [-inf, -inf, -inf, -inf, -inf], [1.0, nan, 2.0, 3.0, 4.0],
                     [inf, -inf, nan, 0.0, 1.0]], np.float32)
    sm = ref_forward(np.array([1.0, 2.0, 0.0]), 0, False)
    want = np.array([[0.5, 0, 0, 0.5, 0], [0, sm[0], 0, sm[1], sm[2]], [nan] * 5, [nan] * 5,
                     [nan] * 5])
    if log:
        with np.errstate(divide="ignore"):
            want = np.log(want)
    x = rows if dim == 1 else np.ascontiguousarray(rows.T)
    want = want if dim == 1 else want.T
    y = KERNELS[log][0](x, dim)
    assert_close(y, want, 4 * EPS, rtol=8 * EPS, what="non-finite rows")


@pytest.mark.parametrize("dim", [-1, 1])
def test_thread_count_invariance(isa, rng, log, dim):
    x = (rng.standard_normal((64, 257, 9)) * 5).astype(np.float32)  # past the parallel threshold
    g = rng.standard_normal(x.shape).astype(np.float32)
    fwd, bwd = KERNELS[log]
    out = []
    for t in (1, 2):
        with num_threads(t):
            y = fwd(x, dim)
            out.append((y, bwd(g, y, dim)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_in_place_and_aliasing(isa, rng, log):
    fwd, bwd = KERNELS[log]
    x = rng.standard_normal((4, 37)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    y_ref = fwd(x, 1)
    dx_ref = bwd(g, y_ref, 1)
    buf = x.copy()
    assert fwd(buf, 1, out=buf) is buf
    np.testing.assert_array_equal(buf, y_ref)
    gb = g.copy()
    assert bwd(gb, y_ref, 1, out=gb) is gb
    np.testing.assert_array_equal(gb, dx_ref)
    y = y_ref.copy()
    with pytest.raises(ValueError, match="out"):
        bwd(g, y, 1, out=y)


@pytest.mark.parametrize("shape,dim", [((0, 5), 1), ((3, 0), 1), ((3, 0), 0), ((0,), 0)])
def test_empty(log, shape, dim):
    fwd, bwd = KERNELS[log]
    x = np.zeros(shape, np.float32)
    assert fwd(x, dim).shape == shape
    assert bwd(x, x, dim).shape == shape


def test_zero_dim_is_one_element(log):
    x = np.array(3.5, np.float32)
    fwd = KERNELS[log][0]
    for dim in (0, -1):
        y = fwd(x, dim)
        t = (torch.log_softmax if log else torch.softmax)(torch.tensor(3.5), dim)
        assert y.shape == () and float(y) == float(t)


@pytest.mark.parametrize("shape,dim,lo,hi", [((3, 4), 2, -2, 1), ((3, 4), -3, -2, 1),
                                             ((), 1, -1, 0)])
def test_dim_out_of_range_is_torchs_index_error(log, shape, dim, lo, hi):
    x = np.zeros(shape, np.float32)
    msg = rf"Dimension out of range \(expected to be in range of \[{lo}, {hi}\], but got {dim}\)"
    with pytest.raises(IndexError, match=msg):
        KERNELS[log][0](x, dim)
    with pytest.raises(IndexError, match=msg):
        KERNELS[log][1](x, x, dim)
    layer = (nn.LogSoftmax if log else nn.Softmax)(dim=dim)
    with pytest.raises(IndexError, match=msg):
        layer(x)
    with torch.no_grad(), pytest.raises(IndexError, match="Dimension out of range"):
        (torch.nn.LogSoftmax if log else torch.nn.Softmax)(dim=dim)(torch.zeros(shape))


# -- the layers ------------------------------------------------------------------------------

LAYERS = [(nn.Softmax, torch.nn.Softmax), (nn.LogSoftmax, torch.nn.LogSoftmax)]


@pytest.mark.parametrize("cls,tcls", LAYERS, ids=["Softmax", "LogSoftmax"])
def test_layer_repr_and_arguments(cls, tcls):
    assert repr(cls()) == repr(tcls(dim=-1))
    assert repr(cls(dim=1)) == repr(tcls(dim=1)) == f"{cls.__name__}(dim=1)"
    with pytest.raises(TypeError, match=rf"{cls.__name__}: dim=None .*deprecated.*{cls.__name__}\(dim=-1\)"):
        cls(dim=None)
    with pytest.raises(TypeError, match=rf"{cls.__name__}: dim must be an int, got 1.5"):
        cls(dim=1.5)
    assert not cls().layout_agnostic


@pytest.mark.parametrize("cls,tcls", LAYERS, ids=["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("dim", [1, -1])
def test_layer_in_a_conv_net_vs_torch(rng, cls, tcls, dim):
    """Conv2d -> Softmax(dim) -> Flatten -> Linear, forward and backward against torch."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), cls(dim=dim), nn.Flatten(),
                          nn.Linear(4 * 5 * 6, 3))
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), tcls(dim=dim),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 6, 3))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    g = rng.standard_normal((2, 3)).astype(np.float32)
    model.zero_grad()
    y = model(x)
    dx = model.backward(g)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tmodel(tx)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_log_softmax_trains_with_nll_like_loss(rng):
    """Linear -> LogSoftmax trained on -mean(log p[label]) by SGD lowers the loss as torch's."""
    x = rng.standard_normal((32, 5)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    model = nn.Sequential(nn.Linear(5, 4), nn.LogSoftmax(dim=1))
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LogSoftmax(dim=1))
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    opt = sg.optim.SGD(model.parameters(), lr=0.5)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        logp = model(x)
        g = np.zeros_like(logp)
        g[np.arange(32), labels] = -1.0 / 32
        model.backward(g)
        opt.step()
        topt.zero_grad()
        tloss = -tmodel(torch.from_numpy(x))[torch.arange(32), torch.from_numpy(labels)].mean()
        tloss.backward()
        topt.step()
    for p, tp in zip(model.parameters(), tmodel.parameters(), strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-4, atol=1e-5)
