"""The README's "Writing a layer" example (examples/custom_layer.py): its numpy backward
against float64 central differences, alone and inside a Sequential between Linear layers (the
gradients the built-in layers pass through it and the one it writes into its Parameter)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import steadygrad as sg
from steadygrad import nn

_spec = importlib.util.spec_from_file_location(
    "custom_layer", Path(__file__).resolve().parent.parent / "examples" / "custom_layer.py")
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def _swish(x, beta):
    return x / (1.0 + np.exp(-beta * x))


def _central(f, v, h=1e-6):
    out = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[i] = h
        out[i] = (f(v + e) - f(v - e)) / (2 * h)
    return out


def test_the_layers_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    layer = example.LearnableSwish(6, beta=0.8)
    layer.beta.data = rng.uniform(-2, 2, 6).astype(np.float32)
    x = rng.standard_normal((7, 6)).astype(np.float32)
    g = rng.standard_normal((7, 6)).astype(np.float32)
    y = layer(x)
    np.testing.assert_allclose(y, _swish(x.astype(np.float64), layer.beta.data.astype(np.float64)),
                               rtol=1e-6, atol=1e-7)
    layer.zero_grad()
    dx = layer.backward(g)
    b64, x64, g64 = (a.astype(np.float64) for a in (layer.beta.data, x, g))
    fd_x = _central(lambda v: np.sum(_swish(v, b64) * g64), x64)
    fd_b = _central(lambda v: np.sum(_swish(x64, v) * g64), b64)
    # float32 arithmetic, a handful of roundings per element (and 7 summed terms for beta)
    np.testing.assert_allclose(dx, fd_x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.beta.grad, fd_b, rtol=1e-5, atol=1e-5)
    assert dx.dtype == np.float32 and layer.beta.grad.dtype == np.float32


def test_inside_a_sequential_every_gradient_matches_finite_differences():
    sg.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), example.LearnableSwish(5, beta=1.3), nn.Linear(5, 2))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 1, 1, 0])
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), labels)
    dx = model.backward(loss_fn.backward())
    w1, b1, beta, w2, b2 = (p.data.astype(np.float64) for p in model.parameters())
    x64 = x.astype(np.float64)

    def loss(w1=w1, b1=b1, beta=beta, w2=w2, b2=b2, x=x64):
        z = _swish(x @ w1.T + b1, beta) @ w2.T + b2
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(4), labels]))

    names = ["w1", "b1", "beta", "w2", "b2"]
    for name, p, v in zip(names, model.parameters(), (w1, b1, beta, w2, b2), strict=True):
        fd = _central(lambda u, name=name: loss(**{name: u}), v)
        np.testing.assert_allclose(p.grad, fd, rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(dx, _central(lambda u: loss(x=u), x64), rtol=1e-4, atol=1e-6)


def test_a_bad_input_names_the_layer():
    model = nn.Sequential(nn.Linear(3, 5), example.LearnableSwish(4))
    with pytest.raises(ValueError, match=r"LearnableSwish\(4\): expected input of shape \(batch, 4\)"):
        model(np.zeros((2, 3), np.float32))
