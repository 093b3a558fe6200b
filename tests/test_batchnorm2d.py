"""BatchNorm2d on (N, C, H, W) and BatchNorm1d on (N, C, L): the rows of the channels-last view
through BatchNorm1d's kernel. Against torch 2.13.0 in float64 (output, dL/dx, dgamma, dbeta,
running statistics; train and eval; momentum None, affine False, track_running_stats False;
random upstream gradient) on every ISA path; finite differences of a float64 reference on a
tiny case; 1 vs 2 threads bitwise; the fused ReLU, donation and input_grad=False in a
Sequential; the layouts (standalone vs channels-last in/out); rollback of the running
statistics on a skipped step; torch's rank message, state_dict keys."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from conftest import assert_close, num_threads, plan_set

from steadygrad import nn, optim
from steadygrad.nn._layout import FIRST, LAST

torch = pytest.importorskip("torch")

TIME_BUDGET_S = 20
EPS32 = float(np.finfo(np.float32).eps)

OPTIONS = {  # name -> BatchNorm kwargs
    "default": {},
    "momentum_none": {"momentum": None},
    "affine_false": {"affine": False},
    "track_false": {"track_running_stats": False},
    "eps_momentum": {"eps": 1e-3, "momentum": 0.3},
}
SHAPES = {"2d": (3, 4, 5, 6), "2d_batch1": (1, 3, 7, 1), "2d_odd": (2, 17, 3, 5),
          "1d_ncl": (4, 5, 9), "1d_ncl_len1": (3, 6, 1)}


def _layer(shape: tuple[int, ...], kw: dict[str, Any]) -> tuple[Any, Any]:
    c = shape[1]
    ours = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(c, **kw)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(c, **kw).double()
    if ours.weight is not None:
        rng = np.random.default_rng(c)
        ours.weight.data = rng.uniform(0.5, 2.0, c).astype(np.float32)
        ours.bias.data = rng.standard_normal(c).astype(np.float32)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(ours.weight.data.astype(np.float64)))
            theirs.bias.copy_(torch.from_numpy(ours.bias.data.astype(np.float64)))
    return ours, theirs


def _rows(a: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N*S, C), the rows the statistics run over."""
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _check_step(m: Any, tm: Any, x: np.ndarray, dout: np.ndarray, what: str,
                rv_before: np.ndarray | float) -> None:
    m.zero_grad()
    y = m(x).copy()
    dx = m.backward(dout).copy()
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    tm.zero_grad()
    yt = tm(xt)
    (yt * torch.from_numpy(dout.astype(np.float64))).sum().backward()
    # float32 error bounds from the magnitudes each result sums (as BatchNorm1d's tests)
    c = x.shape[1]
    bshape = (1, c) + (1,) * (x.ndim - 2)
    g = np.ones(c) if m.weight is None else m.weight.data.astype(np.float64)
    b = np.zeros(c) if m.bias is None else m.bias.data.astype(np.float64)
    gb, bb = g.reshape(bshape), b.reshape(bshape)
    y64 = yt.detach().numpy()
    xhat = np.abs((y64 - bb) / gb)
    assert_close(y, y64, 64 * EPS32 * (np.abs(gb) * (1 + xhat) + np.abs(bb)), what=f"{what}: y")
    invstd = np.maximum(1 / np.sqrt(_rows(x.astype(np.float64)).var(0) + m.eps),
                        1 / np.sqrt(rv_before + m.eps)).reshape(bshape)
    ad = np.abs(dout.astype(np.float64))
    red = (0, *range(2, x.ndim))
    terms = ad + ad.mean(red, keepdims=True) + xhat * (ad * xhat).mean(red, keepdims=True)
    assert_close(dx, xt.grad.numpy(), 64 * EPS32 * np.abs(gb) * invstd * terms, what=f"{what}: dx")
    if m.weight is not None:
        assert_close(m.weight.grad, tm.weight.grad.numpy(), 64 * EPS32 * (ad * xhat).sum(red),
                     what=f"{what}: dgamma")
        assert_close(m.bias.grad, tm.bias.grad.numpy(), 64 * EPS32 * ad.sum(red),
                     what=f"{what}: dbeta")
    for k in ("running_mean", "running_var", "num_batches_tracked"):
        ours, theirs = getattr(m, k), getattr(tm, k)
        assert (ours is None) == (theirs is None), f"{what}: {k}"
        if ours is not None:
            t = theirs.numpy().astype(np.float64)
            assert_close(ours, t, 16 * EPS32 * (1 + np.abs(t)), what=f"{what}: {k}")


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("opt", list(OPTIONS))
def test_matches_torch_train_then_eval(isa: str, opt: str, shape: str) -> None:
    s = SHAPES[shape]
    m, tm = _layer(s, OPTIONS[opt])
    rng = np.random.default_rng(7)
    for step, mode in enumerate(["train", "train", "eval"]):
        m.train(mode == "train")
        tm.train(mode == "train")
        if mode == "train" and s[0] * int(np.prod(s[2:])) == 1:
            continue
        x = (rng.standard_normal(s) * 3 + 1).astype(np.float32)
        dout = rng.standard_normal(s).astype(np.float32)
        rv = np.inf if tm.running_var is None else tm.running_var.numpy().copy()
        _check_step(m, tm, x, dout, f"{shape}/{opt} step {step} ({mode})", rv)


