"""A Sequential's plan (nn.plan): decided from what layers declare, so subclasses keep their
fusion and new layers join without Sequential knowing them; inspectable; bitwise the same
results as running each layer alone."""

from __future__ import annotations

import numpy as np
import pytest

import steadygrad as sg
from steadygrad import nn


class MyLinear(nn.Linear):
    """A user's subclass: it declares nothing, it inherits Linear's declarations."""


class Passthrough(nn.Module):
    """A layer that declares nothing: never fused, never donates, its neighbours keep buffers."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        return grad_output


def test_a_subclass_keeps_the_fusion() -> None:
    m = nn.Sequential(MyLinear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU(),
                      nn.Linear(8, 2))
    plan = m.plan()
    assert [lp.epilogue for lp in plan] == ["relu", "none", "none", "relu", "none", "none"]
    assert [lp.absorbed for lp in plan] == [False, True, False, False, True, False]
    assert [lp.producer_masks_grad for lp in plan] == [False, False, False, False, True, False]
    # Linear after Linear+ReLU: the ReLU's backward still reads the buffer -> no donation;
    # BatchNorm after a Linear, Linear after BatchNorm+ReLU (which masks itself) -> donation
    assert [lp.donate_input for lp in plan] == [False, False, False, True, False, True]
    text = "\n".join(lp.describe() for lp in plan)
    assert "[0] MyLinear(4 -> 8): fuses relu into its output" in text
    assert "[4] ReLU(): runs inside the previous layer (forward and backward)" in text


def test_layers_that_declare_nothing_stop_fusion_and_donation() -> None:
    m = nn.Sequential(nn.Linear(4, 4), Passthrough(), nn.ReLU(), nn.Linear(4, 4), nn.LeakyReLU(),
                      nn.Tanh(), nn.Linear(4, 2), nn.GELU(), nn.Linear(2, 2))
    plan = m.plan()
    assert all(lp.epilogue == "none" and not lp.absorbed for lp in plan)
    # after ReLU (reads its input, not its output): donates; after Tanh (reads its output): not;
    # after GELU: donates; after the pass-through (not its own buffer): not
    assert [i for i, lp in enumerate(plan) if lp.donate_input] == [3, 8]


def test_the_plan_follows_a_changed_structure() -> None:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    assert m.plan()[0].epilogue == "relu"
    setattr(m, "1", nn.Tanh())  # replaced child: the plan is made again
    assert m.plan()[0].epilogue == "none" and not m.plan()[1].absorbed


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_planned_run_is_bitwise_the_layers_run_alone(mode: str, rng: np.random.Generator) -> None:
    sg.manual_seed(3)
    m = nn.Sequential(MyLinear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(),
                      nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Linear(16, 3))
    sg.manual_seed(3)
    alone = [MyLinear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(),
             nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Linear(16, 3)]
    m.train(mode == "train")
    for layer in alone:
        layer.train(mode == "train")
    x = rng.standard_normal((10, 6)).astype(np.float32)
    g = rng.standard_normal((10, 3)).astype(np.float32)
    h = x
    for layer in alone:
        h = layer(h)
    y = m(x)
    np.testing.assert_array_equal(y, h)
    dx = m.backward(g)
    for layer in reversed(alone):
        g = layer.backward(g)
    np.testing.assert_array_equal(dx, g)
    for a, b in zip(m, alone, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            np.testing.assert_array_equal(p.grad, q.grad)
