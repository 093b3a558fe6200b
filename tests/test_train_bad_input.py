"""Bad arguments to sg.fit / evaluate / predict: each raises before the first step with a
message naming the argument, what was expected and what came, and leaves everything exactly
as it was: parameters, gradients, BatchNorm running statistics, optimizer state, sg's RNG and
the model's mode (compared bitwise)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from train_fakes import FakeCE, FakeSGD, blobs, mlp

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad import random as sg_random
from steadygrad.callbacks import EarlyStopping
from steadygrad.optim import lr_scheduler as sls
from steadygrad.training import evaluate, fit, predict

N, C = 50, 3


def _setup():
    sg.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(16, C))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x, y = blobs(N, k=C)
    loss = nn.CrossEntropyLoss()
    for lo in (0, 16):  # two real steps: optimizer moments, BN statistics, a fresh gradient
        loss(model(x[lo : lo + 16]), y[lo : lo + 16])
        model.backward(loss.backward())
        opt.step()
    return model, loss, opt, x, y


def _snapshot(model, opt) -> dict[str, Any]:
    return {
        "state": {k: v.copy() for k, v in model.state_dict().items()},  # params + BN buffers
        "grads": [None if p.grad is None else p.grad.copy() for p in model.parameters()],
        "opt": copy.deepcopy(opt.state_dict()),
        "rng": copy.deepcopy(sg_random.generator().bit_generator.state),
        "np_rng": copy.deepcopy(np.random.get_state()[1].tolist()),
        "training": [m.training for m in model.modules()],
    }


def _assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where  # bitwise
    else:
        assert a == b, where


@dataclass(frozen=True)
class Case:
    name: str
    exc: type[Exception]
    fragment: str  # must appear in str(exception), verbatim
    change: Callable[[dict[str, Any]], None]  # edits fit's keyword arguments


def _kw(**over: Any) -> Callable[[dict[str, Any]], None]:
    return lambda kw: kw.update(over)


def _y_last_batch_out_of_range(kw):
    kw["y"] = kw["y"].copy()
    kw["y"][-1] = C  # in the last batch with shuffle=False: found after 3 steps before
    kw["shuffle"] = False


def _neg_label(kw):
    kw["y"] = kw["y"].copy()
    kw["y"][7] = -1


def _val_out_of_range(kw):
    xv, yv = blobs(20, k=C, seed=3)
    yv[4] = 9
    kw["validation_data"] = (xv, yv)


def _other_optimizer(kw):
    kw["scheduler"] = sls.StepLR(optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), 1)


def _swap_loss_and_optimizer(kw):
    kw["loss_fn"], kw["optimizer"] = kw["optimizer"], kw["loss_fn"]


CASES = [
    Case("validation_data=x", TypeError, "fit: validation_data must be a tuple (x_val, y_val) of "
         "2 arrays, got float32 array of shape (50, 8)", lambda kw: kw.update(validation_data=kw["x"])),
    Case("validation_data 1-tuple", TypeError, "validation_data must be a tuple (x_val, y_val) of "
         "2 arrays, got tuple of 1 items", lambda kw: kw.update(validation_data=(kw["x"],))),
    Case("validation_data lengths", ValueError, "fit: validation_data: x has 50 samples but y has 49",
         lambda kw: kw.update(validation_data=(kw["x"], kw["y"][:-1]))),
    Case("validation_data features", ValueError, "fit: validation_data x has samples of shape (5,), "
         "x has (8,)", lambda kw: kw.update(validation_data=(kw["x"][:, :5], kw["y"]))),
    Case("validation_data float y", ValueError, "fit: validation_data y is a float32 array of shape "
         "(50,), y a int64 array of shape (50,)",
         lambda kw: kw.update(validation_data=(kw["x"], kw["y"].astype(np.float32)))),
    Case("validation_data empty", ValueError, "fit: validation_data: x must hold at least one sample",
         lambda kw: kw.update(validation_data=(kw["x"][:0], kw["y"][:0]))),
    Case("validation labels", ValueError, "fit: validation_data y: labels must be class indices in "
         "[0, 3) for the model's 3 outputs, got 9 at index 4", _val_out_of_range),
    Case("labels in the last batch", ValueError, "fit: y: labels must be class indices in [0, 3) for "
         "the model's 3 outputs, got 3 at index 49 (1 out of range)", _y_last_batch_out_of_range),
    Case("negative label", ValueError, "got -1 at index 7", _neg_label),
    Case("float labels", TypeError, "fit: y (float32 array of shape (50,)) does not suit the loss "
         "(tried on 2 of its targets): CrossEntropyLoss(reduction='mean', label_smoothing=0.0): "
         "softmax_cross_entropy: labels must have dtype int32 or int64",
         lambda kw: kw.update(y=kw["y"].astype(np.float32))),
    Case("int targets for MSE", TypeError, "does not suit the loss (tried on 2 of its targets): "
         "MSELoss(reduction='mean'): mse_loss: target must have dtype float32",
         lambda kw: kw.update(loss_fn=nn.MSELoss(), y=np.zeros((N, C), np.int64))),
    Case("x features", ValueError, "fit: x (float32 array of shape (50, 7)) does not fit the model: "
         "Sequential[0] Linear(8 -> 16): expected input of shape (batch, 8), got (2, 7)",
         lambda kw: kw.update(x=kw["x"][:, :7])),
    Case("x strings", TypeError, "fit: x must be a numeric array, got <U1 array of shape (50, 8)",
         lambda kw: kw.update(x=np.full((N, 8), "a"))),
    Case("x scalar", ValueError, "fit: x must hold at least one sample, got float64 array of shape ()",
         lambda kw: kw.update(x=1.0)),
    Case("x empty", ValueError, "fit: x must hold at least one sample",
         lambda kw: kw.update(x=kw["x"][:0], y=kw["y"][:0])),
    Case("x/y lengths", ValueError, "fit: x has 50 samples but y has 40",
         lambda kw: kw.update(y=kw["y"][:40])),
    Case("y strings", TypeError, "fit: y must be a numeric array of targets, one per sample",
         lambda kw: kw.update(y=np.full(N, "a"))),
    Case("batch_size=4.5", TypeError, "fit: batch_size must be a positive int, got 4.5 (float)",
         _kw(batch_size=4.5)),
    Case("batch_size=True", TypeError, "fit: batch_size must be a positive int, got True (bool)",
         _kw(batch_size=True)),
    Case("batch_size='16'", TypeError, "fit: batch_size must be a positive int, got '16' (str)",
         _kw(batch_size="16")),
    Case("batch_size=0", ValueError, "fit: batch_size must be a positive int, got 0", _kw(batch_size=0)),
    Case("batch_size=-8", ValueError, "fit: batch_size must be a positive int, got -8",
         _kw(batch_size=-8)),
    Case("batch_size=1 with BatchNorm", ValueError, "fit: batch_size=1, but BatchNorm1d at '1' needs "
         "more than 1 sample per batch in training mode", _kw(batch_size=1)),
    Case("epochs=2.0", TypeError, "fit: epochs must be an int >= 0, got 2.0 (float)", _kw(epochs=2.0)),
    Case("epochs=-1", ValueError, "fit: epochs must be an int >= 0, got -1", _kw(epochs=-1)),
    Case("epochs=None", TypeError, "fit: epochs must be an int >= 0, got None (NoneType)",
         _kw(epochs=None)),
    Case("initial_epoch=1.5", TypeError, "fit: initial_epoch must be an int >= 0, got 1.5",
         _kw(initial_epoch=1.5)),
    Case("max_steps=-1", ValueError, "fit: max_steps must be an int >= 0, got -1", _kw(max_steps=-1)),
    Case("seed=1.5", TypeError, "fit: seed must be an int >= 0, got 1.5 (float)", _kw(seed=1.5)),
    Case("seed=-1", ValueError, "fit: seed must be an int >= 0, got -1", _kw(seed=-1)),
    Case("diagnostics=True", TypeError, "fit: diagnostics must be an int >= 0, got True (bool)",
         _kw(diagnostics=True)),
    Case("shuffle='batch'", TypeError, "fit: shuffle must be True or False, got 'batch' (str)",
         _kw(shuffle="batch")),
    Case("drop_last=1", TypeError, "fit: drop_last must be True or False, got 1 (int)", _kw(drop_last=1)),
    Case("verbose=3", ValueError, "fit: verbose must be 0, 1 or 2, got 3 (int)", _kw(verbose=3)),
    Case("callbacks=cb", TypeError, "fit: callbacks must be a list of Callback objects, got one "
         "EarlyStopping (pass [EarlyStopping(...)])", lambda kw: kw.update(callbacks=EarlyStopping())),
    Case("callbacks=None", TypeError, "fit: callbacks must be a list of Callback objects, got None",
         lambda kw: kw.update(callbacks=None)),
    Case("callbacks=[obj]", TypeError, "fit: callbacks[1] must be an sg.callbacks.Callback, got "
         "'val_loss' (str)", lambda kw: kw.update(callbacks=[EarlyStopping("loss"), "val_loss"])),
    Case("scheduler_interval", ValueError, "fit: scheduler_interval must be None, 'epoch' or 'step', "
         "got 'batch'", lambda kw: kw.update(scheduler=sls.StepLR(kw["optimizer"], 1),
                                             scheduler_interval="batch")),
    Case("scheduler of another optimizer", ValueError, "fit: scheduler StepLR drives another "
         "optimizer than the one fit steps", _other_optimizer),
    Case("scheduler without step", TypeError, "fit: scheduler must have a step() method, got dict",
         lambda kw: kw.update(scheduler={"lr": 0.1})),
    Case("OneCycleLR too short", ValueError, "fit: OneCycleLR has 8 of its total_steps=8 left, but "
         "this fit runs 12 optimizer steps (4 per epoch)",
         lambda kw: kw.update(scheduler=sls.OneCycleLR(kw["optimizer"], 0.1, total_steps=8))),
    Case("loss_fn and optimizer swapped", TypeError, "fit: loss_fn must have __call__ and backward, "
         "got Adam (without __call__, backward)", _swap_loss_and_optimizer),
    Case("resume=42", TypeError, "fit: resume must be a checkpoint path, sg.load()'s extra or a "
         "fit_state, got 42 (int)", _kw(resume=42)),
    Case("resume and initial_epoch", ValueError, "fit: pass resume (which knows its epoch) or "
         "initial_epoch, not both", _kw(resume={"seed": 0}, initial_epoch=1)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_fit_argument_is_named_and_changes_nothing(case):
    model, loss, opt, x, y = _setup()
    kw = {"model": model, "loss_fn": loss, "optimizer": opt, "x": x, "y": y, "epochs": 3,
          "batch_size": 16, "verbose": 0}
    case.change(kw)
    model.eval()  # fit trains in train mode and must restore the caller's mode, also on error
    before = _snapshot(model, opt)
    args = [kw.pop(k) for k in ("model", "loss_fn", "optimizer", "x", "y")]
    with pytest.raises(case.exc) as err:
        fit(*args, **kw)
    assert case.fragment in str(err.value)
    _assert_same(_snapshot(model, opt), before)


def test_labels_are_checked_through_an_eval_forward_when_the_model_cannot_say_its_shape():
    """A model without output_shape (the numpy fakes): one eval-mode forward learns C."""
    x, y = blobs(40)
    y[-1] = 3
    model = mlp([8, 16, 3])
    opt = FakeSGD(model.parameters())
    before = model.parameters()[0].storage.data.copy()
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\) .* got 3 at index 39"):
        fit(model, FakeCE(), opt, x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_array_equal(model.parameters()[0].storage.data, before)
    assert opt.step_count == 0 and model.training


def test_the_eval_forward_that_learns_the_output_width_changes_nothing():
    """A custom Module (no output_shape) with BatchNorm and Dropout: fit learns C from one
    eval-mode forward, which updates no running statistics and draws no dropout seed."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                      nn.Dropout(0.3), nn.Linear(16, C))

        def forward(self, x):
            return self.body(x)

    sg.manual_seed(0)
    model = Net()
    opt = optim.Adam(model.parameters(), lr=1e-2)
    x, y = blobs(N, k=C)
    y[-1] = C + 2
    assert model.output_shape(x.shape) is None
    before = _snapshot(model, opt)
    with pytest.raises(ValueError, match=r"\[0, 3\) for the model's 3 outputs, got 5 at index 49"):
        fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=1, batch_size=16, verbose=0)
    _assert_same(_snapshot(model, opt), before)


