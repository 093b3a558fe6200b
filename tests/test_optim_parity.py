"""Optimizer trajectories against torch.optim (2.13, CPU) for 50 steps over a grid of every
option, with and without clipping (2-norm, inf-norm, value; torch: clip_grad_*_ then step),
parameter groups over non-contiguous subsets, and parameters with stale gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optim_helpers import (
    assert_close_params,
    assert_norms,
    make_params,
    run_trajectory,
    split_groups,
    torch_one_thread,  # noqa: F401 (autouse fixture)
)

from steadygrad import _core as sg_core
from steadygrad import optim

CLIPS = [None, ("norm", 1.0, 2.0), ("norm", 0.5, math.inf), ("value", 0.5, 0.0)]
CLIP_IDS = ["noclip", "clip2", "clipinf", "clipvalue"]


def sg_clip_kwargs(clip):
    if clip is None:
        return {}
    if clip[0] == "norm":
        return {"max_grad_norm": clip[1], "norm_type": clip[2]}
    return {"max_grad_value": clip[1]}


def check(sg_cls, torch_cls, kwargs, clip, groups=None, torch_kwargs=None, stale_every=0, state=()):
    rng = np.random.default_rng(7)
    ps, tps = make_params(rng)
    tkw = dict(kwargs, **(torch_kwargs or {}))
    opt = sg_cls(split_groups(ps, groups), **kwargs, **sg_clip_kwargs(clip))
    topt = torch_cls(split_groups(tps, groups), **tkw)
    norms = run_trajectory(opt, topt, ps, tps, rng, clip=clip, stale_every=stale_every)
    assert_close_params(ps, tps, what=f"{sg_cls.__name__} {kwargs} {clip}")
    assert_norms(norms)
    sd = opt.state_dict()["state"]
    tsd = topt.state_dict()["state"]
    for i in range(len(ps)):
        for name in state:
            want = tsd[i][name].numpy()
            # atol scaled to the buffer: sums of float32 terms cancel differently near zero.
            np.testing.assert_allclose(sd[i][name], want, rtol=1e-5,
                                       atol=1e-6 * max(1.0, float(np.abs(want).max())),
                                       err_msg=f"{name} of {i}")
        if "step" in tsd.get(i, {}):
            assert sd[i]["step"] == float(tsd[i]["step"])


@pytest.mark.parametrize("clip", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_torch(clip, amsgrad, maximize, weight_decay):
    kw = dict(lr=1e-2, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
    check(optim.Adam, torch.optim.Adam, kw, clip, state=names)


@pytest.mark.parametrize("clip", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [1e-2, 0.5])
def test_adamw_matches_torch(clip, amsgrad, weight_decay):
    kw = dict(lr=3e-2, weight_decay=weight_decay, amsgrad=amsgrad)
    check(optim.AdamW, torch.optim.AdamW, kw, clip, state=("exp_avg", "exp_avg_sq"))


def test_adam_large_beta1_uses_torch_lerp_form():
    # 1 - beta1 >= 0.5 switches at::lerp to its second form.
    check(optim.Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-6), None,
          state=("exp_avg", "exp_avg_sq"))


@pytest.mark.parametrize("clip", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_rmsprop_matches_torch(clip, centered, momentum, maximize, weight_decay):
    kw = dict(lr=1e-3, centered=centered, momentum=momentum, maximize=maximize,
              weight_decay=weight_decay)
    names = ("square_avg",) + (("grad_avg",) if centered else ()) + (
        ("momentum_buffer",) if momentum else ())
    check(optim.RMSprop, torch.optim.RMSprop, kw, clip, state=names)


def test_rmsprop_small_alpha_uses_torch_lerp_form():
    check(optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, alpha=0.3, centered=True), None,
          state=("square_avg", "grad_avg"))


SGD_CASES = [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.5),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.0, weight_decay=0.1),
    dict(momentum=0.9, weight_decay=0.1, nesterov=True),
    dict(momentum=0.8, dampening=0.2, weight_decay=0.05),
]


@pytest.mark.parametrize("clip", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("case", SGD_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("maximize", [False, True])
def test_sgd_matches_torch(clip, case, maximize):
    kw = dict(lr=1e-2, maximize=maximize, **case)
    check(optim.SGD, torch.optim.SGD, kw, clip,
          state=("momentum_buffer",) if case["momentum"] else ())


ADAGRAD_CASES = [
    dict(),
    dict(lr_decay=0.05),
    dict(weight_decay=0.1),
    dict(initial_accumulator_value=0.5),
    dict(lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-6),
]


NADAM_CASES = [
    dict(),
    dict(weight_decay=0.1),
    dict(weight_decay=0.1, decoupled_weight_decay=True),
    dict(momentum_decay=0.05),
    dict(betas=(0.3, 0.9), eps=1e-6),  # 1 - beta1 >= 0.5: at::lerp's second form
    dict(momentum_decay=0.0, weight_decay=0.5, decoupled_weight_decay=True),
]


# (name, ours, torch's, lr, state buffers compared, options) for the optimizers added later
LATER_CASES = [("Adagrad", optim.Adagrad, torch.optim.Adagrad, 5e-2, ("sum",), c)
               for c in ADAGRAD_CASES] + [
    ("NAdam", optim.NAdam, torch.optim.NAdam, 1e-2, ("exp_avg", "exp_avg_sq", "mu_product"), c)
    for c in NADAM_CASES]


@pytest.mark.parametrize("clip", CLIPS, ids=CLIP_IDS)
@pytest.mark.parametrize("spec", LATER_CASES, ids=lambda s: s[0] + "-" + (
    "-".join(f"{k}{v}" for k, v in s[5].items()) or "default"))
@pytest.mark.parametrize("maximize", [False, True])
def test_adagrad_and_nadam_match_torch(clip, spec, maximize):
    _, ours, theirs, lr, state, case = spec
    check(ours, theirs, dict(lr=lr, maximize=maximize, **case), clip, state=state)


GROUPS = [{"weight_decay": 0.1}, {"lr": 3e-3, "weight_decay": 0.0}]


@pytest.mark.parametrize("clip", [None, ("norm", 1.0, 2.0)], ids=["noclip", "clip2"])
@pytest.mark.parametrize(
    "sg_cls,torch_cls,kw",
    [
        (optim.Adam, torch.optim.Adam, dict(lr=1e-2)),
        (optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, amsgrad=True)),
        (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, momentum=0.5, centered=True)),
        (optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True)),
        (optim.Adagrad, torch.optim.Adagrad, dict(lr=1e-2, lr_decay=0.02)),
        (optim.NAdam, torch.optim.NAdam, dict(lr=1e-2, decoupled_weight_decay=True)),
    ],
    ids=["adam", "adamw", "rmsprop", "sgd", "adagrad", "nadam"],
)
def test_param_groups_match_torch(clip, sg_cls, torch_cls, kw):
    check(sg_cls, torch_cls, kw, clip, groups=GROUPS)


@pytest.mark.parametrize(
    "sg_cls,torch_cls,kw",
    [
        (optim.Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True)),
        (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, momentum=0.9)),
        (optim.SGD, torch.optim.SGD, dict(lr=1e-2, momentum=0.9, dampening=0.1)),
        (optim.Adagrad, torch.optim.Adagrad, dict(lr=1e-2, lr_decay=0.1)),
        (optim.NAdam, torch.optim.NAdam, dict(lr=1e-2, momentum_decay=0.05)),
    ],
    ids=["adam", "rmsprop", "sgd", "adagrad", "nadam"],
)
def test_stale_gradients_skip_parameters_like_torch(sg_cls, torch_cls, kw):
    # Parameter 1 has grad None every 4th step: torch skips it (its step count lags), so the
    # group needs one kernel call per distinct step count.
    check(sg_cls, torch_cls, kw, ("norm", 1.0, 2.0), stale_every=4)


@pytest.mark.parametrize(
    "sg_cls,torch_cls,kw",
    [
        (optim.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=0.01)),
        (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-4, centered=True, momentum=0.9)),
        (optim.SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.9)),
        (optim.Adagrad, torch.optim.Adagrad, dict(lr=1e-3, lr_decay=0.01, weight_decay=0.01)),
        (optim.NAdam, torch.optim.NAdam, dict(lr=1e-3, weight_decay=0.01)),
    ],
    ids=["adam", "rmsprop", "sgd", "adagrad", "nadam"],
)
def test_large_parameters_multithreaded_match_torch(sg_cls, torch_cls, kw):
    # > kElementwiseParallelMin elements and > 1 norm chunk: the threaded split and chunked norm.
    rng = np.random.default_rng(3)
    ps, tps = make_params(rng, [(300, 257), (1001,), (70000,)])
    opt = sg_cls(ps, max_grad_norm=5.0, **kw)
    topt = torch_cls(tps, **kw)
    norms = run_trajectory(opt, topt, ps, tps, rng, steps=12, clip=("norm", 5.0, 2.0))
    assert_close_params(ps, tps, what=sg_cls.__name__)
    assert_norms(norms)


def test_nadam_parameters_at_one_step_with_different_mu_products_match_torch(monkeypatch):
    # A stale gradient while beta1 changes leaves two parameters at the same step count with
    # different mu_products: the group's step needs one kernel call per mu_product.
    rng = np.random.default_rng(11)
    ps, tps = make_params(rng, [(9,), (6, 3)])
    opt, topt = optim.NAdam(ps, lr=1e-2), torch.optim.NAdam(tps, lr=1e-2)
    calls = []
    real = sg_core.nadam_step
    monkeypatch.setattr(sg_core, "nadam_step", lambda *a: calls.append(1) or real(*a))

    def step(fresh, beta1):
        for o in (opt, topt):
            o.param_groups[0]["betas"] = (beta1, 0.999)
        for i, (p, tp) in enumerate(zip(ps, tps, strict=True)):
            if i in fresh:
                g = rng.standard_normal(p.shape).astype(np.float32)
                p.grad, tp.grad = g, torch.tensor(g)
            else:
                p.grad, tp.grad = None, None
        opt.step()
        topt.step()

    step({0, 1}, 0.9)
    step({0}, 0.8)
    step({1}, 0.7)  # both at step 2 now, mu_products 0.9*0.8 vs 0.9*0.7 (times the schedule)
    calls.clear()
    mus = [opt.state_dict()["state"][i]["mu_product"] for i in range(2)]
    assert mus[0] != mus[1]
    for _ in range(50):
        step({0, 1}, 0.9)
    assert len(calls) == 100
    assert_close_params(ps, tps)
    tsd = topt.state_dict()["state"]
    for i in range(2):
        assert opt.state_dict()["state"][i]["mu_product"] == float(tsd[i]["mu_product"])
