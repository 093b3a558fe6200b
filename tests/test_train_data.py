"""sg.fit's data options: a DataLoader in place of (x, y) (the same batches as arrays with the
same seed, resume, prefetch), validation_split, sample_weight and class_weight (the weighted
per-sample loss and its gradient against torch in float64), metrics by name and the registry
(against numpy), and the bad inputs, each raising before anything changed."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
from conftest import assert_close
from train_fakes import blobs

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.callbacks import Callback, EarlyStopping
from steadygrad.data import DataLoader


def _model(d=8, c=3, seed=0):
    sg.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, c))


def _params(model):
    return [p.data.copy() for p in model.parameters()]


def _same_params(a, b):
    for pa, pb in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(pa, pb)


def _fit(model, x, y=None, loss=None, lr=0.05, **kw):
    kw.setdefault("epochs", 3)
    loss = nn.CrossEntropyLoss() if loss is None else loss
    return sg.fit(model, loss, optim.SGD(model.parameters(), lr=lr), x, y, verbose=0, **kw)


# --- DataLoader ---------------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [False, True])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_on_a_loader_equals_fit_on_arrays_with_the_same_seed(shuffle, prefetch):
    x, y = blobs(150)
    a, b = _model(), _model()
    ha = _fit(a, x, y, batch_size=16, shuffle=shuffle, seed=9)
    loader = DataLoader(x, y, batch_size=16, shuffle=shuffle, seed=9, prefetch=prefetch)
    hb = _fit(b, loader)
    _same_params(a, b)
    assert ha["loss"] == hb["loss"] and ha["accuracy"] == hb["accuracy"]
    # the loader's generator moved past the 3 epochs fit drew, as 3 iterations would have
    ref = np.random.Generator(np.random.PCG64(9))
    for _ in range(3 if shuffle else 0):
        ref.permutation(150)
    want = ref.permutation(150)[:16] if shuffle else np.arange(16)
    np.testing.assert_array_equal(next(iter(loader))[1], y[want])


def test_fit_on_a_loader_with_sample_weights_and_drop_last():
    x, y = blobs(100)
    w = np.random.default_rng(1).uniform(0, 2, 100)
    a, b = _model(), _model()
    _fit(a, x, y, loss=nn.CrossEntropyLoss(reduction="none"), batch_size=16, seed=2,
         sample_weight=w, drop_last=True)
    _fit(b, DataLoader(x, y, w, batch_size=16, shuffle=True, seed=2, drop_last=True),
         loss=nn.CrossEntropyLoss(reduction="none"))
    _same_params(a, b)


def test_fit_on_a_loader_resumes_at_the_batch_it_stopped():
    x, y = blobs(120)
    a, b = _model(), _model()
    _fit(a, DataLoader(x, y, batch_size=16, shuffle=True, seed=4))
    opt = optim.SGD(b.parameters(), lr=0.05)
    kw = {"epochs": 3, "verbose": 0}
    h = sg.fit(b, nn.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=16, shuffle=True, seed=4),
               max_steps=11, **kw)
    sg.fit(b, nn.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=16, shuffle=True, seed=4),
           resume=h.fit_state, **kw)
    _same_params(a, b)


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "steadygrad-prefetch"]


def test_fit_stops_the_prefetch_thread_when_it_leaves_an_epoch_early():
    x, y = blobs(200)
    loader = DataLoader(x, y, batch_size=8, shuffle=True, seed=0, prefetch=True)
    h = _fit(_model(), loader, max_steps=7)  # stops inside the first epoch
    assert h.fit_state["batch"] == 7 and not _prefetch_threads()

    class Boom(Callback):
        def on_batch_end(self, step, logs):
            if step == 3:
                raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        _fit(_model(), loader, callbacks=[Boom()])
    gc.collect()
    assert not _prefetch_threads()


@pytest.mark.parametrize("kw,exc,msg", [
    ({"batch_size": 32}, ValueError, "fit: batch_size=32 conflicts with the DataLoader's batch_size=16"),
    ({"shuffle": False}, ValueError, "fit: shuffle=False conflicts with the DataLoader's shuffle=True"),
    ({"drop_last": True}, ValueError, "fit: drop_last=True conflicts"),
    ({"seed": 3}, ValueError, "fit: seed conflicts with the DataLoader's own generator"),
    ({"validation_split": 0.2}, ValueError, "validation_split splits arrays"),
    ({"y": np.zeros(60, np.int64)}, TypeError, "fit: x is a DataLoader, which holds the targets too"),
], ids=["batch_size", "shuffle", "drop_last", "seed", "split", "y"])
def test_a_loader_with_conflicting_arguments_is_refused(kw, exc, msg):
    x, y = blobs(60)
    model = _model()
    before = _params(model)
    loader = DataLoader(x, y, batch_size=16, shuffle=True, seed=0)
    rng_before = loader.generator.bit_generator.state
    y_arg = kw.pop("y", None)
    with pytest.raises(exc, match=msg):
        _fit(model, loader, y_arg, **kw)
    _same_params_to(model, before)
    assert loader.generator.bit_generator.state == rng_before


def test_loader_shapes_that_fit_cannot_train_on():
    x, y = blobs(60)
    with pytest.raises(ValueError, match=r"must hold \(x, y\) or \(x, y, sample_weight\), it holds 1"):
        _fit(_model(), DataLoader(x, batch_size=8))
    with pytest.raises(ValueError, match=r"holds sample weights .* sample_weight must be left out"):
        _fit(_model(), DataLoader(x, y, np.ones(60), batch_size=8), sample_weight=np.ones(60),
             loss=nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(TypeError, match="fit: y is required with an array x"):
        _fit(_model(), x, batch_size=8)


def _same_params_to(model, before):
    for p, q in zip(_params(model), before, strict=True):
        np.testing.assert_array_equal(p, q)


# --- validation_split -------------------------------------------------------------------

def test_validation_split_holds_out_the_last_fraction_before_shuffling():
    x, y = blobs(103)
    w = np.random.default_rng(0).uniform(0.5, 1.5, 103)
    at = int(np.floor(103 * 0.75))  # Keras: floor(n * (1 - split))
    a, b = _model(), _model()
    ha = _fit(a, x, y, batch_size=16, seed=1, validation_split=0.25)
    hb = _fit(b, x[:at], y[:at], batch_size=16, seed=1, validation_data=(x[at:], y[at:]))
    _same_params(a, b)
    assert ha["val_loss"] == hb["val_loss"] and ha["val_accuracy"] == hb["val_accuracy"]
    # sample weights split with the arrays; the held-out part weighs the validation loss
    c = _model()
    hc = _fit(c, x, y, batch_size=16, seed=1, validation_split=0.25, sample_weight=w,
              loss=nn.CrossEntropyLoss(reduction="none"))
    per = torch.nn.functional.cross_entropy(torch.from_numpy(sg.predict(c, x[at:])).double(),
                                            torch.from_numpy(y[at:]), reduction="none").numpy()
    assert hc["val_loss"][-1] == pytest.approx(np.sum(w[at:] * per) / (103 - at), rel=1e-5)
    ev = sg.evaluate(c, nn.CrossEntropyLoss(reduction="none"), x[at:], y[at:], sample_weight=w[at:])
    assert ev["loss"] == pytest.approx(hc["val_loss"][-1], rel=1e-6)
    with pytest.raises(ValueError, match=r"evaluate: sample_weight needs a loss that returns per-sample"):
        sg.evaluate(c, nn.CrossEntropyLoss(), x[at:], y[at:], sample_weight=w[at:])
    with pytest.raises(ValueError, match=r"evaluate: sample_weight must have shape \(26,\)"):
        sg.evaluate(c, nn.CrossEntropyLoss(reduction="none"), x[at:], y[at:], sample_weight=w)


@pytest.mark.parametrize("split,exc,msg", [
    (0.0, ValueError, r"validation_split must be in \(0, 1\), got 0.0"),
    (1, ValueError, r"validation_split must be in \(0, 1\), got 1"),
    (-0.1, ValueError, r"must be in \(0, 1\)"),
    ("0.2", TypeError, r"validation_split must be a float in \(0, 1\), got '0.2'"),
    (True, TypeError, "validation_split must be a float"),
    (1e-17, ValueError, "validation_split=1e-17 of 20 samples leaves no validation sample"),
    (0.99, ValueError, "leaves no training sample"),
])
def test_bad_validation_split(split, exc, msg):
    x, y = blobs(20)
    model = _model()
    before = _params(model)
    with pytest.raises(exc, match=msg):
        _fit(model, x, y, batch_size=4, validation_split=split)
    _same_params_to(model, before)


def test_validation_split_and_validation_data_together_are_refused():
    x, y = blobs(20)
    with pytest.raises(ValueError, match="pass validation_data or validation_split, not both"):
        _fit(_model(), x, y, batch_size=4, validation_split=0.2, validation_data=(x, y))


# --- sample_weight / class_weight against torch ------------------------------------------

def _torch_run(model, x, y, w, batch_size, lr, loss):
    """The same mini-batch SGD in float64 torch: loss_b = sum(w_i * l_i) / len(b), l_i the
    sample's loss (mean over its outputs for an elementwise loss)."""
    layers = [m for m in model.children()]
    lin1 = torch.nn.Linear(layers[0].in_features, layers[0].out_features).double()
    lin2 = torch.nn.Linear(layers[2].in_features, layers[2].out_features).double()
    for lin, src in ((lin1, layers[0]), (lin2, layers[2])):
        lin.weight.data = torch.from_numpy(src.weight.data.astype(np.float64))
        lin.bias.data = torch.from_numpy(src.bias.data.astype(np.float64))
    net = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses, sizes = [], []
    for lo in range(0, len(x), batch_size):
        xb, yb = torch.from_numpy(x[lo:lo + batch_size]).double(), torch.from_numpy(y[lo:lo + batch_size])
        wb = torch.from_numpy(w[lo:lo + batch_size])
        out = net(xb)
        if loss == "ce":
            per = torch.nn.functional.cross_entropy(out, yb, reduction="none")
        else:
            per = ((out - yb.double()) ** 2).mean(dim=1)
        lb = (wb * per).sum() / len(xb)
        opt.zero_grad()
        lb.backward()
        opt.step()
        losses.append(lb.item())
        sizes.append(len(xb))
    mean = np.dot(losses, sizes) / len(x)
    return [p.detach().numpy() for p in net.parameters()], mean


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_sample_weight_matches_torchs_weighted_loss_and_gradient(loss):
    x, labels = blobs(40)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.0, 3.0, 40)
    w[5] = 0.0
    y = labels if loss == "ce" else rng.standard_normal((40, 3)).astype(np.float32)
    model = _model()
    want, want_loss = _torch_run(model, x, y, w, batch_size=16, lr=0.1, loss=loss)
    loss_fn = nn.CrossEntropyLoss(reduction="none") if loss == "ce" else nn.MSELoss(reduction="none")
    h = _fit(model, x, y, loss=loss_fn, lr=0.1, epochs=1, batch_size=16, shuffle=False,
             sample_weight=w)
    for got, ref in zip(_params(model), want, strict=True):
        assert_close(got, ref, atol=2e-6, rtol=1e-5, what="parameters after 3 weighted steps")
    assert h["loss"][0] == pytest.approx(want_loss, rel=1e-5)


