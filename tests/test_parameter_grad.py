"""Gradients written by custom layers: `Parameter.accumulate_grad(g)` writes a stale gradient
and adds to a fresh one (what built-in layers do), so a custom layer accumulates over several
backwards like torch; `p.grad = g` replaces the gradient as in PyTorch (the next backward
accumulates into it) and `p.grad = None` marks it stale; bad input raises, changing nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optim_helpers import torch_one_thread  # noqa: F401 (autouse fixture)

from steadygrad import nn, optim
from steadygrad.nn import Parameter


def test_accumulate_grad_writes_when_stale_and_adds_when_fresh():
    rng = np.random.default_rng(0)
    p = Parameter(rng.standard_normal((2, 3)).astype(np.float32))
    g1, g2 = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2))
    g3 = rng.standard_normal((2, 3))  # float64: added in float64, rounded once
    p.grad = np.full((2, 3), 7.0, np.float32)
    p.zero_grad()  # stale: the 7s are still in the buffer but must not be read
    assert p.grad is None
    p.accumulate_grad(g1)
    assert p.grad_fresh
    np.testing.assert_array_equal(p.grad, g1)
    p.accumulate_grad(g2)
    np.testing.assert_array_equal(p.grad, g1 + g2)
    p.accumulate_grad(g3)
    np.testing.assert_array_equal(p.grad, ((g1 + g2).astype(np.float64) + g3).astype(np.float32))


class Scale(nn.Module):
    """y = x * w (w per feature): a custom layer whose backward uses accumulate_grad."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        super().__init__()
        self.w = Parameter(rng.uniform(0.5, 1.5, n).astype(np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x.copy()
        return (x * self.w.data).astype(np.float32)

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        self.w.accumulate_grad((grad_output * self._x).sum(0))
        return (grad_output * self.w.data).astype(np.float32)


def test_custom_layer_accumulates_over_backwards_like_torch():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(4, 5), Scale(5, rng), nn.Linear(5, 2))
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    tw = torch.tensor(model[1].w.data.copy(), requires_grad=True)
    with torch.no_grad():
        for t, s in ((tmodel[0], model[0]), (tmodel[1], model[2])):
            t.weight.copy_(torch.tensor(s.weight.data))
            t.bias.copy_(torch.tensor(s.bias.data))
    tparams = [tmodel[0].weight, tmodel[0].bias, tw, tmodel[1].weight, tmodel[1].bias]
    opt = optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tparams, lr=0.1)
    loss_fn = nn.MSELoss()
    for micro_batches in (2, 1, 3):  # gradient accumulation over micro-batches, then a step
        opt.zero_grad()
        topt.zero_grad()
        for _ in range(micro_batches):
            x = rng.standard_normal((8, 4)).astype(np.float32)
            y = rng.standard_normal((8, 2)).astype(np.float32)
            loss_fn(model(x), y)
            model.backward(loss_fn.backward())
            tx = torch.tensor(x)
            ty = tmodel[1](tmodel[0](tx) * tw)
            torch.nn.functional.mse_loss(ty, torch.tensor(y)).backward()
        for p, tp in zip(model.parameters(), tparams, strict=True):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-6)
        opt.step()
        topt.step()
        for p, tp in zip(model.parameters(), tparams, strict=True):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fresh", [False, True], ids=["stale", "fresh"])
def test_bad_gradient_is_refused_and_changes_nothing(fresh):
    p = Parameter(np.zeros((2, 3), np.float32))
    if fresh:
        p.grad = np.arange(6, dtype=np.float32).reshape(2, 3)
    before = p.grad_buffer.copy()
    cases = [
        (np.ones((3, 2), np.float32), ValueError, r"expected shape \(2, 3\) \(the parameter's\), got \(3, 2\)"),
        (np.ones(6, np.float32), ValueError, r"expected shape \(2, 3\) \(the parameter's\), got \(6,\)"),
        (np.float32(1.0), ValueError, r"got \(\)"),
        (np.ones((2, 3), np.int64), TypeError, "expected a floating-point array .* got dtype int64"),
        (np.ones((2, 3), bool), TypeError, "got dtype bool"),
        (np.ones((2, 3), np.complex64), TypeError, "got dtype complex64"),
        ("abc", TypeError, "got dtype <U3"),
    ]
    for value, exc, msg in cases:
        with pytest.raises(exc, match=r"^Parameter\.accumulate_grad: .*" + msg):
            p.accumulate_grad(value)
        with pytest.raises(exc, match=r"^Parameter\.grad: .*" + msg):
            p.grad = value
        assert p.grad_fresh is fresh
        np.testing.assert_array_equal(p.grad_buffer, before)


def test_setting_grad_replaces_and_next_backward_accumulates_like_torch():
    rng = np.random.default_rng(2)
    layer = nn.Linear(3, 4)
    tlayer = torch.nn.Linear(3, 4)
    with torch.no_grad():
        tlayer.weight.copy_(torch.tensor(layer.weight.data))
        tlayer.bias.copy_(torch.tensor(layer.bias.data))
    x = rng.standard_normal((5, 3)).astype(np.float32)
    dy = rng.standard_normal((5, 4)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)

    def backward():
        layer(x)
        layer.backward(dy)
        tlayer(torch.tensor(x)).backward(torch.tensor(dy))

    backward()  # a first gradient that setting must replace, not add to
    layer.weight.grad = g
    tlayer.weight.grad = torch.tensor(g)
    layer.bias.grad = None
    tlayer.bias.grad = None
    np.testing.assert_array_equal(layer.weight.grad, g)
    assert layer.bias.grad is None
    backward()  # accumulates into g; writes the bias gradient afresh
    np.testing.assert_allclose(layer.weight.grad, tlayer.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, tlayer.bias.grad.numpy(), rtol=1e-5, atol=1e-6)
    layer.weight.grad = None
    tlayer.weight.grad = None
    backward()
    np.testing.assert_allclose(layer.weight.grad, tlayer.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.weight.grad, dy.T @ x, rtol=1e-5, atol=1e-6)
