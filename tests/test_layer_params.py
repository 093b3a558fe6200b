"""Scalar parameters of layers and losses as torch has them: public attributes that a caller
may read and assign after construction (the next call uses the new value, repr shows it),
and the plan declarations the kernel layers share (nn.plan.KernelLayer)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close

from steadygrad import nn
from steadygrad.nn.plan import KernelLayer

# (make, attribute, new value, torch's function of x at the new values)
ACTIVATIONS: list[tuple[Callable[[], Any], dict[str, float], Callable[..., torch.Tensor]]] = [
    (lambda: nn.LeakyReLU(0.1), {"negative_slope": 0.3},
     lambda t, p: F.leaky_relu(t, p["negative_slope"])),
    (lambda: nn.ELU(alpha=0.5), {"alpha": 2.0}, lambda t, p: F.elu(t, p["alpha"])),
    (lambda: nn.Softplus(beta=1.0, threshold=20.0), {"beta": 2.0, "threshold": 1.5},
     lambda t, p: F.softplus(t, p["beta"], p["threshold"])),
]


@pytest.mark.parametrize("make,new,ref", ACTIVATIONS, ids=["LeakyReLU", "ELU", "Softplus"])
def test_activation_parameter_assigned_after_construction_is_used(rng, make, new, ref):
    m = make()
    for name, v in new.items():
        setattr(m, name, v)
        assert getattr(m, name) == v
    assert repr(m) == f"{type(m).__name__}(" + ", ".join(f"{k}={v}" for k, v in new.items()) + ")"
    x = rng.standard_normal((5, 7)).astype(np.float32) * 3
    dy = rng.standard_normal((5, 7)).astype(np.float32)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    want = ref(t, new)
    want.backward(torch.tensor(dy.astype(np.float64)))
    assert_close(m(x), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert_close(m.backward(dy), t.grad.numpy(), rtol=1e-5, atol=1e-6)
    c = copy.deepcopy(m)  # a copy keeps the assigned values
    assert [getattr(c, k) for k in new] == list(new.values())


def test_activation_parameters_are_checked_and_named_by_keyword():
    assert nn.LeakyReLU(negative_slope=2).negative_slope == 2.0
    assert nn.Softplus(threshold=3).threshold == 3.0
    with pytest.raises(TypeError, match=r"^Softplus: threshold must be a real number, got 'a'"):
        nn.Softplus(2.0, "a")
    with pytest.raises(TypeError, match=r"^ELU: alpha must be a real number, got True"):
        nn.ELU(True)


@pytest.mark.parametrize("make,name,new,ref", [
    (lambda: nn.SmoothL1Loss(beta=0.5), "beta", 2.0,
     lambda a, b, v: F.smooth_l1_loss(a, b, beta=v)),
    (lambda: nn.HuberLoss(delta=0.5), "delta", 2.0, lambda a, b, v: F.huber_loss(a, b, delta=v)),
], ids=["SmoothL1Loss", "HuberLoss"])
def test_loss_parameter_assigned_after_construction_is_used(rng, make, name, new, ref):
    lf = make()
    setattr(lf, name, new)
    assert repr(lf) == f"{type(lf).__name__}(reduction='mean', {name}={new})"
    x = rng.standard_normal((6, 4)).astype(np.float32) * 3
    y = rng.standard_normal((6, 4)).astype(np.float32)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    want = ref(t, torch.tensor(y.astype(np.float64)), new)
    want.backward()
    assert_close(np.float64(lf(x, y)), want.item(), atol=0.0, rtol=1e-5)
    assert_close(lf.backward(), t.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layer", [
    nn.Linear(3, 2), nn.Conv2d(2, 4, 3), nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.MaxPool2d(2),
    nn.AvgPool1d(2), nn.AdaptiveAvgPool2d(1),
], ids=lambda m: type(m).__name__)
def test_kernel_layers_declare_what_the_plan_may_ask(layer):
    assert isinstance(layer, KernelLayer)
    assert (layer.grad_into_input, layer.skips_grad_input, layer.owns_output,
            layer.reads_output_in_backward) == (True, True, True, False)


def test_a_depthwise_conv_does_not_take_dx_over_its_input():
    m = nn.Conv2d(4, 4, 3, groups=4)
    assert not m.grad_into_input and m.skips_grad_input  # its kernel writes dL/dx elsewhere
    assert nn.Conv2d(4, 4, 3).grad_into_input
