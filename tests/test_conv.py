"""Conv1d / Conv2d against torch in float64: outputs, dL/dx, dW and db for a random upstream
gradient over odd shapes (kernel 1/3/5/7 and non-square, stride 1-3, padding 0/1/2/'same'/
'valid', dilation 1/2, groups 1/2/C, H and W from 1 to 33, batch 1, every padding_mode), on
every ISA path; the fused ReLU epilogue; both layouts of the channels-last contract; float64
finite differences; bitwise equality at 1 and 2 threads; accumulation; input_grad=False;
a Sequential(Conv2d, ReLU, Flatten, Linear) against torch.

Tolerances are error bounds: a float32 sum of k terms is within k * u * sum|terms| of the exact
one (u = 2^-24, any order, FMA or not); sum|terms| is the same computation on |x|, |w|, |dy|
in float64 (torch's conv of the absolute values, its backward for dL/dx and dW)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads, plan_set

import steadygrad as sg
from steadygrad import _core, nn
from steadygrad.nn._layout import LAST, first_shape, last_shape

U = 2.0**-24

# (in, out, kernel, stride, padding, dilation, groups, bias, padding_mode), input shape
CASES_2D: list[tuple[tuple[Any, ...], tuple[int, ...]]] = [
    ((3, 4, 3, 1, 0, 1, 1, True, "zeros"), (2, 3, 8, 8)),
    ((3, 5, 3, 2, 1, 1, 1, True, "zeros"), (1, 3, 33, 33)),
    ((4, 6, (5, 3), (2, 3), (2, 1), (1, 2), 2, True, "zeros"), (2, 4, 7, 9)),
    ((4, 4, 7, 1, 3, 1, 4, False, "zeros"), (1, 4, 5, 5)),
    ((6, 12, 3, 1, "same", 2, 6, True, "zeros"), (2, 6, 10, 11)),
    ((2, 3, 1, 1, 0, 1, 1, True, "zeros"), (1, 2, 1, 1)),
    ((8, 16, 1, 1, 0, 1, 1, True, "zeros"), (2, 8, 6, 6)),
    ((8, 16, 1, 2, 0, 1, 2, True, "zeros"), (2, 8, 7, 6)),
    ((3, 2, (1, 5), (1, 3), (0, 2), 1, 1, True, "zeros"), (3, 3, 1, 17)),
    ((5, 7, (4, 2), 1, "same", (1, 2), 1, True, "zeros"), (1, 5, 13, 4)),
    ((3, 4, 3, 3, "valid", 1, 1, True, "zeros"), (2, 3, 9, 9)),
    ((16, 32, 3, 1, 1, 1, 1, True, "zeros"), (2, 16, 12, 12)),
    ((3, 8, (5, 1), 1, 2, 1, 1, True, "zeros"), (2, 3, 20, 1)),
    ((48, 48, 3, 1, 1, 1, 1, True, "zeros"), (1, 48, 6, 5)),  # depth 432: two k blocks
    ((2, 4, 3, 1, 2, 1, 1, True, "reflect"), (2, 2, 7, 6)),
    ((2, 4, 3, 2, (1, 2), 1, 2, True, "replicate"), (2, 2, 5, 6)),
    ((2, 4, 3, 1, 2, 1, 1, False, "circular"), (1, 2, 4, 5)),
    ((3, 3, 4, 1, "same", 1, 3, True, "reflect"), (2, 3, 6, 6)),
    # the one-channel window-row gathers (forward and dW), C2's strided block and projection
    # (dL/dx by stride phase: 1, 2, 2 and 4 taps at 3x3 / 2; zero phases at 1x1 / 2)
    ((1, 6, 5, 1, 0, 1, 1, True, "zeros"), (2, 1, 12, 11)),
    ((16, 32, 3, 2, 1, 1, 1, True, "zeros"), (2, 16, 10, 10)),
    ((16, 32, 1, 2, 0, 1, 1, False, "zeros"), (2, 16, 8, 9)),
]
CASES_1D: list[tuple[tuple[Any, ...], tuple[int, ...]]] = [
    ((3, 4, 3, 1, 0, 1, 1, True, "zeros"), (2, 3, 9)),
    ((4, 8, 5, 2, 2, 2, 2, True, "zeros"), (1, 4, 33)),
    ((6, 6, 7, 1, "same", 1, 6, True, "zeros"), (2, 6, 7)),
    ((2, 3, 1, 1, 0, 1, 1, False, "zeros"), (1, 2, 1)),
    ((5, 4, 1, 3, 0, 1, 1, True, "zeros"), (2, 5, 10)),
    ((4, 4, 4, 1, "same", 1, 1, True, "reflect"), (2, 4, 10)),
    ((4, 4, 3, 1, 2, 1, 2, True, "replicate"), (2, 4, 5)),
    ((4, 4, 3, 2, 3, 1, 1, True, "circular"), (1, 4, 6)),
]


def _make(nd: int, args: tuple[Any, ...]) -> tuple[nn.Module, torch.nn.Module]:
    cin, cout, k, s, p, d, g, b, mode = args
    ours = (nn.Conv1d if nd == 1 else nn.Conv2d)(cin, cout, k, stride=s, padding=p, dilation=d,
                                                groups=g, bias=b, padding_mode=mode)
    twin = (torch.nn.Conv1d if nd == 1 else torch.nn.Conv2d)(
        cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=b,
        padding_mode=mode).double()
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(ours.weight.data.astype(np.float64)))
        if b:
            twin.bias.copy_(torch.from_numpy(ours.bias.data.astype(np.float64)))
    return ours, twin


def _reference(twin: torch.nn.Module, x: np.ndarray, gy: np.ndarray, relu: bool = False
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (float64 value, error bound) for y, dx, dw, db; gy is dL/d(relu(y)) if relu."""
    def run(xv: np.ndarray, gv: np.ndarray, absolute: bool) -> dict[str, np.ndarray]:
        tx = torch.from_numpy(xv.astype(np.float64)).requires_grad_(True)
        saved = [p.detach().clone() for p in twin.parameters()]
        if absolute:
            with torch.no_grad():
                for p in twin.parameters():
                    p.abs_()
        twin.zero_grad()
        with warnings.catch_warnings():  # torch: 'same' with an even kernel pads a copy
            warnings.simplefilter("ignore", UserWarning)
            y = twin(tx)
        if relu and not absolute:
            y = torch.relu(y)
        y.backward(torch.from_numpy(gv.astype(np.float64)))
        out = {"y": y.detach().numpy().copy(), "dx": tx.grad.numpy().copy(),
               "dw": twin.weight.grad.numpy().copy()}
        if twin.bias is not None:
            out["db"] = twin.bias.grad.numpy().copy()
        with torch.no_grad():
            for p, v in zip(twin.parameters(), saved, strict=True):
                p.copy_(v)
        return out

    exact = run(x, gy, False)
    gmask = gy if not relu else gy * (exact["y"] > 0)
    mags = run(np.abs(x), np.abs(gmask), True)
    # terms per sum: the forward's window (+ bias), dL/dx's taps (a padding fold adds a few
    # more), dW's and db's output pixels
    w = twin.weight
    k_fwd = w[0].numel() + 1
    k_dx = 4 * w.shape[0] * int(np.prod(w.shape[2:]))
    k_dw = int(np.prod(exact["y"].shape)) // exact["y"].shape[1]
    ks = {"y": k_fwd, "dx": k_dx, "dw": k_dw, "db": k_dw}
    return {name: (v, 2 * ks[name] * U * mags[name] + 1e-30) for name, v in exact.items()}


