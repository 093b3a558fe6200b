"""sg.fit steps each scheduler in its declared unit: per-step schedulers (OneCycleLR, CyclicLR)
after every batch, per-epoch ones at each epoch end, the unit overridable; the lr and momentum
used at every optimizer step match torch's scheduler driven the same way (exactly: both are
the same Python float arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fakes import blobs

from steadygrad import nn, optim
from steadygrad.callbacks import Callback
from steadygrad.optim import lr_scheduler as sls
from steadygrad.random import manual_seed
from steadygrad.training import fit

TLS = torch.optim.lr_scheduler
N, BS, EPOCHS = 100, 16, 5
SPE = 7  # ceil(100 / 16): the last batch holds 4 samples


class LrSpy(Callback):
    """(lr, momentum) of group 0 as each optimizer step uses them."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def on_before_optimizer_step(self, step: int) -> None:
        g = self.loop.optimizer.param_groups[0]
        self.seen.append((g["lr"], g["betas"][0] if "betas" in g else g["momentum"]))


def _fit(make, opt_name="SGD", **kw):
    manual_seed(0)
    x, y = blobs(N)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "SGD" else \
        optim.Adam(model.parameters(), lr=0.05)
    sched, spy = make(sls, opt), LrSpy()
    h = fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=EPOCHS, batch_size=BS, scheduler=sched,
            callbacks=[spy], verbose=0, seed=0, **kw)
    return spy.seen, h, sched


def _torch(make, per_step: bool, opt_name="SGD"):
    """torch's scheduler on a torch optimizer, stepped after each batch or each epoch."""
    p = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9) if opt_name == "SGD" else \
        torch.optim.Adam([p], lr=0.05)
    sched, seen = make(TLS, opt), []
    for _ in range(EPOCHS):
        for _ in range(SPE):
            g = opt.param_groups[0]
            seen.append((g["lr"], g["betas"][0] if "betas" in g else g["momentum"]))
            p.grad = torch.zeros(3)
            opt.step()
            if per_step:
                sched.step()
        if not per_step:
            sched.step()
    return seen


PER_STEP = {
    "onecycle": lambda m, o: m.OneCycleLR(o, 0.1, epochs=EPOCHS, steps_per_epoch=SPE),
    "onecycle-three-phase": lambda m, o: m.OneCycleLR(o, 0.3, total_steps=EPOCHS * SPE,
                                                      three_phase=True, anneal_strategy="linear"),
    "cyclic": lambda m, o: m.CyclicLR(o, 0.01, 0.2, step_size_up=4, step_size_down=6),
    "cyclic-triangular2": lambda m, o: m.CyclicLR(o, 0.01, 0.2, step_size_up=3, mode="triangular2"),
}


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(PER_STEP))
def test_per_step_schedulers_step_after_every_batch_like_torch(name, opt_name):
    seen, h, _ = _fit(PER_STEP[name], opt_name)
    want = _torch(PER_STEP[name], per_step=True, opt_name=opt_name)
    assert len(seen) == EPOCHS * SPE
    assert seen == want
    assert h["lr"] == [want[e * SPE][0] for e in range(EPOCHS)]  # the lr of each epoch's first step


def test_one_cycle_reaches_its_peak_and_anneals_inside_the_fit():
    seen, _, sched = _fit(PER_STEP["onecycle"])
    lrs = [lr for lr, _ in seen]
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1, rel=2e-3)  # the peak falls between steps 9 and 10
    assert sched.last_epoch == EPOCHS * SPE  # the whole schedule, exactly
    assert lrs[-1] < 1e-3


PER_EPOCH = {
    "step": lambda m, o: m.StepLR(o, step_size=2, gamma=0.5),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=1e-3),
    "warmup-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=2), m.CosineAnnealingLR(o, T_max=3)], [2]),
}


