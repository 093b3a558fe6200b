"""LR schedulers against torch.optim.lr_scheduler: identical lr (and momentum/beta1) sequences,
state_dict round trips, and torch's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from optim_helpers import (
    make_params,
    torch_one_thread,  # noqa: F401 (autouse fixture)
)

from steadygrad import optim
from steadygrad.optim import lr_scheduler as sls

TLS = torch.optim.lr_scheduler


class _HalfEvery:
    """A callable-object scale_fn (torch keeps its __dict__ in state_dict)."""

    def __init__(self) -> None:
        self.every = 20.0

    def __call__(self, x: float) -> float:
        return 0.5 ** (x // self.every)


def twin(opt_name="SGD", **kw):
    rng = np.random.default_rng(0)
    ps, tps = make_params(rng)
    kw = kw or dict(lr=0.1, momentum=0.9)
    groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.03}]
    tgroups = [{"params": tps[:2]}, {"params": tps[2:], "lr": 0.03}]
    return getattr(optim, opt_name)(groups, **kw), getattr(torch.optim, opt_name)(tgroups, **kw)


CASES = {
    "step": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "multistep": lambda m, o: m.MultiStepLR(o, milestones=[5, 12, 12, 30], gamma=0.3),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.95),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=20, eta_min=1e-4),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=10),
    "onecycle": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=60),
    "onecycle3-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.4, epochs=6, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"
    ),
    "cyclic": lambda m, o: m.CyclicLR(o, base_lr=[0.01, 0.002], max_lr=0.3, step_size_up=7,
                                      step_size_down=4),
    "cyclic-triangular2": lambda m, o: m.CyclicLR(o, 0.01, 0.2, step_size_up=5, mode="triangular2",
                                                  base_momentum=[0.7, 0.75], max_momentum=0.95),
    "cyclic-exp-range": lambda m, o: m.CyclicLR(o, 0.02, [0.4, 0.1], step_size_up=6, mode="exp_range",
                                                gamma=0.97),
    "cyclic-scale-fn": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=3, step_size_down=9,
                                               scale_fn=_HalfEvery(), scale_mode="iterations"),
}


class _Decay:
    """A callable-object lr_lambda (torch keeps its __dict__ in state_dict)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, epoch: int) -> float:
        return self.rate**epoch


CASES.update({
    "lambda": lambda m, o: m.LambdaLR(o, lambda e: 0.97**e + 0.01 * (e % 5)),
    "lambda-per-group": lambda m, o: m.LambdaLR(o, [_Decay(0.95), lambda e: 1.0 / (1 + e)]),
    "multiplicative": lambda m, o: m.MultiplicativeLR(o, lambda e: 0.98 if e % 3 else 1.01),
    "multiplicative-per-group": lambda m, o: m.MultiplicativeLR(o, (_Decay(0.999), lambda e: 0.97)),
    "warm-restarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7, eta_min=1e-3),
    "warm-restarts-mult": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2,
                                                                   eta_min=2e-4),
})


def sequential(m, o):
    warm = m.LinearLR(o, start_factor=0.01, total_iters=5)
    cos = m.CosineAnnealingLR(o, T_max=30)
    return m.SequentialLR(o, schedulers=[warm, cos], milestones=[5])


CASES["sequential"] = sequential


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "NAdam"])
@pytest.mark.parametrize("name", list(CASES))
def test_lr_sequence_matches_torch(name, opt_name):
    kw = dict(lr=0.1, momentum=0.9) if opt_name == "SGD" else dict(lr=0.1)
    o, to = twin(opt_name, **kw)
    s, ts = CASES[name](sls, o), CASES[name](TLS, to)
    steps = 60 if name.startswith("onecycle") else 120  # OneCycleLR: its total_steps
    for epoch in range(steps):
        assert s.get_last_lr() == ts.get_last_lr(), (epoch, s.get_last_lr(), ts.get_last_lr())
        assert [g["lr"] for g in o.param_groups] == [g["lr"] for g in to.param_groups]
        assert momenta(o) == momenta(to)
        if epoch < steps - 1:
            to.step()
            s.step()
            ts.step()


