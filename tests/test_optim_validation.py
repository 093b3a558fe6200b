"""Hyperparameters and loaded state are validated before anything changes: a bad value in a
later parameter group (set through param_groups, a state_dict or a checkpoint) raises a clear
ValueError naming the group/parameter/key, and parameters, gradients, state buffers, step
counts and param_groups stay byte for byte as they were (a twin optimizer that never saw the
bad value then continues identically)."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from optim_helpers import make_params, torch_one_thread  # noqa: F401 (autouse fixture)

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.checkpoint import CheckpointError
from steadygrad.nn import Parameter, flatten

nan, inf = math.nan, math.inf

OPTS = {
    "sgd": (optim.SGD, dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    "sgd-nesterov": (optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True)),
    "adam": (optim.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=0.1)),
    "adamw": (optim.AdamW, dict(lr=1e-2)),
    "rmsprop": (optim.RMSprop, dict(lr=1e-3, centered=True, momentum=0.9)),
    "adagrad": (optim.Adagrad, dict(lr=1e-2, lr_decay=0.01, initial_accumulator_value=0.1)),
    "nadam": (optim.NAdam, dict(lr=1e-2, weight_decay=0.1)),
}

# (optimizer, key, bad value, the message after "param_groups[1]: ")
BAD_GROUP = [
    ("sgd", "lr", nan, "Invalid learning rate: nan"),
    ("sgd", "lr", -0.1, "Invalid learning rate: -0.1"),
    ("sgd", "lr", inf, "Invalid learning rate: inf"),
    ("sgd", "momentum", nan, "Invalid momentum value: nan"),
    ("sgd", "weight_decay", -1.0, "Invalid weight_decay value: -1.0"),
    ("sgd", "dampening", nan, "Invalid dampening value: nan"),
    ("sgd", "maximize", "no", "Invalid maximize value: 'no' (expected a bool)"),
    ("sgd-nesterov", "dampening", 0.1, "Nesterov momentum requires a momentum and zero dampening"),
    ("adam", "lr", nan, "Invalid learning rate: nan"),
    ("adam", "lr", "1e-3", "Invalid learning rate: '1e-3' (expected a real number, got str)"),
    ("adam", "eps", -1e-8, "Invalid epsilon value: -1e-08"),
    ("adam", "betas", (1.0, 0.999), "Invalid beta parameter at index 0: 1.0"),
    ("adam", "betas", (0.9, nan), "Invalid beta parameter at index 1: nan"),
    ("adam", "betas", 0.9, "Invalid betas: 0.9 (expected a pair of floats)"),
    ("adam", "weight_decay", inf, "Invalid weight_decay value: inf"),
    ("adam", "amsgrad", None, "Invalid amsgrad value: None (expected a bool)"),
    ("adamw", "lr", nan, "Invalid learning rate: nan"),
    ("adamw", "weight_decay", nan, "Invalid weight_decay value: nan"),
    ("rmsprop", "lr", nan, "Invalid learning rate: nan"),
    ("rmsprop", "alpha", -0.5, "Invalid alpha value: -0.5"),
    ("rmsprop", "eps", nan, "Invalid epsilon value: nan"),
    ("rmsprop", "momentum", nan, "Invalid momentum value: nan"),
    ("rmsprop", "centered", "yes", "Invalid centered value: 'yes' (expected a bool)"),
    ("adagrad", "lr", nan, "Invalid learning rate: nan"),
    ("adagrad", "lr_decay", -0.5, "Invalid lr_decay value: -0.5"),
    ("adagrad", "lr_decay", nan, "Invalid lr_decay value: nan"),
    ("adagrad", "eps", inf, "Invalid epsilon value: inf"),
    ("adagrad", "initial_accumulator_value", -1.0, "Invalid initial_accumulator_value value: -1.0"),
    ("nadam", "momentum_decay", nan, "Invalid momentum_decay value: nan"),
    ("nadam", "betas", (0.9, 1.0), "Invalid beta parameter at index 1: 1.0"),
    ("nadam", "decoupled_weight_decay", 1, "Invalid decoupled_weight_decay value: 1 (expected a bool)"),
]
BAD_IDS = [f"{o}-{k}-{v}" for o, k, v, _ in BAD_GROUP]


def grads_for(ps: list[Parameter], rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.standard_normal(p.shape).astype(np.float32) for p in ps]


def twin_setup(name: str, rng: np.random.Generator):
    """Two identical optimizers over identical parameters in 3 groups ({0, 1}, {2}, {3}),
    both having taken 2 steps (state exists), with the same fresh gradients pending."""
    cls, kw = OPTS[name]
    ps, _ = make_params(rng)
    ps2 = [Parameter(p.data.copy()) for p in ps]
    flatten(ps2)

    def groups(q):
        return [{"params": q[:2]}, {"params": [q[2]], "lr": kw["lr"] / 2}, {"params": [q[3]]}]

    opt, opt2 = cls(groups(ps), **kw), cls(groups(ps2), **kw)
    for _ in range(3):
        for p, p2, g in zip(ps, ps2, grads_for(ps, rng), strict=True):
            p.grad = g
            p2.grad = g
        if _ < 2:
            opt.step()
            opt2.step()
    return opt, ps, opt2, ps2


def snapshot(opt, ps):
    """Bytes of everything a step or a load could change."""
    sd = opt.state_dict()
    state = {i: {k: np.asarray(v).tobytes() for k, v in st.items()} for i, st in sd["state"].items()}
    return (opt.storage.data.tobytes(), opt.storage.grad.tobytes(), [p.grad_fresh for p in ps],
            {k: v.tobytes() for k, v in opt._bufs.items()}, opt._step.tobytes(), state,
            repr(opt.param_groups), opt.skipped_steps, opt.consecutive_skips)


def continue_identically(opt, ps, opt2, ps2, rng, steps=2):
    """The pending gradients and two more steps give both optimizers the same bytes."""
    for t in range(steps):
        if t:
            for p, p2, g in zip(ps, ps2, grads_for(ps, rng), strict=True):
                p.grad = g
                p2.grad = g
        opt.step()
        opt2.step()
    for p, p2 in zip(ps, ps2, strict=True):
        np.testing.assert_array_equal(p.data, p2.data)
    assert snapshot(opt, ps)[3:6] == snapshot(opt2, ps2)[3:6]


@pytest.mark.parametrize("name,key,bad,msg", BAD_GROUP, ids=BAD_IDS)
def test_bad_value_in_later_group_makes_step_raise_and_change_nothing(name, key, bad, msg):
    rng = np.random.default_rng(0)
    opt, ps, opt2, ps2 = twin_setup(name, rng)
    good = opt.param_groups[1][key]
    opt.param_groups[1][key] = bad
    before = snapshot(opt, ps)
    expect = f"{type(opt).__name__}.step: param_groups[1]: {msg}; nothing was changed"
    with pytest.raises(ValueError, match=re.escape(expect)):
        opt.step()
    assert snapshot(opt, ps) == before
    assert opt._step.tolist() == [2, 2, 2, 2]
    opt.param_groups[1][key] = good
    continue_identically(opt, ps, opt2, ps2, rng)


@pytest.mark.parametrize("name,key,bad,msg", BAD_GROUP, ids=BAD_IDS)
def test_bad_value_in_loaded_group_raises_and_changes_nothing(name, key, bad, msg):
    rng = np.random.default_rng(1)
    opt, ps, opt2, ps2 = twin_setup(name, rng)
    sd = opt.state_dict()
    sd["param_groups"][1][key] = bad
    before = snapshot(opt, ps)
    expect = f"load_state_dict: param_groups[1]: {msg}; the optimizer was not changed"
    with pytest.raises(ValueError, match=re.escape(expect)):
        opt.load_state_dict(sd)
    assert snapshot(opt, ps) == before
    continue_identically(opt, ps, opt2, ps2, rng)


def _negative(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flat[1] = -1e-3
    return out


def _nan_at_2(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out.flat[2] = nan
    return out


# (optimizer, state key, replacement made from the live value, exception, message regex)
BAD_STATE = [
    ("adam", "step", lambda a: inf, ValueError, r"\['step'\] must be an integer in \[0, 2\*\*53\], got inf"),
    ("adam", "step", lambda a: nan, ValueError, r"\['step'\] must be an integer .*, got nan"),
    ("adam", "step", lambda a: -1.0, ValueError, r"\['step'\] must be an integer .*, got -1.0"),
    ("adam", "step", lambda a: 2.5, ValueError, r"\['step'\] must be an integer .*, got 2.5"),
    ("adam", "step", lambda a: 2.0**60, ValueError, r"\['step'\] must be an integer .*, got 1.15"),
    ("adam", "step", lambda a: np.array([1.0, 2.0]), ValueError, r"\['step'\] must be a number"),
    ("adam", "exp_avg_sq", _negative, ValueError, r"\['exp_avg_sq'\] holds a negative value"),
    ("adam", "max_exp_avg_sq", _negative, ValueError, r"\['max_exp_avg_sq'\] holds a negative"),
    ("adam", "exp_avg", _nan_at_2, ValueError, r"\['exp_avg'\] holds a non-finite value .*index 2"),
    ("adam", "exp_avg", lambda a: np.full(a.shape, 1e39), ValueError,
     r"\['exp_avg'\] holds a non-finite value in float32 \(1e\+39"),
    ("adam", "exp_avg", lambda a: np.ones(a.shape, np.int64), TypeError,
     r"\['exp_avg'\] must be a float array, got dtype int64"),
    ("adam", "exp_avg", lambda a: a.reshape(-1)[:4], ValueError,
     r"\['exp_avg'\] has shape \(4,\), expected \(3, 4, 2\)"),
    ("adam", "exp_avg", lambda a: torch.zeros(a.shape, dtype=torch.bfloat16), TypeError,
     r"\['exp_avg'\] cannot be read as an array"),
    ("adamw", "exp_avg_sqq", lambda a: a, ValueError, r": unknown state entry 'exp_avg_sqq'"),
    ("rmsprop", "square_avg", _negative, ValueError, r"\['square_avg'\] holds a negative"),
    ("rmsprop", "grad_avg", lambda a: np.full(a.shape, -inf, np.float32), ValueError,
     r"\['grad_avg'\] holds a non-finite"),
    ("sgd", "momentum_buffer", _nan_at_2, ValueError, r"\['momentum_buffer'\] holds a non-finite"),
    ("adagrad", "sum", _negative, ValueError, r"\['sum'\] holds a negative value"),
    ("adagrad", "sum", _nan_at_2, ValueError, r"\['sum'\] holds a non-finite"),
    ("nadam", "mu_product", lambda a: nan, ValueError, r"\['mu_product'\] must be in \[0, 1\]"),
    ("nadam", "mu_product", lambda a: 1.5, ValueError, r"\['mu_product'\] must be in \[0, 1\] \(a product of momentum factors\), got 1.5"),
    ("nadam", "mu_product", lambda a: np.ones(2), ValueError, r"\['mu_product'\] must be a number"),
    ("nadam", "exp_avg_sq", _negative, ValueError, r"\['exp_avg_sq'\] holds a negative"),
]


@pytest.mark.parametrize("name,key,make,exc,msg", BAD_STATE,
                         ids=[f"{o}-{k}-{i}" for i, (o, k, *_) in enumerate(BAD_STATE)])
def test_bad_loaded_state_raises_naming_parameter_and_changes_nothing(name, key, make, exc, msg):
    rng = np.random.default_rng(2)
    opt, ps, opt2, ps2 = twin_setup(name, rng)
    sd = opt.state_dict()
    st = sd["state"][3]  # parameter 3: group 2
    st[key] = make(st.get(key, st.get("exp_avg")))
    before = snapshot(opt, ps)
    with pytest.raises(exc, match=r"^load_state_dict: state\[3\]" + msg) as err:
        opt.load_state_dict(sd)
    assert "(for parameter 3 (group 2, index 3, shape (3, 4, 2)); the optimizer was not changed)" \
        in str(err.value)
    assert snapshot(opt, ps) == before
    continue_identically(opt, ps, opt2, ps2, rng)


def test_bad_structure_and_counters_raise_and_change_nothing():
    rng = np.random.default_rng(3)
    opt, ps, opt2, ps2 = twin_setup("adam", rng)
    good = opt.state_dict()
    before = snapshot(opt, ps)
    cases = [
        (None, TypeError, "state_dict must be a dict with 'param_groups'"),
        ({"state": {}}, TypeError, "state_dict must be a dict with 'param_groups'"),
        (dict(good, state=[1, 2]), TypeError, "'state' a dict"),
        (dict(good, param_groups=[*good["param_groups"][:2], 5]), TypeError,
         r"param_groups\[2\] must be a dict with a 'params' list"),
        (dict(good, state={**good["state"], 3: 7}), TypeError, r"state\[3\] must be a dict"),
        (dict(good, steadygrad={"skipped_steps": -1}), ValueError, "skipped_steps'] must be an int >= 0"),
        (dict(good, steadygrad={"consecutive_skips": 1.5}), ValueError, "consecutive_skips'] must be"),
    ]
    for sd, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            opt.load_state_dict(copy.deepcopy(sd))
        assert snapshot(opt, ps) == before
    continue_identically(opt, ps, opt2, ps2, rng)


def _model_and_adam(rng: np.random.Generator):
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.Adam([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 5e-3}],
                     lr=1e-2)
    loss_fn = nn.MSELoss()
    for _ in range(2):
        x = rng.standard_normal((16, 6)).astype(np.float32)
        opt.zero_grad()
        loss_fn(model(x), np.zeros((16, 3), np.float32))
        model.backward(loss_fn.backward())
        opt.step()
    return model, opt


@pytest.mark.parametrize("damage", ["negative exp_avg_sq", "nan lr"])
def test_checkpoint_with_bad_optimizer_state_is_refused_and_changes_nothing(tmp_path, damage):
    rng = np.random.default_rng(4)
    model, opt = _model_and_adam(rng)
    if damage == "negative exp_avg_sq":
        opt.state[model[2].weight]["exp_avg_sq"][...] = -1.0  # a view: writes go through
        msg = r"state\[2\]\['exp_avg_sq'\] holds a negative value .*group 1"
    else:
        opt.param_groups[1]["lr"] = nan
        msg = r"param_groups\[1\]: Invalid learning rate: nan"
    path = tmp_path / "ckpt.sg"
    sg.save(path, model, opt)
    model2, opt2 = _model_and_adam(rng)
    params_before = {k: v.tobytes() for k, v in model2.state_dict().items()}
    opt_before = snapshot(opt2, model2.parameters())
    with pytest.raises(CheckpointError, match=msg):
        sg.load(path, model2, opt2)
    assert {k: v.tobytes() for k, v in model2.state_dict().items()} == params_before
    assert snapshot(opt2, model2.parameters()) == opt_before


@pytest.mark.parametrize("cls,kw,msg", [
    (optim.SGD, dict(lr=nan), "Invalid learning rate: nan"),  # torch's SGD accepts it (NaN weights)
    (optim.SGD, dict(lr=inf), "Invalid learning rate: inf"),
    (optim.SGD, dict(dampening=nan), "Invalid dampening value: nan"),
    (optim.Adam, dict(lr=inf), "Invalid learning rate: inf"),
    (optim.Adam, dict(betas=(0.9, nan)), "Invalid beta parameter at index 1: nan"),
    (optim.AdamW, dict(eps=nan), "Invalid epsilon value: nan"),
    (optim.RMSprop, dict(alpha=nan), "Invalid alpha value: nan"),
    (optim.RMSprop, dict(lr="0.1"), "Invalid learning rate: '0.1' (expected a real number, got str)"),
], ids=lambda x: str(x))
def test_constructor_rejects_nan_inf_and_wrong_types(cls, kw, msg):
    ps, _ = make_params(np.random.default_rng(5))
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        cls(ps, **kw)


def test_add_param_group_with_bad_value_names_group_and_adds_nothing():
    ps, _ = make_params(np.random.default_rng(6))
    opt = optim.SGD(ps[:2], lr=0.1, momentum=0.9)
    storage = opt.storage
    with pytest.raises(ValueError, match=re.escape("param_groups[1]: Invalid momentum value: -1.0")):
        opt.add_param_group({"params": ps[2:], "momentum": -1.0})
    assert len(opt.param_groups) == 1 and opt._params == ps[:2] and opt.storage is storage


def test_clip_options_are_checked_when_assigned():
    ps, _ = make_params(np.random.default_rng(7))
    opt = optim.Adam(ps, max_grad_norm=1.0)
    with pytest.raises(ValueError, match=r"^Invalid max_grad_norm value: nan$"):
        opt.max_grad_norm = nan
    with pytest.raises(ValueError, match="Only one of max_grad_norm and max_grad_value"):
        opt.max_grad_value = 0.5
    with pytest.raises(ValueError, match="norm_type must not be NaN"):
        opt.norm_type = nan
    assert opt.max_grad_norm == 1.0 and opt.max_grad_value is None and opt.norm_type == 2.0
    opt.max_grad_norm = None
    opt.max_grad_value = 0.5
    assert opt.max_grad_value == 0.5