@pytest.mark.parametrize("name", list(PER_EPOCH))
def test_per_epoch_schedulers_step_at_epoch_ends_like_torch(name):
    seen, _, _ = _fit(PER_EPOCH[name])
    assert seen == _torch(PER_EPOCH[name], per_step=False)
    assert len({lr for lr, _ in seen[:SPE]}) == 1  # constant within an epoch


def test_the_unit_can_be_overridden_per_call_or_per_scheduler():
    warmup = lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=10)  # noqa: E731 (10 batches)
    want = _torch(warmup, per_step=True)
    seen, _, _ = _fit(warmup, scheduler_interval="step")
    assert seen == want

    def as_step(m, o):
        s = warmup(m, o)
        s.interval = "step"
        return s

    seen, _, _ = _fit(as_step)
    assert seen == want
    seen, _, _ = _fit(PER_STEP["cyclic"], scheduler_interval="epoch")
    assert seen == _torch(PER_STEP["cyclic"], per_step=False)


def _unchanged_after(make, match, exc=ValueError, **kw):
    manual_seed(0)
    x, y = blobs(N)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = make(sls, opt)
    before = (model.parameters()[0].storage.data.copy(), [dict(g) for g in opt.param_groups],
              dict(sched.state_dict()))
    with pytest.raises(exc, match=match):
        fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=EPOCHS, batch_size=BS, scheduler=sched,
            verbose=0, seed=0, **kw)
    np.testing.assert_array_equal(model.parameters()[0].storage.data, before[0])
    assert [dict(g) for g in opt.param_groups] == before[1]
    assert sched.state_dict() == before[2]


def test_a_schedule_shorter_than_the_fit_is_refused_before_the_first_step():
    # steps_per_epoch from len(x) // batch_size (6) instead of 7 batches: torch would raise
    # "Tried to step 31 times" in the last epoch, after 30 steps were taken.
    short = lambda m, o: m.OneCycleLR(o, 0.1, epochs=EPOCHS, steps_per_epoch=6)  # noqa: E731
    _unchanged_after(short, r"OneCycleLR has 30 of its total_steps=30 left, but this fit runs 35 "
                            r"optimizer steps \(7 per epoch\); build it with steps_per_epoch=7")
    seen, _, _ = _fit(short, max_steps=30)  # a fit that stays inside the schedule runs
    assert len(seen) == 30


def test_scheduler_misuse_is_named_before_the_first_step():
    _unchanged_after(PER_EPOCH["step"], "scheduler_interval must be None, 'epoch' or 'step', "
                     "got 'batch'", scheduler_interval="batch")
    _unchanged_after(lambda m, o: m.ReduceLROnPlateau(o), "ReduceLROnPlateau steps on a monitored "
                     "metric once per epoch", scheduler_interval="step")

    def other_optimizer(m, o):
        return m.StepLR(optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1)

    _unchanged_after(other_optimizer, "scheduler StepLR drives another optimizer")

    def bad_unit(m, o):
        s = m.StepLR(o, 1)
        s.interval = "batch"
        return s

    _unchanged_after(bad_unit, "StepLR.interval must be 'epoch' or 'step', got 'batch'")


def test_a_scheduler_steps_on_a_metric_by_its_class_not_its_name():
    """fit gives the monitored metric to ReduceLROnPlateau and its subclasses, and a plain
    step() to every other scheduler, whatever it is called."""

    class ReduceLROnPlateau:  # a count-stepped schedule that happens to share the name
        interval = "epoch"

        def __init__(self, opt):
            self.optimizer, self.calls = opt, 0

        def step(self):
            self.calls += 1

    class Patient(sls.ReduceLROnPlateau):
        pass

    _, _, own = _fit(lambda m, o: ReduceLROnPlateau(o))
    assert own.calls == EPOCHS
    _, _, plateau = _fit(lambda m, o: Patient(o, patience=0, factor=0.5))
    assert plateau.last_epoch == EPOCHS  # step(metric) once per epoch (step() would raise)
