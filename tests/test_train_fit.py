"""sg.fit / evaluate / predict: History contents, the step order the loop owns, data order
and its reproducibility, resume at any batch, progress output, mode handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from activation_refs import ACTS
from conftest import assert_close
from roundoff import Noisy, activation
from train_fakes import FakeCE, FakeReLU, FakeSGD, FakeStepLR, blobs, mlp

from steadygrad import progress
from steadygrad.callbacks import Callback
from steadygrad.training import evaluate, fit, predict


def _setup(seed=0, lr=0.05):
    model = mlp([8, 16, 3], seed=seed)
    return model, FakeSGD(model.parameters(), lr=lr)


def _flat(model):
    return model.parameters()[0].storage.data.copy()


def test_history_contents_and_final_metrics():
    x, y = blobs(200)
    xv, yv = blobs(64, seed=1)
    model, opt = _setup()
    sched = FakeStepLR(opt, step_size=2, gamma=0.5)
    h = fit(model, FakeCE(), opt, x, y, epochs=5, batch_size=32, validation_data=(xv, yv),
            scheduler=sched, seed=0, verbose=0)
    assert h.epoch == [0, 1, 2, 3, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm", "grad_norm_max",
                "skipped_steps", "samples_per_s"):
        assert len(h[key]) == 5, key
    assert h["lr"] == [0.05, 0.05, 0.025, 0.025, 0.0125]  # lr used during each epoch
    assert h["loss"][-1] < h["loss"][0] and h["accuracy"][-1] > 0.9
    assert h["skipped_steps"] == [0.0] * 5
    assert all(m <= mx for m, mx in zip(h["grad_norm"], h["grad_norm_max"], strict=False))
    final = evaluate(model, FakeCE(), xv, yv)
    assert h["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert h["val_accuracy"][-1] == final["accuracy"]
    assert h.fit_state["epoch"] == 5 and h.fit_state["global_step"] == 5 * math.ceil(200 / 32)


def test_loop_order_and_fused_step():
    events = []
    x, y = blobs(64)
    model, opt = _setup()

    class SpyOpt(FakeSGD):
        def zero_grad(self):
            events.append("zero_grad")
            super().zero_grad()

        def step(self):
            assert all(p.grad is not None for p in self.params), "step before backward"
            events.append("step")
            return super().step()

    class SpyModel:
        def __getattr__(self, k):
            return getattr(model, k)

        def __call__(self, xb):
            events.append("forward")
            return model(xb)

        def backward(self, d):
            events.append("backward")
            return model.backward(d)

    class SpyLoss(FakeCE):
        def __call__(self, p, t):
            events.append("loss")
            return super().__call__(p, t)

    class SpySched(FakeStepLR):
        def step(self):
            events.append("scheduler")
            super().step()

    class Hook(Callback):
        def on_before_optimizer_step(self, step):
            events.append("before_step")

    opt = SpyOpt(model.parameters())
    fit(SpyModel(), SpyLoss(), opt, x, y, epochs=1, batch_size=32, scheduler=SpySched(opt, 1),
        scheduler_interval="step", callbacks=[Hook()], verbose=0, seed=0)
    one = ["zero_grad", "forward", "loss", "backward", "before_step", "step", "scheduler"]
    # First the checks: the model cannot tell its output shape, so one eval forward learns it;
    # then the loss is tried on the targets. Neither is a training step.
    assert events == ["forward", "loss", *one * 2]


def _trained(calls):
    """The loss calls of training steps: fit's first call is its check that the loss accepts
    the targets (on a zero prediction), before any step."""
    assert len(calls[0]) == 2
    return calls[1:]


def test_shuffle_is_seeded_and_covers_every_sample():
    x, y = blobs(100)
    seen = []

    class Rec(FakeCE):
        def __call__(self, p, t):
            seen.append(t.copy())
            return super().__call__(p, t)

    runs = []
    for seed in (3, 3, 4):
        model, opt = _setup()
        seen.clear()
        fit(model, Rec(), opt, x, y, epochs=2, batch_size=30, seed=seed, verbose=0)
        runs.append((_flat(model), [s.copy() for s in _trained(seen)]))
        assert sum(len(s) for s in _trained(seen)) == 200
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert not np.array_equal(runs[0][0], runs[2][0])
    model, opt = _setup()
    seen.clear()
    fit(model, Rec(), opt, x, y, epochs=1, batch_size=30, shuffle=False, verbose=0)
    np.testing.assert_array_equal(np.concatenate(_trained(seen)), y)


@pytest.mark.parametrize("k", [1, 4, 7, 8, 13])
def test_resume_at_any_batch_is_bitwise_identical(k):
    """k steps, stop, continue from history.fit_state == one uninterrupted run (7 batches/epoch)."""
    x, y = blobs(200)
    xv, yv = blobs(40, seed=2)
    model, opt = _setup()
    sched = FakeStepLR(opt, step_size=1, gamma=0.9)
    straight = fit(model, FakeCE(), opt, x, y, epochs=3, batch_size=32, validation_data=(xv, yv),
                   scheduler=sched, seed=11, verbose=0)
    model2, opt2 = _setup()
    sched2 = FakeStepLR(opt2, step_size=1, gamma=0.9)
    part = fit(model2, FakeCE(), opt2, x, y, epochs=3, batch_size=32, validation_data=(xv, yv),
               scheduler=sched2, seed=11, verbose=0, max_steps=k)
    assert part.fit_state["global_step"] == k
    rest = fit(model2, FakeCE(), opt2, x, y, epochs=3, batch_size=32, validation_data=(xv, yv),
               scheduler=sched2, verbose=0, resume=part.fit_state)
    np.testing.assert_array_equal(_flat(model), _flat(model2))
    assert rest.history == straight.history | {"samples_per_s": rest["samples_per_s"]}


def test_initial_epoch_uses_that_epochs_data_order():
    x, y = blobs(64)
    orders = {}

    class Rec(FakeCE):
        def __call__(self, p, t):
            orders.setdefault(self.tag, []).append(t.copy())
            return super().__call__(p, t)

    a, b = Rec(), Rec()
    a.tag, b.tag = "full", "late"
    model, opt = _setup()
    fit(model, a, opt, x, y, epochs=3, batch_size=16, seed=5, verbose=0)
    model, opt = _setup()
    h = fit(model, b, opt, x, y, epochs=3, batch_size=16, seed=5, verbose=0, initial_epoch=2)
    assert h.epoch == [2]
    assert len(_trained(orders["late"])) == 4
    for got, want in zip(_trained(orders["late"]), _trained(orders["full"])[8:], strict=True):
        np.testing.assert_array_equal(got, want)


def test_verbose_levels(capsys, monkeypatch):
    x, y = blobs(64)
    model, opt = _setup()
    fit(model, FakeCE(), opt, x, y, epochs=2, batch_size=16, verbose=0, seed=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    fit(model, FakeCE(), opt, x, y, epochs=2, batch_size=16, verbose=2, seed=0)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2 - loss ") and "samples/s" in lines[1]
    for tq in (progress._tqdm, None):
        if tq is None:
            monkeypatch.setattr(progress, "_tqdm", None)
        fit(model, FakeCE(), opt, x, y, epochs=1, batch_size=16, verbose=1, seed=0)
        err = capsys.readouterr().err
        assert "Epoch 1/1" in err and "4/4" in err and "accuracy" in err and "samples/s" in err


def _fake_mlp_reference(model, x: np.ndarray) -> Noisy:
    """train_fakes' FakeLinear/FakeReLU stack in float64 with float32 rounding bounds (roundoff)."""
    h = Noisy.of(x)
    for layer in model._modules.values():
        if isinstance(layer, FakeReLU):
            h = activation(ACTS["relu"], h)
        else:
            h = h @ Noisy.of(layer.weight.data).T + Noisy.of(layer.bias.data)
    return h


