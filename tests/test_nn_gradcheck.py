"""Finite-difference checks: each layer's and loss's float32 gradients (through the C++
kernels) against central differences of a float64 numpy reference of the same function
(eps 1e-6), on small shapes. The references are written from the PyTorch formulas. Layer
tolerances: the float32 rounding bound of each result (reference_net: Monte Carlo spread of
the same computation) plus the central difference's own error (_fd_err)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from conftest import assert_close, plan_set
from reference_net import ReferenceNet
from roundoff import Noisy

from steadygrad import nn

F = Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]
erf = np.vectorize(math.erf)



def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _bn_train(x: np.ndarray, p: dict[str, np.ndarray], eps: float = 1e-5) -> np.ndarray:
    xh = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
    return xh * p.get("weight", 1.0) + p.get("bias", 0.0)


def _fd_err(f: F, x: np.ndarray, params: dict[str, np.ndarray], dout: np.ndarray,
            eps: float = 1e-6) -> float:
    """A bound on a central difference's own error: float64 rounding of the two losses, a few
    ulps of the sum of |f * dout| each, over 2 eps; the truncation error, eps^2 / 6 times the
    third derivative, is 1e-13 for these O(1) smooth functions."""
    return 8 * 2.0**-52 * float(np.abs(f(x, params) * dout).sum()) / (2 * eps) + 1e-12


def _bounds(m: nn.Module, x: np.ndarray, dout: np.ndarray) -> tuple[Noisy, Noisy, dict[str, Noisy]]:
    """The float64 reference of m's forward and backward with float32 rounding bounds (taken
    before m's own forward moves any running statistics)."""
    ref = ReferenceNet(m)
    y = ref.forward(x)
    dx, grads = ref.backward(dout)
    return y, dx, grads


def _fd(f: F, x: np.ndarray, params: dict[str, np.ndarray], dout: np.ndarray, target: np.ndarray,
        eps: float = 1e-6) -> np.ndarray:
    g = np.zeros_like(target)
    it = np.nditer(target, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = target[i]
        target[i] = old + eps
        lp = (f(x, params) * dout).sum()
        target[i] = old - eps
        lm = (f(x, params) * dout).sum()
        target[i] = old
        g[i] = (lp - lm) / (2 * eps)
    return g


CASES: dict[str, tuple[Callable[[], nn.Module], F]] = {
    "linear": (lambda: nn.Linear(5, 4), lambda x, p: x @ p["weight"].T + p["bias"]),
    "relu": (nn.ReLU, lambda x, p: np.maximum(x, 0)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), lambda x, p: np.where(x > 0, x, 0.1 * x)),
    "gelu": (nn.GELU, lambda x, p: _gelu(x)),
    "gelu_tanh": (lambda: nn.GELU("tanh"), lambda x, p: _gelu_tanh(x)),
    "tanh": (nn.Tanh, lambda x, p: np.tanh(x)),
    "sigmoid": (nn.Sigmoid, lambda x, p: 1 / (1 + np.exp(-x))),
    "batchnorm_train": (lambda: nn.BatchNorm1d(5), _bn_train),
    "batchnorm_noaffine": (lambda: nn.BatchNorm1d(5, affine=False), _bn_train),
    "flatten": (nn.Flatten, lambda x, p: x.reshape(x.shape[0], -1)),
    "identity": (nn.Identity, lambda x, p: x),
    "residual": (lambda: nn.Residual(nn.Sequential(nn.Linear(5, 5), nn.Tanh())),
                 lambda x, p: x + np.tanh(x @ p["module.0.weight"].T + p["module.0.bias"])),
}


@pytest.mark.parametrize("name", list(CASES))
def test_layer_gradients_match_finite_differences(isa: str, name: str, rng: np.random.Generator) -> None:
    make, ref = CASES[name]
    m = make()
    x = rng.standard_normal((6, 5)).astype(np.float32)
    x[np.abs(x) < 0.05] = 0.3  # keep away from the ReLU kink
    for p in m.parameters():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    dout = rng.standard_normal(m.output_shape(x.shape)).astype(np.float32)
    ry, rdx, rgrads = _bounds(m, x, dout)
    y = m(x)
    dx = m.backward(dout)
    xd = x.astype(np.float64)
    params = {k: p.data.astype(np.float64) for k, p in m.named_parameters()}
    dd = dout.astype(np.float64)
    fd_err = _fd_err(ref, xd, params, dd)
    assert_close(y, ref(xd, params), ry.bound(), what="forward")
    assert_close(dx, _fd(ref, xd, params, dd, xd), rdx.bound() + fd_err, what="grad_input")
    for k, p in m.named_parameters():
        assert_close(p.grad, _fd(ref, xd, params, dd, params[k]), rgrads[k].bound() + fd_err, what=k)