def _check(ours: nn.Module, twin: torch.nn.Module, x: np.ndarray, rng: np.random.Generator,
           what: str) -> None:
    y = ours(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ref = _reference(twin, x, gy)
    assert_close(y, ref["y"][0], ref["y"][1], what=f"{what} y")
    ours.zero_grad()
    dx = ours.backward(gy)
    assert_close(dx, ref["dx"][0], ref["dx"][1], what=f"{what} dx")
    assert_close(ours.weight.grad, ref["dw"][0], ref["dw"][1], what=f"{what} dw")
    if ours.bias is not None:
        assert_close(ours.bias.grad, ref["db"][0], ref["db"][1], what=f"{what} db")


@pytest.mark.parametrize("args,shape", CASES_2D, ids=[str(i) for i in range(len(CASES_2D))])
def test_conv2d_matches_torch(isa: str, args: tuple[Any, ...], shape: tuple[int, ...],
                              rng: np.random.Generator) -> None:
    sg.manual_seed(0)
    ours, twin = _make(2, args)
    x = rng.standard_normal(shape).astype(np.float32)
    _check(ours, twin, x, rng, f"Conv2d{args} on {shape} [{isa}]")


@pytest.mark.parametrize("args,shape", CASES_1D, ids=[str(i) for i in range(len(CASES_1D))])
def test_conv1d_matches_torch(isa: str, args: tuple[Any, ...], shape: tuple[int, ...],
                              rng: np.random.Generator) -> None:
    sg.manual_seed(0)
    ours, twin = _make(1, args)
    x = rng.standard_normal(shape).astype(np.float32)
    _check(ours, twin, x, rng, f"Conv1d{args} on {shape} [{isa}]")


def test_sizes_1_to_33(rng: np.random.Generator) -> None:
    """Every H and W from 1 to 33 (non-square pairs), kernel 3 padding 1, stride 1 and 2."""
    for h in range(1, 34):
        w = 34 - h
        for stride in (1, 2):
            ours, twin = _make(2, (2, 3, 3, stride, 1, 1, 1, True, "zeros"))
            x = rng.standard_normal((1, 2, h, w)).astype(np.float32)
            _check(ours, twin, x, rng, f"{h}x{w} stride {stride}")


def test_default_init_matches_torch_rule() -> None:
    """kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)) for the weight, the same for the bias."""
    sg.manual_seed(3)
    m = nn.Conv2d(6, 64, (3, 5), groups=2)
    bound = 1 / np.sqrt(3 * 3 * 5)
    w, b = m.weight.data, m.bias.data
    assert w.shape == (64, 3, 3, 5) and b.shape == (64,)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound and np.abs(b).max() > 0.8 * bound
    assert list(m.state_dict()) == ["weight", "bias"]
    assert nn.Conv1d(4, 2, 3).weight.shape == (2, 4, 3)


def test_fused_relu_epilogue(isa: str, rng: np.random.Generator) -> None:
    """forward(epilogue='relu') stores relu(conv(x) + b); Sequential(Conv2d, ReLU) fuses it and
    the absorbed ReLU masks the gradient, matching torch."""
    sg.manual_seed(1)
    ours, twin = _make(2, (3, 8, 3, 1, 1, 1, 1, True, "zeros"))
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    y = ours.forward(x, epilogue="relu")
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ref = _reference(twin, x, gy, relu=True)
    assert (y >= 0).all()
    assert_close(y, ref["y"][0], ref["y"][1], what="fused y")
    model = nn.Sequential(ours, nn.ReLU())
    assert plan_set(model, "fused") == {0}
    y2 = model(x)
    np.testing.assert_array_equal(y2, y)
    model.zero_grad()
    dx = model.backward(gy)
    assert_close(dx, ref["dx"][0], ref["dx"][1], what="fused dx")
    assert_close(ours.weight.grad, ref["dw"][0], ref["dw"][1], what="fused dw")
    assert_close(ours.bias.grad, ref["db"][0], ref["db"][1], what="fused db")


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_channels_last_layouts(nd: int, mode: str, rng: np.random.Generator) -> None:
    """layout_in/layout_out=channels_last: the same numbers in the other layout, dL/dy taken
    and dL/dx returned in those layouts."""
    sg.manual_seed(2)
    args = (4, 6, 3, 2 if mode == "zeros" else 1, 1, 1, 2, True, mode)
    ours, _ = _make(nd, args)
    shape = (2, 4, 7) if nd == 1 else (2, 4, 7, 8)
    x = rng.standard_normal(shape).astype(np.float32)
    y = ours(x).copy()
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ours.zero_grad()
    dx = ours.backward(gy).copy()
    dw = ours.weight.grad.copy()
    for lin, lout in ((LAST, LAST), (LAST, "channels_first"), ("channels_first", LAST)):
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if lin == LAST else x
        yl = ours.forward(xin, layout_in=lin, layout_out=lout)
        want_y = np.moveaxis(y, 1, -1) if lout == LAST else y
        np.testing.assert_array_equal(yl, want_y)
        assert yl.shape == (last_shape(y.shape) if lout == LAST else y.shape)
        ours.zero_grad()
        g = np.ascontiguousarray(np.moveaxis(gy, 1, -1)) if lout == LAST else gy
        dxl = ours._backward(g)
        assert dxl is not None
        got = dxl if lin != LAST else dxl.reshape(xin.shape)
        np.testing.assert_array_equal(got if lin != LAST else np.moveaxis(got, -1, 1), dx)
        assert first_shape(got.shape) == x.shape if lin == LAST else got.shape == x.shape
        np.testing.assert_array_equal(ours.weight.grad, dw)


def test_donated_input_receives_grad(rng: np.random.Generator) -> None:
    """donate_input=True (the plan's dead input): dL/dx is written over x in either layout."""
    ours, _ = _make(2, (3, 4, 3, 1, 1, 1, 1, True, "zeros"))
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = ours(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ours.zero_grad()
    want = ours.backward(gy).copy()
    for xin, lin in ((x.copy(), "channels_first"), (xl.copy(), LAST)):
        yy = ours.forward(xin, layout_in=lin)
        got = ours._backward(gy, donate_input=True)
        assert got is xin
        np.testing.assert_array_equal(yy, y)
        np.testing.assert_array_equal(np.moveaxis(got, -1, 1) if lin == LAST else got, want)


def test_finite_differences_float64() -> None:
    """dL/dx, dW, db against central differences of a float64 numpy convolution."""
    rng = np.random.default_rng(5)
    m = nn.Conv2d(4, 4, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = rng.standard_normal((1, 4, 5, 4)).astype(np.float32)
    y = m(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    m.zero_grad()
    dx = m.backward(gy)
    w64, b64 = m.weight.data.astype(np.float64), m.bias.data.astype(np.float64)

    def conv(xv: np.ndarray, wv: np.ndarray, bv: np.ndarray) -> np.ndarray:  # direct loops
        xp = np.pad(xv, ((0, 0), (0, 0), (1, 1), (2, 2)))
        out = np.zeros(y.shape)
        for co in range(4):
            gi = co // 2
            for oy in range(y.shape[2]):
                for ox in range(y.shape[3]):
                    win = xp[0, 2 * gi:2 * gi + 2, 2 * oy:2 * oy + 3, ox:ox + 3:2]
                    out[0, co, oy, ox] = (win * wv[co]).sum() + bv[co]
        return out

    def loss(xv: np.ndarray, wv: np.ndarray, bv: np.ndarray) -> float:
        return float((conv(xv, wv, bv) * gy).sum())

    eps = 1e-6
    for name, arr, got in (("dx", x.astype(np.float64), dx), ("dw", w64, m.weight.grad),
                           ("db", b64, m.bias.grad)):
        fd = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            args = [x.astype(np.float64), w64, b64]
            idx = {"dx": 0, "dw": 1, "db": 2}[name]
            hi, lo = arr.copy(), arr.copy()
            hi[i] += eps
            lo[i] -= eps
            args[idx] = hi
            f_hi = loss(*args)
            args[idx] = lo
            fd[i] = (f_hi - loss(*args)) / (2 * eps)
        # float32 rounding of the kernel (<= 50 terms of O(3)) + the difference's own error
        assert_close(got, fd, 1e-4, what=f"finite differences {name}")


@pytest.mark.parametrize("args,shape", [((8, 24, 3, 1, 1, 1, 1, True, "zeros"), (8, 8, 20, 20)),
                                        ((16, 32, 1, 1, 0, 1, 2, True, "zeros"), (8, 16, 9, 9)),
                                        ((6, 6, 5, 2, 2, 1, 3, True, "zeros"), (6, 6, 17, 15)),
                                        ((1, 6, 5, 1, 0, 1, 1, True, "zeros"), (16, 1, 28, 28)),
                                        ((3, 16, 3, 1, 1, 1, 1, True, "zeros"), (8, 3, 32, 32)),
                                        ((16, 32, 3, 2, 1, 1, 1, True, "zeros"), (8, 16, 32, 32)),
                                        ((16, 32, 1, 2, 0, 1, 1, True, "zeros"), (8, 16, 32, 32))])
def test_bitwise_equal_for_1_and_2_threads(isa: str, args: tuple[Any, ...],
                                           shape: tuple[int, ...]) -> None:
    """Shapes above the GEMM's parallel cut (the first splits M on 6-row tiles: 3200 rows; the
    one- and three-channel layers run the window-row gathers in parallel GEMMs; the stride-2
    layers' dL/dx phase GEMMs each exceed the cut): every output, gradient and dL/dx bit for
    bit."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape).astype(np.float32)
    results = []
    for t in (1, 2):
        sg.manual_seed(4)
        ours, _ = _make(2, args)
        with num_threads(t):
            y = ours(x)
            gy = np.random.default_rng(10).standard_normal(y.shape).astype(np.float32)
            ours.zero_grad()
            dx = ours.backward(gy)
        results.append((y.copy(), dx.copy(), ours.weight.grad.copy(), ours.bias.grad.copy()))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_accumulate_and_input_grad_false(rng: np.random.Generator) -> None:
    """Two backwards without zero_grad sum their gradients; input_grad=False returns None and
    gives the same parameter gradients."""
    ours, _ = _make(2, (3, 5, 3, 2, 1, 1, 1, True, "zeros"))
    x1 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    x2 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    g1 = rng.standard_normal((2, 5, 4, 4)).astype(np.float32)
    g2 = rng.standard_normal((2, 5, 4, 4)).astype(np.float32)
    grads = []
    for x, g in ((x1, g1), (x2, g2)):
        ours(x)
        ours.zero_grad()
        ours.backward(g)
        grads.append((ours.weight.grad.copy(), ours.bias.grad.copy()))
    ours(x1)
    ours.zero_grad()
    assert ours.backward(g1, input_grad=False) is None
    np.testing.assert_array_equal(ours.weight.grad, grads[0][0])
    ours(x2)
    ours.backward(g2, input_grad=False)
    for got, a, b in ((ours.weight.grad, *[gg[0] for gg in grads]),
                      (ours.bias.grad, *[gg[1] for gg in grads])):
        assert_close(got, a + b, 4 * U * (np.abs(a) + np.abs(b)), what="accumulated")


def test_sequential_conv_relu_flatten_linear(rng: np.random.Generator) -> None:
    """Forward and backward of the stack against torch in float64, each result within the
    float32 bound propagated through the layers (a layer's own k u sum|terms| plus the
    incoming bound through its absolute weights; ReLU and Flatten add none)."""
    sg.manual_seed(6)
    conv = nn.Conv2d(2, 4, 3, padding=1)
    lin = nn.Linear(4 * 6 * 6, 3)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)
    assert plan_set(model, "fused") == {0}
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).double()
    twin.load_state_dict({k: torch.from_numpy(v.astype(np.float64))
                          for k, v in model.state_dict().items()})
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    ty = twin(tx)
    y = model(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(gy.astype(np.float64)))
    model.zero_grad()
    dx = model.backward(gy)

    F = torch.nn.functional
    t = {k: torch.from_numpy(np.abs(v).astype(np.float64)) for k, v in model.state_dict().items()}
    ax, agy = torch.from_numpy(np.abs(x).astype(np.float64)), torch.from_numpy(np.abs(gy).astype(np.float64))
    k_conv, k_lin, pix = 2 * 9 + 1, 4 * 36 + 1, 3 * 36
    h = twin[1](twin[0](tx)).detach()
    mask = (h > 0).double()
    err_h = 2 * k_conv * U * (F.conv2d(ax, t["0.weight"], t["0.bias"], padding=1))
    ah = h.abs().flatten(1)
    err_y = 2 * k_lin * U * (ah @ t["3.weight"].T + t["3.bias"]) + err_h.flatten(1) @ t["3.weight"].T
    assert_close(y, ty.detach().numpy(), err_y.numpy(), what="sequential y")
    adh = (agy @ t["3.weight"]).reshape(h.shape) * mask  # |dL/dh| magnitudes, masked
    err_dh = 2 * 3 * U * adh
    conv_t = torch.nn.Conv2d(2, 4, 3, padding=1, bias=False).double()
    with torch.no_grad():
        conv_t.weight.copy_(t["0.weight"])

    def conv_grads(xv: torch.Tensor, gv: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        xv = xv.clone().requires_grad_(True)
        conv_t.zero_grad()
        conv_t(xv).backward(gv)
        return xv.grad.numpy(), conv_t.weight.grad.numpy()

    mag_dx, mag_dw = conv_grads(ax, adh)
    prop_dx, prop_dw = conv_grads(ax, err_dh)
    assert_close(dx, tx.grad.numpy(), 2 * 4 * 9 * U * mag_dx + prop_dx, what="sequential dx")
    assert_close(conv.weight.grad, twin[0].weight.grad.numpy(), 2 * pix * U * mag_dw + prop_dw,
                 what="sequential conv dw")
    err_dwl = 2 * 3 * U * (agy.T @ ah) + agy.T @ err_h.flatten(1)
    assert_close(lin.weight.grad, twin[3].weight.grad.numpy(), err_dwl.numpy(),
                 what="sequential fc dw")
    s = model.summary(3, input_shape=(2, 6, 6), file=None)
    assert s["input_shape"] == (3, 2, 6, 6)


def test_memory_reports_buffers_by_layout() -> None:
    """memory(): the output, the channels-last copies of input and output when converting
    (channels-first defaults) and the padded input of a non-zero padding_mode; dL/dx."""
    m = nn.Conv2d(8, 16, 3, padding=1)
    n_in, n_out = 4 * 8 * 100, 4 * 16 * 100
    assert m.memory((4, 8, 10, 10)) == (4 * (2 * n_out + n_in), 4 * n_in)
    assert m.memory((4, 8, 10, 10), LAST, LAST) == (4 * n_out, 4 * n_in)
    r = nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect")
    assert r.memory((4, 8, 10, 10), LAST, LAST) == (4 * (n_out + 4 * 8 * 144), 4 * n_in)


BAD_CTORS: list[tuple[Any, str]] = [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), "in_channels must be divisible by groups"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), "out_channels must be divisible by groups"),
    (lambda: nn.Conv2d(3, 4, 3, padding_mode="mirror"), "padding_mode"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), "padding='same'"),
    (lambda: nn.Conv1d(3, 4, 3, padding="full"), "padding"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 0), "kernel_size"),
    (lambda: nn.Conv2d(0, 4, 3), "in_channels"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), "stride"),
    (lambda: nn.Conv1d(3, 4, 3, dilation=1.5), "dilation"),
    (lambda: nn.Conv2d(3, 4, 3, groups=True), "groups"),
]


@pytest.mark.parametrize("make,needle", BAD_CTORS)
def test_bad_constructor_arguments(make: Any, needle: str) -> None:
    with pytest.raises((TypeError, ValueError), match=needle.replace("(", r"\(")) as e:
        make()
    assert "Conv" in str(e.value)


@pytest.mark.parametrize("shape,needle", [((3, 8), "4-D input"), ((2, 5, 8, 8), "3 channels"),
                                          ((2, 3, 2, 8), "too small"),
                                          ((2, 3, 1, 1), "too small")])
def test_bad_forward_shapes_name_layer_and_shape(shape: tuple[int, ...], needle: str) -> None:
    m = nn.Conv2d(3, 4, 3)
    before = m.weight.data.copy()
    with pytest.raises(ValueError, match=needle) as e:
        m(np.zeros(shape, np.float32))
    assert "Conv2d(3, 4" in str(e.value) and str(shape) in str(e.value)
    np.testing.assert_array_equal(m.weight.data, before)
    with pytest.raises(ValueError, match=needle):
        m.output_shape(shape)


def test_bad_padding_for_mode_and_bad_grad() -> None:
    m = nn.Conv1d(2, 2, 3, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match="reflect"):
        m(np.zeros((1, 2, 3), np.float32))
    m = nn.Conv1d(2, 2, 3, padding=4, padding_mode="circular")
    with pytest.raises(ValueError, match="circular"):
        m(np.zeros((1, 2, 3), np.float32))
    m = nn.Conv2d(2, 3, 3)
    y = m(np.zeros((1, 2, 5, 5), np.float32))
    m.zero_grad()
    with pytest.raises(ValueError, match=r"grad_output .*\(1, 3, 3, 3\)"):
        m.backward(np.zeros((1, 3, 3, 4), np.float32))
    assert m.weight.grad is None
    with pytest.raises(TypeError, match="float32"):
        m(np.zeros((1, 2, 5, 5), np.float64))
    assert y.shape == (1, 3, 3, 3)


def test_binding_validates_before_writing(rng: np.random.Generator) -> None:
    g = _core.ConvGeometry(n=1, h=5, w=5, c_in=2, c_out=3, kh=3, kw=3)
    x = rng.standard_normal((1, 5, 5, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((1, 3, 3, 3)).astype(np.float32)
    dw = np.full(w.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match="input must have shape"):
        _core.conv2d_forward(x[:, :4], w, None, g)
    with pytest.raises(ValueError, match="weight must have shape"):
        _core.conv2d_forward(x, np.ascontiguousarray(w[:, :1]), None, g)
    with pytest.raises(ValueError, match="grad_input"):
        _core.conv2d_backward(dy, x, w, g, dw, None, grad_input=dy.reshape(-1)[:1].reshape(1, 1, 1, 1))
    with pytest.raises(ValueError, match="grad_weight"):
        _core.conv2d_backward(dy, x, w, g, w, None)
    np.testing.assert_array_equal(dw, 7.0)
    dx = _core.conv2d_backward(dy, x, w, g, dw, None, grad_input=x)
    assert dx is x  # dL/dx over the input, computed after dW read it


def test_eval_forward_during_pending_backward_keeps_its_caches(rng: np.random.Generator) -> None:
    """An eval forward between a training forward and its backward (another shape, another
    padding buffer) leaves the pending backward's input, geometry and buffers alone."""
    for mode in ("zeros", "circular"):
        m = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode=mode)
        x1 = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
        g = rng.standard_normal((2, 4, 5, 4)).astype(np.float32)
        m(x1)
        m.zero_grad()
        want = m.backward(g).copy(), m.weight.grad.copy()
        m(x1)
        m.eval()
        m(rng.standard_normal((1, 3, 5, 5)).astype(np.float32))
        m.train()
        m.zero_grad()
        got = m.backward(g), m.weight.grad
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


def test_copies_and_pickles_after_shape_queries(rng: np.random.Generator) -> None:
    """output_shape / summary cache the geometry (a _core object): deepcopy and pickle still
    work and the copies compute the same (copies after calls: tests/test_nn_copy.py)."""
    import copy
    import pickle

    m = nn.Conv2d(2, 3, 3, padding_mode="replicate", padding=1)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    assert m.output_shape(x.shape) == (2, 3, 5, 5)
    m.summary(2, input_shape=(2, 5, 5), file=None)
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        np.testing.assert_array_equal(twin(x), m(x))