def test_step_with_epoch_uses_closed_form():
    o, to = twin()
    s, ts = sls.StepLR(o, 3, 0.5), TLS.StepLR(to, 3, 0.5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's epoch deprecation warning
        ts.step(10)
    s.step(10)
    assert s.get_last_lr() == ts.get_last_lr()


@pytest.mark.parametrize("mode,threshold_mode", [("min", "rel"), ("max", "abs")])
def test_reduce_lr_on_plateau_matches_torch(mode, threshold_mode):
    o, to = twin()
    kw = dict(mode=mode, factor=0.5, patience=2, threshold=0.01, threshold_mode=threshold_mode,
              cooldown=1, min_lr=[0.001, 0.002])
    s, ts = sls.ReduceLROnPlateau(o, **kw), TLS.ReduceLROnPlateau(to, **kw)
    rng = np.random.default_rng(1)
    metrics = np.concatenate([np.linspace(1, 0.5, 5), np.full(30, 0.5) + rng.random(30) * 0.01])
    for metric in metrics:
        s.step(float(metric))
        ts.step(float(metric))
        assert s.get_last_lr() == ts.get_last_lr()
    sd = s.state_dict()
    assert sd["num_bad_epochs"] == ts.state_dict()["num_bad_epochs"]
    s2 = sls.ReduceLROnPlateau(o, **kw)
    s2.load_state_dict(sd)
    assert s2.best == s.best and s2.cooldown_counter == s.cooldown_counter


@pytest.mark.parametrize("name", ["cosine", "onecycle", "sequential", "multistep", "cyclic",
                                  "cyclic-scale-fn", "lambda", "lambda-per-group",
                                  "multiplicative", "multiplicative-per-group", "warm-restarts",
                                  "warm-restarts-mult"])
def test_scheduler_state_dict_round_trip(name):
    o, _ = twin()
    s = CASES[name](sls, o)
    for _ in range(17):
        s.step()
    sd = json.loads(json.dumps(s.state_dict()))  # what a checkpoint can hold
    want = []
    for _ in range(10):
        s.step()
        want.append(s.get_last_lr())
    o2, _ = twin()
    s2 = CASES[name](sls, o2)
    s2.load_state_dict(sd)
    for g, saved in zip(o2.param_groups, sd.get("_last_lr", []), strict=False):
        g["lr"] = saved
    got = []
    for _ in range(10):
        s2.step()
        got.append(s2.get_last_lr())
    assert got == want


def test_scheduler_errors_match_torch():
    o, to = twin()
    for make in (
        lambda m, x: m.LinearLR(x, start_factor=0.0),
        lambda m, x: m.ReduceLROnPlateau(x, factor=1.0),
        lambda m, x: m.OneCycleLR(x, max_lr=0.1),
        lambda m, x: m.SequentialLR(x, schedulers=[m.StepLR(x, 2)], milestones=[3]),
    ):
        with pytest.raises(ValueError) as theirs:
            make(TLS, to)
        with pytest.raises(ValueError) as ours:
            make(sls, o)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", ["lambda", "lambda-per-group", "multiplicative-per-group",
                                  "warm-restarts-mult", "cyclic-scale-fn"])
def test_scheduler_state_dict_equals_torchs(name):
    o, to = twin()
    s, ts = CASES[name](sls, o), CASES[name](TLS, to)
    for _ in range(13):
        to.step()
        s.step()
        ts.step()
    theirs = ts.state_dict()
    del theirs["_get_lr_called_within_step"]  # torch's get_lr() warning flag
    assert s.state_dict() == theirs


def test_lambda_state_dict_restores_callable_objects_like_torch():
    o, to = twin()
    fns, tfns = [_Decay(0.9), _Decay(0.8)], [_Decay(0.9), _Decay(0.8)]
    s, ts = sls.LambdaLR(o, fns), TLS.LambdaLR(to, tfns)
    fns[1].rate = tfns[1].rate = 0.5
    sd, tsd = s.state_dict(), ts.state_dict()
    assert sd["lr_lambdas"] == tsd["lr_lambdas"] == [{"rate": 0.9}, {"rate": 0.5}]
    o2, _ = twin()
    s2 = sls.LambdaLR(o2, [_Decay(0.1), lambda e: 1.0])
    s2.load_state_dict(sd)
    assert s2.lr_lambdas[0].rate == 0.9 and s2.lr_lambdas[1](3) == 1.0  # a lambda keeps its own
    s2.step()
    s.step()
    assert s2.get_last_lr()[0] == s.get_last_lr()[0]


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_warm_restarts_fractional_epochs_match_torch(T_mult):
    # A per-batch schedule: step(epoch + i / iters), including epochs of a later period.
    o, to = twin()
    s = sls.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=T_mult, eta_min=1e-3)
    ts = TLS.CosineAnnealingWarmRestarts(to, T_0=4, T_mult=T_mult, eta_min=1e-3)
    iters = 7
    for epoch in range(30):
        for i in range(iters):
            s.step(epoch + i / iters)
            ts.step(epoch + i / iters)
            assert s.get_last_lr() == ts.get_last_lr(), (epoch, i)
            assert (s.T_cur, s.T_i, s.last_epoch) == (ts.T_cur, ts.T_i, ts.last_epoch)
    s.step(2.5)  # back into the first period
    ts.step(2.5)
    assert s.get_last_lr() == ts.get_last_lr()
    s.step()  # and on from there
    ts.step()
    assert s.get_last_lr() == ts.get_last_lr()