def test_evaluate_and_predict_batched_in_eval_mode():
    x, y = blobs(70)
    model, _ = _setup()
    model.train()
    full = model(x)
    # Batched and whole, the fake layers' float32 numpy GEMMs may round differently (BLAS
    # picks kernels by size): each within the float64 reference's rounding bound.
    ref = _fake_mlp_reference(model, x)
    for what, got in (("predict", predict(model, x, batch_size=16)), ("whole batch", full)):
        assert_close(got, ref.v, ref.bound(), what=what)
    assert model.training
    model.eval()
    ev = evaluate(model, FakeCE(), x, y, batch_size=9)
    assert not model.training
    # a mean of positive terms: relative error below 70 u = 4e-6 either way
    assert ev["loss"] == pytest.approx(FakeCE()(full, y), rel=1e-5)
    assert ev["accuracy"] == np.mean(full.argmax(1) == y)
    modes = []

    class ModeSpy(FakeCE):
        def __call__(self, p, t):
            modes.append(model.training)
            return super().__call__(p, t)

    model.train()
    evaluate(model, ModeSpy(), x, y)
    assert modes and not any(modes) and model.training


def test_regression_targets_have_no_accuracy_and_bad_inputs_are_named():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    yr = rng.standard_normal((40, 3)).astype(np.float64)
    model, opt = _setup()
    from train_fakes import FakeMSE

    h = fit(model, FakeMSE(), opt, x, yr, epochs=2, batch_size=8, verbose=0, seed=0)
    assert "accuracy" not in h and len(h["loss"]) == 2
    with pytest.raises(ValueError, match="x has 40 samples but y has 39"):
        fit(model, FakeMSE(), opt, x, yr[:39], epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="fit: batch_size must be a positive int, got 0"):
        fit(model, FakeMSE(), opt, x, yr, epochs=1, batch_size=0, verbose=0)


