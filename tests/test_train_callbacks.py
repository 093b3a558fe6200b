"""Callbacks: EarlyStopping (patience, min_delta, restore_best_weights), ModelCheckpoint
(best / last, resumable), ReduceLROnPlateauCallback, CSVLogger, TerminateOnNaN. Metrics are scripted
by a callback that runs first, so each expectation is exact."""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
from train_fakes import FakeCE, FakeMSE, FakeSGD, blobs, mlp

from steadygrad.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateauCallback,
    TerminateOnNaN,
)
from steadygrad.checkpoint import load
from steadygrad.training import fit


class Script(Callback):
    """Overrides `key` in the epoch logs with values[epoch]; remembers each epoch's weights."""

    def __init__(self, key, values):
        self.key, self.values, self.weights = key, values, []

    def on_epoch_end(self, epoch, logs):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.loop.model.parameters()[0].storage.data.copy())


def _run(callbacks, epochs=8, lr=0.05, **kw):
    x, y = blobs(64)
    model = mlp([8, 16, 3])
    opt = FakeSGD(model.parameters(), lr=lr)
    h = fit(model, FakeCE(), opt, x, y, epochs=epochs, batch_size=16, callbacks=callbacks, seed=0,
            verbose=0, validation_data=(x, y), **kw)
    return h, model, opt


def test_early_stopping_patience_and_restore():
    s = Script("val_loss", [1.0, 0.8, 0.7, 0.71, 0.75, 0.69, 0.9, 0.9])
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h, model, _ = _run([s, es])
    assert h.epoch == [0, 1, 2, 3, 4] and es.stopped_epoch == 4 and es.best_epoch == 2
    np.testing.assert_array_equal(model.parameters()[0].storage.data, s.weights[2])


def test_early_stopping_min_delta_and_max_mode():
    s = Script("val_accuracy", [0.5, 0.6, 0.605, 0.609, 0.7, 0.7])
    es = EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.01)
    h, _, _ = _run([s, es], epochs=6)
    assert es.mode == "max" and h.epoch == [0, 1, 2, 3] and es.best == 0.6


@pytest.mark.parametrize("make,regression,match", [
    (lambda p: EarlyStopping(), False,
     "EarlyStopping: monitors 'val_loss' but fit was given no validation_data; pass "
     "validation_data or use 'loss'"),
    (lambda p: EarlyStopping("accuracy"), True,
     "EarlyStopping: monitors 'accuracy' but fit logs no accuracy for float (regression) "
     "targets; use 'loss'"),
    (lambda p: ModelCheckpoint(p / "c-{epoch}-{val_loss:.3f}.safetensors"), False,
     "ModelCheckpoint: path names 'val_loss' but fit was given no validation_data"),
    (lambda p: ModelCheckpoint(p / "c-{val_accuracy}", monitor="loss"), True,
     "ModelCheckpoint: path names 'val_accuracy' but fit was given no validation_data"),
], ids=["val_loss-without-validation", "accuracy-of-regression", "path-val_loss", "path-val_accuracy"])
def test_a_metric_fit_will_never_log_is_refused_before_the_first_step(tmp_path, make, regression,
                                                                       match):
    # It used to be a KeyError at the first epoch end, after an epoch of training.
    x, y = blobs(32)
    model = mlp([8, 4, 3])
    opt = FakeSGD(model.parameters())
    before = model.parameters()[0].storage.data.copy()
    loss = FakeMSE() if regression else FakeCE()
    target = np.eye(3, dtype=np.float32)[y] if regression else y
    with pytest.raises(ValueError, match=re.escape(match)):
        fit(model, loss, opt, x, target, epochs=1, batch_size=8, callbacks=[make(tmp_path)],
            verbose=0)
    np.testing.assert_array_equal(model.parameters()[0].storage.data, before)
    assert opt.step_count == 0 and not list(tmp_path.iterdir())