def test_a_per_sample_loss_without_weights_trains_as_the_mean():
    x, y = blobs(50)
    a, b = _model(), _model()
    ha = _fit(a, x, y, batch_size=16, seed=0)
    hb = _fit(b, x, y, loss=nn.CrossEntropyLoss(reduction="none"), batch_size=16, seed=0)
    for pa, pb in zip(_params(a), _params(b), strict=True):
        assert_close(pb, pa, atol=1e-6, rtol=1e-5, what="reduction none vs mean")
    assert hb["loss"] == pytest.approx(ha["loss"], rel=1e-5)


def test_class_weight_is_keras_per_label_weights_times_sample_weight():
    x, y = blobs(60)
    sw = np.random.default_rng(0).uniform(0.5, 2.0, 60)
    cw = {0: 2.0, 2: 0.5}  # class 1 is missing: weight 1, as Keras
    per_label = np.array([2.0, 1.0, 0.5])[y]
    kw = {"loss": nn.CrossEntropyLoss(reduction="none"), "batch_size": 16, "seed": 5}
    a, b = _model(), _model()
    _fit(a, x, y, class_weight=cw, sample_weight=sw, **kw)
    _fit(b, x, y, sample_weight=sw * per_label, **kw)
    _same_params(a, b)
    # one binary logit with float 0/1 targets: labels are the targets
    yb = (y == 1).astype(np.float32)[:, None]
    c, d = _model(c=1), _model(c=1)
    kw["loss"] = nn.BCEWithLogitsLoss(reduction="none")
    _fit(c, x, yb, class_weight={1: 3.0}, **kw)
    _fit(d, x, yb, sample_weight=np.where(yb[:, 0] == 1, 3.0, 1.0), **kw)
    _same_params(c, d)