def _real_model(seed=0):
    from steadygrad import nn
    from steadygrad.random import manual_seed

    manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def test_plateau_scheduler_steps_on_val_loss_and_history_lr_follows():
    from steadygrad import nn, optim

    metrics = []

    class Plateau(optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, m, epoch=None):
            metrics.append(m)
            super().step(m)

    x, y = blobs(64)
    model = _real_model()
    opt = optim.SGD(model.parameters(), lr=0.1)
    h = fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=4, batch_size=16, verbose=0, seed=0,
            validation_data=(x[:32], y[:32]), scheduler=Plateau(opt, patience=0, factor=0.5))
    assert metrics == h["val_loss"]
    h2 = fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=16, verbose=0, seed=0,
             scheduler=Plateau(opt, patience=0, factor=0.5))
    assert metrics[-2:] == h2["loss"]  # no validation data: the training loss


def test_skipped_non_finite_steps_are_counted_per_epoch():
    from steadygrad import nn, optim
    from steadygrad.optim import NonFiniteGradientWarning

    class PoisonOnce(nn.CrossEntropyLoss):
        calls = 0

        def backward(self):
            d = super().backward()
            PoisonOnce.calls += 1
            if PoisonOnce.calls == 6:  # the second batch of epoch 1 (4 batches per epoch)
                d = d.copy()
                d[0, 0] = np.nan
            return d

    x, y = blobs(64)
    model = _real_model()
    opt = optim.Adam(model.parameters(), lr=1e-2, max_grad_norm=1.0)
    with pytest.warns(NonFiniteGradientWarning, match="skipped"):
        h = fit(model, PoisonOnce(), opt, x, y, epochs=3, batch_size=16, verbose=0, seed=0)
    assert h["skipped_steps"] == [0.0, 1.0, 0.0]
    assert h.fit_state["skipped_steps"] == 1 and all(np.isfinite(model.parameters()[0].data.ravel()))
    assert h["grad_norm"][1] > 0  # the mean over the finite norms of that epoch