@pytest.mark.parametrize("call,exc,fragment", [
    (lambda m, lf, x, y: evaluate(m, lf, x, y, batch_size=0), ValueError,
     "evaluate: batch_size must be a positive int, got 0"),
    (lambda m, lf, x, y: evaluate(m, lf, x, y, batch_size=2.5), TypeError,
     "evaluate: batch_size must be a positive int, got 2.5 (float)"),
    (lambda m, lf, x, y: evaluate(m, lf, x, y[:-1]), ValueError, "evaluate: x has 50 samples but y has 49"),
    (lambda m, lf, x, y: evaluate(m, lf, x[:0], y[:0]), ValueError,
     "evaluate: x must hold at least one sample"),
    (lambda m, lf, x, y: predict(m, x, batch_size=0), ValueError,
     "predict: batch_size must be a positive int, got 0"),
    (lambda m, lf, x, y: predict(m, x, batch_size=None), TypeError,
     "predict: batch_size must be a positive int, got None (NoneType)"),
    (lambda m, lf, x, y: predict(m, x[:0]), ValueError, "predict: x must hold at least one sample"),
    (lambda m, lf, x, y: predict(m, [["a"]]), TypeError, "predict: x must be a numeric array"),
], ids=["evaluate-bs0", "evaluate-bs-float", "evaluate-lengths", "evaluate-empty", "predict-bs0",
        "predict-bs-None", "predict-empty", "predict-strings"])
def test_bad_evaluate_and_predict_arguments_are_named(call, exc, fragment):
    model, loss, opt, x, y = _setup()
    before = _snapshot(model, opt)
    with pytest.raises(exc) as err:
        call(model, loss, x, y)
    assert fragment in str(err.value)
    _assert_same(_snapshot(model, opt), before)