def last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _bn_ref(x: np.ndarray, p: dict[str, np.ndarray], eps: float = 1e-5) -> np.ndarray:
    red = (0, *range(2, x.ndim))
    shp = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    xh = (x - x.mean(red, keepdims=True)) / np.sqrt(x.var(red, keepdims=True) + eps)
    return xh * p["weight"].reshape(shp) + p["bias"].reshape(shp)


@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (3, 2, 4)])
def test_gradients_match_finite_differences(isa: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    m = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1])
    m.weight.data = rng.uniform(0.5, 2, shape[1]).astype(np.float32)
    m.bias.data = rng.standard_normal(shape[1]).astype(np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    dout = rng.standard_normal(shape).astype(np.float32)
    m(x)
    dx = m.backward(dout)
    p = {"weight": m.weight.data.astype(np.float64), "bias": m.bias.data.astype(np.float64)}
    xd, dd, h = x.astype(np.float64), dout.astype(np.float64), 1e-6

    def fd(target: np.ndarray) -> np.ndarray:
        out = np.zeros_like(target)
        for i in np.ndindex(target.shape):
            old = target[i]
            target[i] = old + h
            lp = (_bn_ref(xd, p) * dd).sum()
            target[i] = old - h
            lm = (_bn_ref(xd, p) * dd).sum()
            target[i] = old
            out[i] = (lp - lm) / (2 * h)
        return out

    # float32 rounding of O(rows) sums of O(|dout| |xhat|) terms, plus the difference's own
    # float64 rounding (a few ulps of the loss over 2h)
    rows = x.size // shape[1]
    tol = 64 * EPS32 * rows * float(np.abs(dd).max()) * 4 + 8 * 2.0**-52 * float(
        np.abs(_bn_ref(xd, p) * dd).sum()) / (2 * h)
    assert_close(dx, fd(xd), tol, what="dx")
    assert_close(m.weight.grad, fd(p["weight"]), tol * rows, what="dgamma")
    assert_close(m.bias.grad, fd(p["bias"]), tol * rows, what="dbeta")


def test_one_and_two_threads_are_bitwise_equal() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 16, 20, 20)).astype(np.float32)  # parallel-sized
    dout = rng.standard_normal(x.shape).astype(np.float32)
    got = []
    for t in (1, 2):
        with num_threads(t):
            m = nn.Sequential(nn.BatchNorm2d(16), nn.ReLU())
            y = m(x).copy()
            dx = m.backward(dout).copy()
            got.append((y, dx, m[0].weight.grad.copy(), m[0].running_var.copy()))
    for a, b in zip(*got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout_in", [FIRST, LAST])
@pytest.mark.parametrize("layout_out", [FIRST, LAST])
@pytest.mark.parametrize("epilogue", ["none", "relu"])
def test_layouts_give_the_standalone_results(isa: str, layout_in: str, layout_out: str,
                                             epilogue: str) -> None:
    """forward(x, layout_in=, layout_out=) is the standalone layer with x and y transposed,
    bit for bit; its backward takes dL/dy in layout_out and returns dL/dx in layout_in."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    ref, m = nn.BatchNorm2d(5), nn.BatchNorm2d(5)
    want_y = ref.forward(x, epilogue=epilogue).copy()
    want_dx = ref._backward(dout).copy()
    xin = last(x) if layout_in == LAST else x
    y = m.forward(xin, epilogue=epilogue, layout_in=layout_in, layout_out=layout_out)
    np.testing.assert_array_equal(y, last(want_y) if layout_out == LAST else want_y)
    dx = m._backward(last(dout) if layout_out == LAST else dout)
    np.testing.assert_array_equal(dx, last(want_dx) if layout_in == LAST else want_dx)
    np.testing.assert_array_equal(m.weight.grad, ref.weight.grad)
    np.testing.assert_array_equal(m.running_mean, ref.running_mean)


def test_fused_relu_donation_and_no_input_grad_match_torch(isa: str) -> None:
    """In Sequential(BN2d, ReLU, BN2d, ReLU): each ReLU runs in its BatchNorm's store and
    backward, the second BatchNorm writes dL/dx over the first one's output, and
    input_grad=False leaves dL/dx out with the same parameter gradients."""
    rng = np.random.default_rng(2)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3), nn.ReLU())
    assert plan_set(model, "fused_masked") == {0, 2} and plan_set(model, "donate") == {2}
    tmodel = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.ReLU(), torch.nn.BatchNorm2d(3),
                                 torch.nn.ReLU()).double()
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    y = model(x).copy()
    dx = model.backward(dout).copy()
    wgrad = model[0].weight.grad.copy()
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    yt = tmodel(xt)
    (yt * torch.from_numpy(dout.astype(np.float64))).sum().backward()
    tol = 1e-4 * (1 + np.abs(yt.detach().numpy()))  # two BatchNorms of O(1): well above 64 eps
    assert_close(y, yt.detach().numpy(), tol, what="y")
    assert_close(dx, xt.grad.numpy(), 1e-4 * (1 + np.abs(xt.grad.numpy())), what="dx")
    assert_close(wgrad, tmodel[0].weight.grad.numpy(), 1e-4 * np.abs(dout).sum(), what="dgamma")
    model.zero_grad()
    model(x)
    assert model.backward(dout, input_grad=False) is None
    np.testing.assert_array_equal(model[0].weight.grad, wgrad)


def test_running_statistics_roll_back_on_a_skipped_step() -> None:
    rng = np.random.default_rng(4)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = rng.standard_normal((5, 3, 4, 4)).astype(np.float32)
    before = [b.copy() for b in model.buffers()]
    model.zero_grad()
    model(x)
    g = np.full((5, 2), np.nan, np.float32)
    model.backward(g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optim.NonFiniteGradientWarning)
        opt.step()
    for b, want in zip(model.buffers(), before, strict=True):
        np.testing.assert_array_equal(b, want)
    model.zero_grad()
    model(x)
    model.backward(np.ones((5, 2), np.float32))
    opt.step()
    assert int(model[0].num_batches_tracked) == 1  # a taken step keeps the update
    assert_close(model[0].running_mean, 0.1 * _rows(x.astype(np.float64)).mean(0),
                 16 * EPS32, what="running_mean")


def test_errors_name_the_layer_as_torch_words_them() -> None:
    bn = nn.BatchNorm2d(4)
    with pytest.raises(ValueError, match=r"^BatchNorm2d\(4, .*\): expected 4D input \(got 2D "
                                         r"input of shape \(3, 4\)\)"):
        bn(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input"):
        nn.BatchNorm1d(4)(np.zeros((2, 4, 3, 3), np.float32))
    model = nn.Sequential(nn.Identity(), nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match=r"^Sequential\[1\] BatchNorm2d\(5, .*\): expected input "
                                         r"with 5 channels \(num_features\) in dim 1, got input of "
                                         r"shape \(2, 4, 3, 3\)"):
        model(np.zeros((2, 4, 3, 3), np.float32))
    assert int(model[1].num_batches_tracked) == 0  # nothing ran
    with pytest.raises(ValueError, match=r"^BatchNorm1d\(4, .*\): expected input of shape "
                                         r"\(batch, 4\), got \(2, 3\)"):
        nn.BatchNorm1d(4)(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^BatchNorm2d: momentum must be in \[0, 1\]"):
        nn.BatchNorm2d(4, momentum=2.0)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm2d(2)(np.zeros((1, 2, 1, 1), np.float32))


def test_state_dict_keys_are_torch_s() -> None:
    for ours, theirs in [(nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)),
                         (nn.BatchNorm2d(3, affine=False), torch.nn.BatchNorm2d(3, affine=False)),
                         (nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3))]:
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