def test_batchnorm_eval_gradients_match_finite_differences(rng: np.random.Generator) -> None:
    m = nn.BatchNorm1d(4)
    m.running_mean[...] = rng.standard_normal(4)
    m.running_var[...] = rng.uniform(0.5, 2, 4)
    for p in m.parameters():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    m.eval()
    rm, rv = m.running_mean.astype(np.float64), m.running_var.astype(np.float64)

    def ref(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        return (x - rm) / np.sqrt(rv + 1e-5) * p["weight"] + p["bias"]

    x = rng.standard_normal((5, 4)).astype(np.float32)
    dout = rng.standard_normal((5, 4)).astype(np.float32).astype(np.float64)
    ry, rdx, rgrads = _bounds(m, x, dout.astype(np.float32))
    y, dx = m(x), m.backward(dout.astype(np.float32))
    params = {k: p.data.astype(np.float64) for k, p in m.named_parameters()}
    xd = x.astype(np.float64)
    fd_err = _fd_err(ref, xd, params, dout)
    assert_close(y, ref(xd, params), ry.bound(), what="forward")
    assert_close(dx, _fd(ref, xd, params, dout, xd), rdx.bound() + fd_err, what="grad_input")
    for k, p in m.named_parameters():
        assert_close(p.grad, _fd(ref, xd, params, dout, params[k]), rgrads[k].bound() + fd_err, what=k)


def test_dropout_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    m = nn.Dropout(0.4)
    x = rng.standard_normal((7, 9)).astype(np.float32) + 5  # nonzero, so y == 0 marks the mask
    y = m(x)
    keep = (y != 0).astype(np.float64)
    dout = rng.standard_normal(y.shape)
    dx = m.backward(dout.astype(np.float32))

    def ref(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        return x * keep / 0.6

    xd = x.astype(np.float64)
    np.testing.assert_allclose(y, ref(xd, {}), rtol=1e-6)
    np.testing.assert_allclose(dx, _fd(ref, xd, {}, dout, xd), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_gradient_matches_finite_differences(reduction: str, smoothing: float,
                                                           rng: np.random.Generator) -> None:
    x = (rng.standard_normal((5, 4)) * 2).astype(np.float32)
    t = rng.integers(0, 4, 5)

    def ref(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        z = x - x.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        q = np.full_like(x, smoothing / x.shape[1])
        q[np.arange(len(t)), t] += 1 - smoothing
        per = -(q * logp).sum(1)
        return np.asarray(per.mean() if reduction == "mean" else per.sum())

    lf = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    xd = x.astype(np.float64)
    assert lf(x, t) == pytest.approx(float(ref(xd, {})), rel=1e-6)
    np.testing.assert_allclose(lf.backward(), _fd(ref, xd, {}, np.ones(()), xd), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_gradient_matches_finite_differences(reduction: str, rng: np.random.Generator) -> None:
    p_, t = rng.standard_normal((2, 4, 3)).astype(np.float32)
    td = t.astype(np.float64)

    def ref(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        s = ((x - td) ** 2)
        return np.asarray(s.mean() if reduction == "mean" else s.sum())

    lf = nn.MSELoss(reduction=reduction)
    xd = p_.astype(np.float64)
    assert lf(p_, t) == pytest.approx(float(ref(xd, {})), rel=1e-6)
    np.testing.assert_allclose(lf.backward(), _fd(ref, xd, {}, np.ones(()), xd), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_linear_bn_relu_fused_gradients_match_finite_differences(isa: str, mode: str,
                                                                  rng: np.random.Generator) -> None:
    m = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU())
    assert plan_set(m, 'fused_masked') == {1}
    for p in m.parameters():
        p.data = rng.standard_normal(p.shape).astype(np.float32)
    m[1].running_mean[...] = rng.standard_normal(6) * 0.5
    m[1].running_var[...] = rng.uniform(0.5, 2.0, 6)
    m.train(mode == "train")
    rm, rv = m[1].running_mean.astype(np.float64), m[1].running_var.astype(np.float64)

    def ref(x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
        z = x @ p["0.weight"].T + p["0.bias"]
        mu, var = (z.mean(0), z.var(0)) if mode == "train" else (rm, rv)
        return np.maximum((z - mu) / np.sqrt(var + 1e-5) * p["1.weight"] + p["1.bias"], 0)

    x = rng.standard_normal((7, 5)).astype(np.float32)
    params = {k: p.data.astype(np.float64) for k, p in m.named_parameters()}
    xd = x.astype(np.float64)
    yr = ref(xd, params)
    assert (yr == 0).any() and (yr > 0).any() and np.abs(yr[yr != 0]).min() > 1e-3  # off the kink
    dout = rng.standard_normal(yr.shape).astype(np.float32).astype(np.float64)
    ry, rdx, rgrads = _bounds(m, x, dout.astype(np.float32))
    y = m(x)
    dx = m.backward(dout.astype(np.float32))
    assert m[2]._work == {}  # the ReLU ran fused
    fd_err = _fd_err(ref, xd, params, dout)
    assert_close(y, yr, ry.bound(), what="forward")
    assert_close(dx, _fd(ref, xd, params, dout, xd), rdx.bound() + fd_err, what="grad_input")
    for k, p in m.named_parameters():
        assert_close(p.grad, _fd(ref, xd, params, dout, params[k]), rgrads[k].bound() + fd_err, what=k)
