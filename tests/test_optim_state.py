"""Optimizer construction and state: PyTorch's hyperparameter errors, bad arrays rejected with
state untouched, state_dict round trips (and loading torch's), storage handling, zero_grad."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from optim_helpers import (
    assert_close_params,
    make_params,
    torch_one_thread,  # noqa: F401 (autouse fixture)
)

import steadygrad as sg
from steadygrad import optim
from steadygrad.nn import Parameter

BAD_HYPER = [
    ("Adam", dict(lr=-1.0)),
    ("Adam", dict(eps=-1e-3)),
    ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))),
    ("Adam", dict(weight_decay=-0.5)),
    ("AdamW", dict(lr=-0.1)),
    ("AdamW", dict(betas=(0.9, 1.0))),
    ("RMSprop", dict(lr=-1.0)),
    ("RMSprop", dict(eps=-1.0)),
    ("RMSprop", dict(momentum=-0.1)),
    ("RMSprop", dict(weight_decay=-1.0)),
    ("RMSprop", dict(alpha=-0.5)),
    ("SGD", dict(lr=-1.0)),
    ("SGD", dict(momentum=-1.0)),
    ("SGD", dict(weight_decay=-1.0)),
    ("SGD", dict(nesterov=True)),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ("Adagrad", dict(lr=-1.0)),
    ("Adagrad", dict(lr_decay=-0.1)),
    ("Adagrad", dict(weight_decay=-1.0)),
    ("Adagrad", dict(initial_accumulator_value=-0.5)),
    ("Adagrad", dict(eps=-1e-10)),
    ("NAdam", dict(lr=-1.0)),
    ("NAdam", dict(eps=-1.0)),
    ("NAdam", dict(betas=(1.0, 0.999))),
    ("NAdam", dict(betas=(0.9, 1.5))),
    ("NAdam", dict(weight_decay=-0.1)),
    ("NAdam", dict(momentum_decay=-4e-3)),
]


def fill_grads(ps: list[Parameter], value: float) -> None:
    for p in ps:
        p.grad = np.full(p.shape, value, np.float32)


@pytest.mark.parametrize("name,kw", BAD_HYPER, ids=lambda x: str(x))
def test_invalid_hyperparameters_raise_torchs_error(name, kw):
    rng = np.random.default_rng(0)
    ps, tps = make_params(rng)
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)(tps, **kw)
    with pytest.raises(ValueError) as ours:
        getattr(optim, name)(ps, **kw)
    assert str(ours.value) == str(theirs.value)


def test_empty_and_duplicate_parameters():
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.Adam([])
    rng = np.random.default_rng(1)
    ps, _ = make_params(rng)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}])
    with pytest.raises(TypeError, match="can only optimize Parameters"):
        optim.SGD([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="Only one of max_grad_norm and max_grad_value"):
        optim.SGD(ps, max_grad_norm=1.0, max_grad_value=1.0)
    with pytest.raises(ValueError, match="Invalid max_grad_norm"):
        optim.SGD(ps, max_grad_norm=-1.0)


def test_bad_arrays_rejected_by_binding_with_state_untouched():
    n = 64
    p, g, m, v = (np.zeros(n, np.float32) for _ in range(4))
    off, ln = np.array([0], np.int64), np.array([n], np.int64)
    hyper = sg._core.AdamHyper(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                               amsgrad=False, decoupled=False, step=1)
    g[:] = 1.0
    with pytest.raises(TypeError, match="adam_step: exp_avg must have dtype float32, got float64"):
        sg._core.adam_step(p, g, m.astype(np.float64), v, None, off, ln, hyper)
    with pytest.raises(ValueError, match="exp_avg_sq must have the flat length of param"):
        sg._core.adam_step(p, g, m, v[:10], None, off, ln, hyper)
    with pytest.raises(ValueError, match="must not overlap"):
        sg._core.adam_step(p, g, m, m, None, off, ln, hyper)
    with pytest.raises(ValueError, match="outside the flat buffer"):
        sg._core.adam_step(p, g, m, v, None, off, np.array([n + 1], np.int64), hyper)
    sgd = sg._core.SgdHyper(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
    with pytest.raises(ValueError, match="sorted by offset and must not overlap"):
        sg._core.sgd_step(p, g, None, np.array([0, 8], np.int64), np.array([16, 8], np.int64), sgd)
    hyper.amsgrad = True
    with pytest.raises(ValueError, match=r"max_exp_avg_sq is required when hyper\.amsgrad=True"):
        sg._core.adam_step(p, g, m, v, None, off, ln, hyper)
    hyper.amsgrad = False
    ro = np.zeros(n, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param must be writeable"):
        sg._core.adam_step(ro, g, m, v, None, off, ln, hyper)
    rms = sg._core.RmspropHyper(lr=0.1, alpha=0.9, eps=1e-8, weight_decay=0.0, momentum=0.0,
                                centered=False)
    with pytest.raises(ValueError, match="C-contiguous"):
        sg._core.rmsprop_step(p, g, np.zeros(2 * n, np.float32)[::2], None, None, off, ln, rms)
    hyper.step = 0
    with pytest.raises(ValueError, match="step must be >= 1"):
        sg._core.adam_step(p, g, m, v, None, off, ln, hyper)
    with pytest.raises(TypeError):  # the struct is the only way hyperparameters cross
        sg._core.adam_step(p, g, m, v, None, off, ln, 1e-3)
    assert not p.any() and not m.any() and not v.any()


@pytest.mark.parametrize(
    "cls,kw",
    [(optim.Adam, dict(lr=1e-2, amsgrad=True)), (optim.AdamW, dict(lr=1e-2)),
     (optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.9)),
     (optim.SGD, dict(lr=1e-2, momentum=0.9)),
     (optim.Adagrad, dict(lr=1e-2, lr_decay=0.1, initial_accumulator_value=0.2)),
     (optim.NAdam, dict(lr=1e-2, weight_decay=0.1))],
    ids=["adam", "adamw", "rmsprop", "sgd", "adagrad", "nadam"],
)
def test_state_dict_round_trip_continues_identically(cls, kw):
    rng = np.random.default_rng(2)
    ps, _ = make_params(rng)
    groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": 5e-3}]
    opt = cls(groups, max_grad_norm=1.0, **kw)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in ps] for _ in range(10)]
    for t in range(5):
        for p, g in zip(ps, grads[t], strict=False):
            p.grad = g
        opt.step()
    sd = opt.state_dict()
    saved = [p.data.copy() for p in ps]
    # A fresh model + optimizer loaded from the dict must continue bit-for-bit.
    ps2 = [Parameter(x) for x in saved]
    from steadygrad.nn import flatten

    flatten(ps2)
    opt2 = cls([{"params": ps2[:2]}, {"params": ps2[2:]}], max_grad_norm=1.0, **kw)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 5e-3
    for t in range(5, 10):
        for p, p2, g in zip(ps, ps2, grads[t], strict=False):
            p.grad = g
            p2.grad = g
        opt.step()
        opt2.step()
    for p, p2 in zip(ps, ps2, strict=False):
        np.testing.assert_array_equal(p.data, p2.data)


def test_load_state_dict_validates_before_writing():
    rng = np.random.default_rng(3)
    ps, _ = make_params(rng)
    opt = optim.Adam(ps)
    fill_grads(ps, 1.0)
    opt.step()
    sd = opt.state_dict()
    before = opt.state_dict()
    bad = {"state": dict(sd["state"]), "param_groups": sd["param_groups"]}
    bad["state"][3] = dict(bad["state"][3], exp_avg=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"state\[3\]\['exp_avg'\] has shape \(2, 2\)"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": sd["param_groups"] * 2})
    after = opt.state_dict()
    for i in before["state"]:
        for k, v in before["state"][i].items():
            np.testing.assert_array_equal(after["state"][i][k], v)


def test_load_torch_state_dict_then_match_torch():
    rng = np.random.default_rng(4)
    ps, tps = make_params(rng)
    topt = torch.optim.Adam(tps, lr=1e-2, amsgrad=True)
    for _ in range(3):
        for tp in tps:
            tp.grad = torch.randn(tp.shape)
        topt.step()
    for p, tp in zip(ps, tps, strict=False):
        p.data = tp.detach().numpy()
    opt = optim.Adam(ps, lr=1e-2, amsgrad=True)
    opt.load_state_dict(topt.state_dict())
    for _ in range(5):
        for p, tp in zip(ps, tps, strict=False):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    assert_close_params(ps, tps)


def test_params_on_separate_storages_are_flattened_and_rebound():
    rng = np.random.default_rng(5)
    ps = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(3, 2), (4,)]]
    vals = [p.data.copy() for p in ps]
    opt = optim.SGD(ps, lr=0.5)
    assert ps[0].storage is ps[1].storage is opt.storage
    for p, v in zip(ps, vals, strict=False):
        np.testing.assert_array_equal(p.data, v)
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    for p, v in zip(ps, vals, strict=False):
        np.testing.assert_allclose(p.data, v - 0.5)


def test_zero_grad_and_no_fresh_gradients():
    rng = np.random.default_rng(6)
    ps, _ = make_params(rng)
    opt = optim.Adam(ps)
    fill_grads(ps, 1.0)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    data = opt.storage.data.copy()
    assert opt.step() is None
    np.testing.assert_array_equal(opt.storage.data, data)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in ps)
    assert opt.step() == 0.0


def test_step_returns_pre_clip_norm_and_add_param_group():
    rng = np.random.default_rng(7)
    ps, _ = make_params(rng)
    opt = optim.SGD(ps[:2], lr=0.1, max_grad_norm=0.1)
    opt.add_param_group({"params": ps[2:], "lr": 0.0})
    fill_grads(ps, 2.0)
    want = math.sqrt(sum(4.0 * p.size for p in ps))
    assert math.isclose(opt.step(), want, rel_tol=1e-12)
    assert "SGD" in repr(opt) and "Parameter Group 1" in repr(opt)


def test_state_property_gives_views_and_torch_kwargs_accepted():
    rng = np.random.default_rng(8)
    ps, _ = make_params(rng)
    opt = optim.Adam(ps, fused=True, foreach=None)
    assert opt.state == {}
    fill_grads(ps, 1.0)
    opt.step()
    st = opt.state[ps[0]]
    assert st["step"] == 1 and st["exp_avg"].shape == ps[0].shape
    st["exp_avg"][...] = 7.0
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], 7.0)


def test_add_param_group_from_another_storage_moves_state_along():
    rng = np.random.default_rng(9)
    ps, tps = make_params(rng)
    extra = Parameter(rng.standard_normal((6,)).astype(np.float32))  # its own storage
    textra = torch.tensor(extra.data.copy(), requires_grad=True)
    opt = optim.Adam(ps, lr=1e-2)
    topt = torch.optim.Adam(tps, lr=1e-2)

    def step(params, tparams):
        for p, tp in zip(params, tparams, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()

    for _ in range(3):
        step(ps, tps)
    old_storage = opt.storage
    opt.add_param_group({"params": [extra], "lr": 5e-3})
    topt.add_param_group({"params": [textra], "lr": 5e-3})
    assert opt.storage is not old_storage and extra.storage is opt.storage
    for _ in range(3):
        step([*ps, extra], [*tps, textra])
    assert_close_params([*ps, extra], [*tps, textra])


TORCH_TWINS = [
    (optim.Adagrad, torch.optim.Adagrad,
     dict(lr=1e-2, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3)),
    (optim.NAdam, torch.optim.NAdam, dict(lr=1e-2, momentum_decay=0.02)),
    (optim.NAdam, torch.optim.NAdam, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
]
TWIN_IDS = ["adagrad", "nadam", "nadam-decoupled"]


def _twin_steps(opt, topt, ps, tps, rng, steps):
    for _ in range(steps):
        for p, tp in zip(ps, tps, strict=True):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad = g
            tp.grad = torch.tensor(g)
        if opt is not None:
            opt.step()
        if topt is not None:
            topt.step()


@pytest.mark.parametrize("warm", [0, 3])
@pytest.mark.parametrize("cls,tcls,kw", TORCH_TWINS, ids=TWIN_IDS)
def test_torch_state_dict_loads_and_continues_like_torch(cls, tcls, kw, warm):
    # warm 0: a fresh torch optimizer's dict (Adagrad already has state: step 0 and sum).
    rng = np.random.default_rng(20)
    ps, tps = make_params(rng)
    groups = lambda q: [{"params": q[:2]}, {"params": q[2:], "lr": 3e-3}]  # noqa: E731
    topt = tcls(groups(tps), **kw)
    _twin_steps(None, topt, ps, tps, rng, warm)
    for p, tp in zip(ps, tps, strict=True):
        p.data = tp.detach().numpy()
    opt = cls(groups(ps), **kw)
    opt.load_state_dict(topt.state_dict())
    assert opt.param_groups[1]["lr"] == 3e-3
    _twin_steps(opt, topt, ps, tps, rng, 50)
    assert_close_params(ps, tps)


@pytest.mark.parametrize("cls,tcls,kw", TORCH_TWINS, ids=TWIN_IDS)
def test_state_dict_loads_into_torch_and_continues_like_torch(cls, tcls, kw):
    rng = np.random.default_rng(21)
    ps, tps = make_params(rng)
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3}], **kw)
    _twin_steps(opt, None, ps, tps, rng, 5)
    sd = opt.state_dict()
    want_keys = {"step", "sum"} if cls is optim.Adagrad else {
        "step", "mu_product", "exp_avg", "exp_avg_sq"}
    assert all(set(st) == want_keys for st in sd["state"].values()) and len(sd["state"]) == 4
    with torch.no_grad():
        for p, tp in zip(ps, tps, strict=True):
            tp.copy_(torch.from_numpy(p.data.copy()))
    topt = tcls([{"params": tps[:2]}, {"params": tps[2:]}], **kw)
    tsd = {"param_groups": sd["param_groups"],
           "state": {i: {k: torch.tensor(v) for k, v in st.items()} for i, st in sd["state"].items()}}
    topt.load_state_dict(tsd)
    assert topt.param_groups[1]["lr"] == 3e-3
    _twin_steps(opt, topt, ps, tps, rng, 50)
    assert_close_params(ps, tps)


def test_adagrad_state_exists_from_construction_like_torch():
    rng = np.random.default_rng(22)
    ps, tps = make_params(rng)
    opt = optim.Adagrad(ps, initial_accumulator_value=0.25)
    topt = torch.optim.Adagrad(tps, initial_accumulator_value=0.25)
    sd, tsd = opt.state_dict()["state"], topt.state_dict()["state"]
    assert sorted(sd) == sorted(tsd) == [0, 1, 2, 3]
    for i in sd:
        assert sd[i]["step"] == float(tsd[i]["step"]) == 0.0
        np.testing.assert_array_equal(sd[i]["sum"], tsd[i]["sum"].numpy())
    # A group added later starts at the same value (torch: at its first step).
    extra = Parameter(np.ones(5, np.float32))
    opt.add_param_group({"params": [extra]})
    np.testing.assert_array_equal(opt.state[extra]["sum"], np.full(5, 0.25, np.float32))


def test_adagrad_refuses_a_per_group_initial_accumulator_value_torch_would_ignore():
    rng = np.random.default_rng(23)
    ps, _ = make_params(rng)
    with pytest.raises(ValueError, match=r"param_groups\[1\]: initial_accumulator_value 0.5 "
                       r"differs from the optimizer's 0.0"):
        optim.Adagrad([{"params": ps[:2]}, {"params": ps[2:], "initial_accumulator_value": 0.5}])
    opt = optim.Adagrad(ps[:2], initial_accumulator_value=0.1)
    with pytest.raises(ValueError, match=r"differs from the optimizer's 0\.1"):
        opt.add_param_group({"params": ps[2:], "initial_accumulator_value": 0.0})
    assert len(opt.param_groups) == 1 and len(opt._params) == 2
    with pytest.raises(ValueError, match=r"Invalid initial_accumulator_value value: nan"):
        opt.add_param_group({"params": ps[2:], "initial_accumulator_value": math.nan})