@pytest.mark.parametrize("kw,exc,msg", [
    ({"sample_weight": np.ones(59)}, ValueError, r"fit: sample_weight must have shape \(60,\), one weight per "
     r"sample of x, got shape \(59,\)"),
    ({"sample_weight": -np.ones(60)}, ValueError, "sample_weight must be finite and non-negative, got -1.0 at "
     "index 0"),
    ({"sample_weight": np.full(60, np.nan)}, ValueError, "must be finite and non-negative, got nan"),
    ({"sample_weight": np.array(["a"] * 60)}, TypeError, "sample_weight must be an array of real numbers"),
    ({"class_weight": [1.0, 2.0]}, TypeError, r"class_weight must be a dict \{class index: weight\}"),
    ({"class_weight": {3: 1.0}}, ValueError, r"class_weight keys must be class indices in \[0, 3\)"),
    ({"class_weight": {0: -1.0}}, ValueError, r"class_weight\[0\] must be a finite non-negative number"),
    ({"class_weight": {0: 1.0}, "loss": nn.CrossEntropyLoss()}, ValueError,
     r"sample_weight and class_weight need a loss that returns per-sample losses, "
     r"CrossEntropyLoss\(reduction='none'\); got CrossEntropyLoss\(.*reduction='mean'"),
    ({"sample_weight": np.ones(60), "loss": nn.CrossEntropyLoss()}, ValueError, "per-sample losses"),
], ids=["sw-length", "sw-negative", "sw-nan", "sw-str", "cw-list", "cw-key", "cw-negative",
        "cw-mean-loss", "sw-mean-loss"])
