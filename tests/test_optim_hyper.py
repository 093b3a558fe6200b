"""Hyperparameters cross the binding as one bound struct per optimizer (`_core.AdamHyper`,
`RmspropHyper`, `SgdHyper`, with the gradient prologue `GradPreHyper`): named, keyword-only
fields, one struct cached per parameter group and refreshed when the group changes. Changes
made between steps (a new value, a list mutated in place, max_grad_value, a closure's) reach
the kernel exactly as torch applies them, or raise before anything changes."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from optim_helpers import (
    assert_close_params,
    make_params,
    run_trajectory,
    torch_one_thread,  # noqa: F401 (autouse fixture)
)

import steadygrad as sg
from steadygrad import optim
from steadygrad.optim import _hyper

ADAM = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)


def _set(group: dict[str, Any], key: str, value: Any) -> None:
    """Assign, or with key "betas[0]" write into the (list) betas in place."""
    if key == "betas[0]":
        group["betas"][0] = value
    else:
        group[key] = value


# (optimizer, its options, (key, value) changes applied to both sides between two runs)
CHANGES = [
    ("Adam", ADAM, [("lr", 3e-3)]),
    ("Adam", ADAM, [("betas", [0.8, 0.99])]),
    ("Adam", ADAM, [("betas[0]", 0.5)]),  # a list group mutated in place
    ("Adam", ADAM, [("weight_decay", 0.0), ("maximize", True)]),
    ("AdamW", dict(lr=1e-2), [("eps", 1e-3)]),
    ("RMSprop", dict(lr=1e-3, momentum=0.9, centered=True), [("alpha", 0.5), ("lr", 1e-2)]),
    ("SGD", dict(lr=1e-2, momentum=0.9), [("dampening", 0.5), ("weight_decay", 0.01)]),
    ("SGD", dict(lr=1e-2, momentum=0.9, nesterov=True), [("lr", 0.1), ("maximize", True)]),
]


@pytest.mark.parametrize("name,kw,changes", CHANGES,
                         ids=[f"{c[0]}-{'+'.join(k for k, _ in c[2])}" for c in CHANGES])
def test_group_changes_between_steps_reach_the_kernel(name: str, kw: dict, changes: list) -> None:
    rng = np.random.default_rng(0)
    ps, tps = make_params(rng)
    opt, topt = getattr(optim, name)(ps, **kw), getattr(torch.optim, name)(tps, **kw)
    if "betas" in kw:  # betas as a list on both sides, so that it can be mutated in place
        for g in (opt.param_groups[0], topt.param_groups[0]):
            g["betas"] = list(g["betas"])
    run_trajectory(opt, topt, ps, tps, rng, steps=3)
    for key, value in changes:
        for g in (opt.param_groups[0], topt.param_groups[0]):
            _set(g, key, value)
    run_trajectory(opt, topt, ps, tps, rng, steps=3)
    assert_close_params(ps, tps, what=f"{name} after {changes}")


def test_max_grad_value_set_between_steps_reaches_the_kernel() -> None:
    rng = np.random.default_rng(1)
    ps, tps = make_params(rng)
    opt, topt = optim.Adam(ps, **ADAM), torch.optim.Adam(tps, **ADAM)
    run_trajectory(opt, topt, ps, tps, rng, steps=2)
    opt.max_grad_value = 0.01
    run_trajectory(opt, topt, ps, tps, rng, steps=3, clip=("value", 0.01, 0))
    opt.max_grad_value = None
    run_trajectory(opt, topt, ps, tps, rng, steps=2)
    assert_close_params(ps, tps)


def test_a_closure_that_breaks_a_hyperparameter_raises_and_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    ps, _ = make_params(rng)
    opt = optim.Adam(ps, **ADAM)
    for p in ps:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    opt.step()
    before = [p.data.copy() for p in ps], opt._step.copy()

    def closure() -> None:
        opt.param_groups[0]["lr"] = math.nan

    expect = "Adam.step: param_groups[0]: Invalid learning rate: nan; nothing was changed"
    with pytest.raises(ValueError, match=re.escape(expect)):
        opt.step(closure)
    for p, d in zip(ps, before[0], strict=True):
        np.testing.assert_array_equal(p.data, d)
    np.testing.assert_array_equal(opt._step, before[1])


def test_step_hands_the_kernel_its_group_as_one_struct(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field the kernel reads comes from the group, the step count or the clip."""
    rng = np.random.default_rng(3)
    ps, _ = make_params(rng)
    seen: list[dict[str, Any]] = []
    real = sg._core.adam_step

    def spy(*args: Any) -> None:
        h = args[-1]
        seen.append({k: getattr(h, k) for k in ("lr", "beta1", "beta2", "eps", "weight_decay",
                                                "amsgrad", "decoupled", "step")}
                    | {"pre": (h.pre.grad_scale, h.pre.clip_value, h.pre.maximize)})
        real(*args)

    monkeypatch.setattr(sg._core, "adam_step", spy)
    opt = optim.AdamW(ps, lr=2e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.25, amsgrad=True,
                      maximize=True, max_grad_norm=1e-3)
    for t in range(2):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(np.float32)
        total = opt.step()
        assert total is not None
        want = {"lr": 2e-3, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.25,
                "amsgrad": True, "decoupled": True, "step": t + 1,
                "pre": (1e-3 / (total + 1e-6), None, True)}
        assert seen[-1] == want  # exact: the doubles cross unchanged


def test_unchanged_groups_are_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step checks a group when its values changed since its last check, and only then."""
    rng = np.random.default_rng(4)
    ps, _ = make_params(rng)
    opt = optim.SGD([{"params": ps[:2]}, {"params": ps[2:]}], lr=1e-2, momentum=0.9)
    checked: list[float] = []
    real = _hyper.check_hyperparameters
    monkeypatch.setattr("steadygrad.optim.optimizer.check_hyperparameters",
                        lambda g, *a, **k: (checked.append(g["lr"]), real(g, *a, **k)))
    for p in ps:
        p.grad = np.ones(p.shape, np.float32)
    opt.step()  # the structs are made at the first step
    assert checked == [1e-2, 1e-2]
    opt.step()
    opt.param_groups[1]["lr"] = 5e-3
    opt.step()
    opt.step()
    assert checked == [1e-2, 1e-2, 5e-3]


def test_hyperparameter_structs_have_named_keyword_only_fields() -> None:
    core = sg._core
    with pytest.raises(TypeError):  # positional: a reorder of adjacent doubles cannot go unnoticed
        core.AdamHyper(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False)
    with pytest.raises(TypeError):  # no field has a silent default but the per-step ones
        core.AdamHyper(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False)
    h = core.AdamHyper(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                       amsgrad=False, decoupled=True)
    assert (h.lr, h.beta1, h.beta2, h.eps, h.step, h.decoupled) == (1e-3, 0.9, 0.999, 1e-8, 1, True)
    pre = h.pre  # the struct's own member, not a copy
    pre.grad_scale, pre.clip_value = 0.5, 2.0
    assert (h.pre.grad_scale, h.pre.clip_value) == (0.5, 2.0)
    pre.clip_value = None
    assert h.pre.clip_value is None
    assert repr(h) == ("AdamHyper(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0.0, "
                       "amsgrad=False, decoupled=True, step=1, pre=GradPreHyper(grad_scale=0.5, "
                       "clip_value=None, maximize=False))")
    s = core.SgdHyper(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)
    r = core.RmspropHyper(lr=0.1, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.0,
                          centered=True, pre=core.GradPreHyper(maximize=True))
    assert (s.nesterov, s.first, r.centered, r.pre.maximize) == (True, False, True, True)
