"""Unbatched input as torch accepts it (issue 13): Conv1d/Conv2d and the pooling layers take
(C, L) / (C, H, W) and treat it as a batch of one, returning an output without the batch
dimension, and a backward that takes dL/dy and returns dL/dx in those shapes. Checked against
the same layer on the batch of one (bitwise: the same kernels run) and against torch (outputs,
dL/dx, dW, db within the float32 error bound). BatchNorm2d on 3-d input raises, as torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from steadygrad import nn

EPS = float(np.finfo(np.float32).eps)

LAYERS: dict[str, tuple[Callable[[], Any], Callable[[], Any], tuple[int, ...]]] = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
               lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), (3, 9, 8)),
    "Conv2d depthwise": (lambda: nn.Conv2d(3, 6, 3, padding="same", groups=3),
                         lambda: torch.nn.Conv2d(3, 6, 3, padding="same", groups=3), (3, 7, 5)),
    "Conv1d": (lambda: nn.Conv1d(3, 5, 4, dilation=2),
               lambda: torch.nn.Conv1d(3, 5, 4, dilation=2), (3, 17)),
    "MaxPool2d": (lambda: nn.MaxPool2d(3, 2, 1), lambda: torch.nn.MaxPool2d(3, 2, 1), (3, 9, 8)),
    "MaxPool1d": (lambda: nn.MaxPool1d(2), lambda: torch.nn.MaxPool1d(2), (3, 9)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2, ceil_mode=True),
                  lambda: torch.nn.AvgPool2d(2, ceil_mode=True), (3, 7, 6)),
    "AvgPool1d": (lambda: nn.AvgPool1d(3, 2, 1), lambda: torch.nn.AvgPool1d(3, 2, 1), (2, 11)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)),
                          lambda: torch.nn.AdaptiveAvgPool2d((2, 3)), (3, 7, 9)),
    "AdaptiveAvgPool1d": (lambda: nn.AdaptiveAvgPool1d(4),
                          lambda: torch.nn.AdaptiveAvgPool1d(4), (2, 9)),
}


def _copy_params(ours: Any, theirs: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            p.copy_(torch.from_numpy(getattr(ours, name).data))


def _bound(x: np.ndarray, w: np.ndarray | None) -> float:
    """Sum of |terms| times eps times the terms' count: a bound on float32 summation error."""
    if w is None:
        return float(np.abs(x).max()) * 16 * EPS
    return float(np.abs(x).sum() * np.abs(w).max()) * 4 * EPS


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_unbatched_input_matches_the_batch_of_one_and_torch(name: str,
                                                           rng: np.random.Generator) -> None:
    make, make_torch, shape = LAYERS[name]
    layer, ref = make(), make()
    ref.load_state_dict(layer.state_dict())
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    want = ref(x[None])
    assert y.shape == want.shape[1:]
    np.testing.assert_array_equal(y, want[0])
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(g)
    dx_ref = ref.backward(g[None])
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, dx_ref[0])
    for p, q in zip(layer.parameters(), ref.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)
    assert layer.output_shape(shape) == y.shape

    t = make_torch()
    _copy_params(layer, t)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = t(xt)  # torch's own unbatched rule
    assert tuple(yt.shape) == y.shape
    yt.backward(torch.from_numpy(g))
    w = getattr(layer, "weight", None)
    wd = None if w is None else w.data
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=0, atol=_bound(x, wd))
    assert xt.grad is not None
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=_bound(g, wd))
    if w is not None:
        tw = t.weight.grad
        assert tw is not None
        np.testing.assert_allclose(w.grad, tw.numpy(), rtol=0,
                                   atol=float(np.abs(g).sum() * np.abs(x).max()) * 4 * EPS)


def test_unbatched_input_through_a_sequential_conv_stack(rng: np.random.Generator) -> None:
    """Inside a channels-last run the layers pass (H, W, C) arrays on, as torch passes (C, H, W)."""
    def stack() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(4, 3, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    m, ref = stack(), stack()
    ref.load_state_dict(m.state_dict())
    x = rng.standard_normal((2, 12, 10)).astype(np.float32)
    y = m(x)
    np.testing.assert_array_equal(y, ref(x[None])[0])
    assert y.shape == (3, 1, 1)
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(m.backward(g), ref.backward(g[None])[0])
    for p, q in zip(m.parameters(), ref.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.Conv2d(3, 4, 3), (3, 8), r"expected a 3-D \(unbatched\) or 4-D input"),
    (lambda: nn.Conv1d(3, 4, 3), (3,), r"expected a 2-D \(unbatched\) or 3-D input"),
    (lambda: nn.Conv2d(3, 4, 3), (2, 8, 8), r"expected input with 3 channels"),
    (lambda: nn.MaxPool2d(2), (3, 8), r"expected 3-d \(unbatched\) or 4-d input"),
    (lambda: nn.BatchNorm2d(3), (3, 8, 8), r"expected 4D input \(got 3D input"),
])
def test_other_ranks_raise_naming_the_layer(make: Callable[[], Any], shape: tuple[int, ...],
                                            match: str) -> None:
    layer = make()
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape, np.float32))


def test_unbatched_grad_output_of_the_wrong_shape_raises(rng: np.random.Generator) -> None:
    layer = nn.Conv2d(2, 3, 3)
    y = layer(rng.standard_normal((2, 5, 5)).astype(np.float32))
    with pytest.raises(ValueError, match="grad_output must be a float32 array of the output's shape"):
        layer.backward(np.zeros((3, 3, 4), np.float32))
    assert layer.backward(np.ones_like(y)).shape == (2, 5, 5)  # the pending backward intact