def test_new_scheduler_errors_match_torch():
    o, to = twin()
    for make in (
        lambda m, x: m.LambdaLR(x, [lambda e: 1.0]),
        lambda m, x: m.MultiplicativeLR(x, [lambda e: 1.0] * 3),
        lambda m, x: m.CosineAnnealingWarmRestarts(x, T_0=0),
        lambda m, x: m.CosineAnnealingWarmRestarts(x, T_0=2.5),
        lambda m, x: m.CosineAnnealingWarmRestarts(x, T_0=3, T_mult=0),
        lambda m, x: m.CosineAnnealingWarmRestarts(x, T_0=3, T_mult=1.5),
        lambda m, x: m.CosineAnnealingWarmRestarts(x, T_0=3, eta_min="0"),
    ):
        with pytest.raises(ValueError) as theirs:
            make(TLS, to)
        with pytest.raises(ValueError) as ours:
            make(sls, o)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError) as theirs:
        TLS.MultiplicativeLR(to, 0.9)
    with pytest.raises(TypeError) as ours:
        sls.MultiplicativeLR(o, 0.9)
    assert str(ours.value) == str(theirs.value)
    s, ts = sls.CosineAnnealingWarmRestarts(o, T_0=3), TLS.CosineAnnealingWarmRestarts(to, T_0=3)
    with pytest.raises(ValueError) as theirs:
        ts.step(-1)
    with pytest.raises(ValueError) as ours:
        s.step(-1)
    assert str(ours.value) == str(theirs.value)


def test_cyclic_momentum_needs_momentum_or_betas_like_torch():
    o, to = twin("Adagrad", lr=0.1)
    with pytest.raises(ValueError) as theirs:
        TLS.CyclicLR(to, 0.01, 0.1)
    with pytest.raises(ValueError) as ours:
        sls.CyclicLR(o, 0.01, 0.1)
    assert str(ours.value) == str(theirs.value)
    s, ts = sls.CyclicLR(o, 0.01, 0.1, cycle_momentum=False), TLS.CyclicLR(to, 0.01, 0.1,
                                                                          cycle_momentum=False)
    for _ in range(100):
        to.step()
        s.step()
        ts.step()
        assert s.get_last_lr() == ts.get_last_lr()


def test_cyclic_lr_errors():
    o, to = twin()
    with pytest.raises(ValueError) as theirs:
        TLS.CyclicLR(to, 0.01, 0.1, mode="sawtooth")
    with pytest.raises(ValueError) as ours:
        sls.CyclicLR(o, 0.01, 0.1, mode="sawtooth")
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="step_size_up > 0"):  # torch: ZeroDivisionError
        sls.CyclicLR(o, 0.01, 0.1, step_size_up=0)
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        sls.CyclicLR(o, 0.01, [0.1, 0.2, 0.3])


def test_each_scheduler_declares_its_unit():
    o, _ = twin()
    per_step = {"onecycle", "onecycle3-linear", "cyclic", "cyclic-triangular2", "cyclic-exp-range",
                "cyclic-scale-fn"}
    for name, make in CASES.items():
        assert make(sls, o).interval == ("step" if name in per_step else "epoch"), name
    assert sls.ReduceLROnPlateau(o).interval == "epoch"
    warm = sls.LinearLR(o, start_factor=0.1, total_iters=3)
    assert sls.SequentialLR(o, [warm, sls.CosineAnnealingLR(o, 9)], [3]).interval == "epoch"
    warm = sls.LinearLR(o, start_factor=0.1, total_iters=3)
    seq = sls.SequentialLR(o, [warm, sls.OneCycleLR(o, 0.1, total_steps=20)], [3])
    assert seq.interval == "step"  # a per-step part makes the whole sequence per step