def test_bad_weights_change_nothing(kw, exc, msg):
    x, y = blobs(60)
    model = _model()
    before, rng_before = _params(model), sg.random.generator().bit_generator.state
    kw.setdefault("loss", nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(exc, match=msg):
        _fit(model, x, y, batch_size=16, **kw)
    _same_params_to(model, before)
    assert sg.random.generator().bit_generator.state == rng_before


def test_class_weight_for_a_regression_output_is_refused():
    x, _ = blobs(30)
    y = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"class_weight needs class labels .* of regression values"):
        _fit(_model(), x, y, loss=nn.MSELoss(reduction="none"), batch_size=8, class_weight={0: 2.0})


# --- metrics ------------------------------------------------------------------------------

def _top_k(scores, labels, k):
    return np.mean([labels[i] in np.argsort(-scores[i], kind="stable")[:k] for i in range(len(labels))])


def test_classification_metrics_match_numpy():
    x, y = blobs(90, k=7)
    xv, yv = blobs(40, k=7, seed=1)
    model = _model(c=7)
    # lr=0: the model does not move, so each epoch's metrics are those of its predictions
    h = _fit(model, x, y, lr=0.0, epochs=2, batch_size=16, validation_data=(xv, yv),
             metrics=["accuracy", "top5"])
    p, pv = sg.predict(model, x), sg.predict(model, xv)
    assert h["accuracy"] == [pytest.approx(np.mean(p.argmax(1) == y))] * 2
    assert h["top5"] == [pytest.approx(_top_k(p, y, 5))] * 2
    assert h["val_top5"][-1] == pytest.approx(_top_k(pv, yv, 5))
    assert 0 < h["top5"][0] < 1 and h["top5"][0] >= h["accuracy"][0]
    ev = sg.evaluate(model, nn.CrossEntropyLoss(), xv, yv, metrics=["top5", "accuracy"])
    assert ev["top5"] == pytest.approx(_top_k(pv, yv, 5)) and ev["accuracy"] == np.mean(pv.argmax(1) == yv)


