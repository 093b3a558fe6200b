"""CrossEntropyLoss and NLLLoss on torch's other input shapes: (N, C, d1, ..., dk) with targets
(N, d1, ..., dk) (or probabilities of the input's shape) — per-pixel classification — and the
unbatched (C,) input with a 0-d target. Loss (every reduction) and dL/dinput against torch in
float64; a bad target shape raises naming both shapes and leaves the pending gradient alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_close

from steadygrad import nn

SHAPES = [(3, 5, 4), (2, 4, 3, 5), (2, 3, 2, 2, 3)]


def _case(shape: tuple[int, ...], soft: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if soft:
        p = rng.random(shape).astype(np.float32)
        return x, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    t = rng.integers(0, shape[1], (shape[0], *shape[2:])).astype(np.int64)
    t.flat[::5] = -100 if seed % 2 else 1  # some ignored targets (ignore_index below)
    return x, t


def _torch(cls: str, x: np.ndarray, t: np.ndarray, kw: dict[str, Any],
           g: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64) if t.dtype.kind == "f" else torch.tensor(t)
    kw = {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v
          for k, v in kw.items()}
    inp = torch.log_softmax(xt, dim=1 if x.ndim > 1 else 0) if cls == "NLLLoss" else xt
    loss = getattr(torch.nn, cls)(**kw)(inp, tt)
    loss.backward(None if g is None else torch.tensor(g, dtype=torch.float64))
    return loss.detach().numpy(), xt.grad.numpy()


def _ours(cls: str, x: np.ndarray, t: np.ndarray, kw: dict[str, Any],
          g: np.ndarray | None) -> tuple[Any, np.ndarray, Any]:
    fn = getattr(nn, cls)(**kw)
    if cls == "NLLLoss":  # the log-probabilities as float64 -> float32, then the chain rule
        x64 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        lp = torch.log_softmax(x64, dim=1 if x.ndim > 1 else 0)
        loss = fn(lp.detach().numpy().astype(np.float32), t)
        d = fn.backward(g)
        lp.backward(torch.tensor(d, dtype=torch.float64))
        return loss, x64.grad.numpy(), fn
    loss = fn(x, t)
    return loss, fn.backward(g), fn


@pytest.mark.parametrize("cls", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nd_index_targets_match_torch(cls: str, shape: tuple[int, ...], reduction: str,
                                      weighted: bool) -> None:
    x, t = _case(shape, soft=False, seed=len(shape) + weighted)
    kw: dict[str, Any] = {"reduction": reduction, "ignore_index": -100}
    if weighted:
        kw["weight"] = np.linspace(0.5, 2.0, shape[1]).astype(np.float32)
    if cls == "CrossEntropyLoss":
        kw["label_smoothing"] = 0.1
    g = (np.random.default_rng(0).standard_normal(t.shape).astype(np.float32)
         if reduction == "none" else None)
    want_loss, want_dx = _torch(cls, x, t, kw, g)
    loss, dx, _ = _ours(cls, x, t, kw, g)
    assert np.shape(loss) == want_loss.shape
    assert dx.shape == x.shape
    # float32 log-softmax and a sum over at most 3*5*4 positions: rounding well below 1e-4
    assert_close(np.asarray(loss, np.float64), want_loss, 1e-4 * (1 + np.abs(want_loss)), what="loss")
    assert_close(dx, want_dx, 1e-5 * (1 + np.abs(want_dx)), what="dL/dx")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_nd_probability_targets_match_torch(shape: tuple[int, ...], reduction: str) -> None:
    x, t = _case(shape, soft=True, seed=7)
    kw: dict[str, Any] = {"reduction": reduction, "label_smoothing": 0.2}
    g = (np.random.default_rng(1).standard_normal((shape[0], *shape[2:])).astype(np.float32)
         if reduction == "none" else None)
    want_loss, want_dx = _torch("CrossEntropyLoss", x, t, kw, g)
    loss, dx, _ = _ours("CrossEntropyLoss", x, t, kw, g)
    assert_close(np.asarray(loss, np.float64), want_loss, 1e-4 * (1 + np.abs(want_loss)), what="loss")
    assert_close(dx, want_dx, 1e-5 * (1 + np.abs(want_dx)), what="dL/dx")


@pytest.mark.parametrize("cls", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_unbatched_input_matches_torch(cls: str, reduction: str) -> None:
    x = np.random.default_rng(3).standard_normal(6).astype(np.float32)
    t = np.array(4, np.int64)
    g = np.array(0.7, np.float32) if reduction == "none" else None
    want_loss, want_dx = _torch(cls, x, t, {"reduction": reduction}, g)
    loss, dx, _ = _ours(cls, x, t, {"reduction": reduction}, g)
    assert np.shape(loss) == ()
    assert dx.shape == (6,)
    assert_close(np.asarray(loss, np.float64), want_loss, 1e-5, what="loss")
    assert_close(dx, want_dx, 1e-6, what="dL/dx")


def test_bad_target_shape_names_both_shapes_and_keeps_the_pending_gradient() -> None:
    fn = nn.CrossEntropyLoss()
    x, t = _case((2, 4, 3), soft=False, seed=0)
    fn(x, np.abs(t))
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3\) for an input of "
                                         r"shape \(2, 4, 3\) \(class indices\), got \(2, 4\)"):
        fn(x, np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"target must have shape \(2, 4, 3\) .*probabilities"):
        fn(x, np.zeros((2, 3, 4), np.float32))
    assert fn.backward().shape == x.shape  # the first call's gradient is still there