def test_model_checkpoint_best_only(tmp_path):
    s = Script("val_loss", [1.0, 0.8, 0.9, 0.5, 0.6, 0.7])
    ck = ModelCheckpoint(tmp_path / "best-{epoch}.safetensors", monitor="val_loss", save_best_only=True)
    _, _model, _opt = _run([s, ck], epochs=6)
    assert [p.rsplit("/", 1)[1] for p in ck.saved] == [f"best-{e}.safetensors" for e in (1, 2, 4)]
    other = mlp([8, 16, 3], seed=7)
    extra = load(ck.saved[-1], other, FakeSGD(other.parameters()))
    np.testing.assert_array_equal(other.parameters()[0].storage.data, s.weights[3])
    assert extra["fit"]["epoch"] == 4 and extra["fit"]["batch"] == 0
    assert extra["fit"]["history"]["history"]["val_loss"] == [1.0, 0.8, 0.9, 0.5]


def test_model_checkpoint_last_resumes_exactly(tmp_path):
    """Checkpoint every epoch, then resume from the file after epoch 3 with fresh objects:
    identical weights and history to the uninterrupted run, EarlyStopping state included."""
    path = tmp_path / "last.safetensors"
    vals = [1.0, 0.9, 0.95, 0.97, 0.99, 0.5]
    s1, es1 = Script("val_loss", vals), EarlyStopping(patience=10)
    h1, m1, _ = _run([s1, es1, ModelCheckpoint(path)], epochs=6)

    s2, es2 = Script("val_loss", vals), EarlyStopping(patience=10)
    _run([s2, es2, ModelCheckpoint(path)], epochs=3)
    x, y = blobs(64)
    model = mlp([8, 16, 3], seed=99)
    opt = FakeSGD(model.parameters(), lr=123.0)
    s3, es3 = Script("val_loss", vals), EarlyStopping(patience=10)
    h3 = fit(model, FakeCE(), opt, x, y, epochs=6, batch_size=16, callbacks=[s3, es3], verbose=0,
             validation_data=(x, y), resume=str(path))
    np.testing.assert_array_equal(model.parameters()[0].storage.data, m1.parameters()[0].storage.data)
    assert h3.epoch == h1.epoch and h3["loss"] == h1["loss"] and h3["lr"] == h1["lr"]
    assert (es3.best, es3.wait, es3.best_epoch) == (es1.best, es1.wait, es1.best_epoch) == (0.5, 0, 5)


def test_reduce_lr_on_plateau_with_cooldown():
    s = Script("val_loss", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    rl = ReduceLROnPlateauCallback(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.01)
    h, _, opt = _run([s, rl], epochs=8, lr=0.04)
    # Keras semantics: reduce after epoch 2 (2 bad epochs), cooldown epoch 3 resets the count
    # but (unlike PyTorch) the same epoch already counts as bad, so reduce again after epoch 4.
    assert h["lr"] == [0.04, 0.04, 0.04, 0.02, 0.02, 0.01, 0.01, 0.01]
    assert opt.param_groups[0]["lr"] == 0.01  # floored at min_lr


def test_csv_logger(tmp_path):
    path = tmp_path / "log.csv"
    h, _, _ = _run([CSVLogger(path)], epochs=3)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "epoch" and "loss" in rows[0] and "val_accuracy" in rows[0]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    col = rows[0].index("loss")
    assert [float(r[col]) for r in rows[1:]] == h["loss"]


def test_terminate_on_nan():
    t = TerminateOnNaN()
    with np.errstate(all="ignore"):  # the numpy fakes overflow on the way to NaN
        h, _, _opt = _run([t], epochs=5, lr=1e6)
    assert t.terminated_at is not None
    # the epoch it stopped in is recorded (partial), with its non-finite loss
    assert h.epoch[-1] == t.terminated_at // 4 and math.isnan(h["loss"][-1])
    assert all(math.isfinite(v) for v in h["loss"][:-1])
    assert h.fit_state["global_step"] == t.terminated_at + 1