def test_regression_metrics_match_numpy():
    x, _ = blobs(64)
    y = np.random.default_rng(2).standard_normal((64, 3)).astype(np.float32)
    model = _model()
    h = _fit(model, x, y, loss=nn.MSELoss(), lr=0.0, epochs=1, batch_size=10, metrics=["mae", "mse"],
             validation_split=0.25)
    p = sg.predict(model, x).astype(np.float64)
    assert h["mae"][0] == pytest.approx(np.mean(np.abs(p[:48] - y[:48])), rel=1e-6)
    assert h["mse"][0] == pytest.approx(np.mean((p[:48] - y[:48]) ** 2), rel=1e-6)
    assert h["val_mae"][0] == pytest.approx(np.mean(np.abs(p[48:] - y[48:])), rel=1e-6)
    assert h["loss"][0] == pytest.approx(h["mse"][0], rel=1e-5)  # MSELoss is the mse metric
    assert "accuracy" not in h


def test_a_registered_metric_is_logged(monkeypatch):
    monkeypatch.setattr(sg.metrics, "_REGISTRY", dict(sg.metrics._REGISTRY))
    sg.metrics.register("max_abs_logit", lambda pred, y: np.abs(pred).max(axis=1))
    x, y = blobs(40)
    model = _model()
    h = _fit(model, x, y, lr=0.0, epochs=1, batch_size=8, metrics=["max_abs_logit"])
    assert h["max_abs_logit"][0] == pytest.approx(np.abs(sg.predict(model, x)).max(axis=1).mean(), rel=1e-6)
    assert "accuracy" not in h
    with pytest.raises(ValueError, match="'max_abs_logit' is registered already"):
        sg.metrics.register("max_abs_logit", np.max)
    with pytest.raises(ValueError, match="not starting with 'val_'"):
        sg.metrics.register("val_x", np.max)
    with pytest.raises(TypeError, match="fn must be callable"):
        sg.metrics.register("x", 3)


@pytest.mark.parametrize("metrics,msg", [
    (["accuracy", "f1"], r"fit: metrics\[1\]: unknown metric 'f1'; known: accuracy, mae, mse, top5"),
    ("accuracy", "fit: metrics must be a list of metric names"),
    (["accuracy", "accuracy"], "metrics lists 'accuracy' twice"),
    (["mae"], r"metric 'mae' does not suit the model's output of shape \(2, 3\)"),
    (["top5"], "top5 needs at least 5 classes, the output has 3"),
])
def test_bad_metrics_change_nothing(metrics, msg):
    x, y = blobs(30)
    model = _model()
    before = _params(model)
    with pytest.raises((ValueError, TypeError), match=msg):
        _fit(model, x, y, batch_size=8, metrics=metrics)
    _same_params_to(model, before)


def test_early_stopping_on_accuracy_needs_the_accuracy_metric():
    x, y = blobs(30)
    with pytest.raises(ValueError, match="fit's metrics do not include 'accuracy'"):
        _fit(_model(), x, y, batch_size=8, metrics=[],
             callbacks=[EarlyStopping("accuracy")])
