"""GradientMonitor (recorded values against direct numpy computations, only every k steps)
and check_init (names the layer where the signal vanishes or explodes, leaves the model as
it was)."""

from __future__ import annotations

import numpy as np
from train_fakes import (
    FakeCE,
    FakeLinear,
    FakeReLU,
    FakeSequential,
    FakeSGD,
    FakeSigmoid,
    RunningStat,
    blobs,
    mlp,
)

from steadygrad.callbacks import Callback
from steadygrad.diagnostics import GradientMonitor, check_init
from steadygrad.training import fit


class Truth(Callback):
    """Records, on the steps the monitor samples, what it should find."""

    def __init__(self, every):
        self.every, self.grad, self.w0, self.ratio = every, [], None, []

    def on_before_optimizer_step(self, step):
        if step % self.every == 0:
            ps = self.loop.model.parameters()
            self.grad.append([np.linalg.norm(p.grad.astype(np.float64)) for p in ps])
            self.w0 = [p.data.astype(np.float64).copy() for p in ps]

    def on_batch_end(self, step, logs):
        if step % self.every == 0:
            ps = self.loop.model.parameters()
            self.ratio.append([np.linalg.norm(p.data - w) / max(np.linalg.norm(w), 1e-30) for p, w in zip(ps, self.w0, strict=False)])


def test_gradient_monitor_records_every_k_steps():
    x, y = blobs(96)
    rng = np.random.default_rng(0)
    model = FakeSequential(FakeLinear(8, 16, rng), RunningStat(16), FakeReLU(), FakeLinear(16, 3, rng))
    opt = FakeSGD(model.parameters(), lr=0.05)
    truth = Truth(5)
    mon = GradientMonitor(every=5)
    fit(model, FakeCE(), opt, x, y, epochs=4, batch_size=16, callbacks=[truth, mon], seed=0, verbose=0)
    a = mon.arrays()
    assert list(a["steps"]) == [0, 5, 10, 15, 20]
    assert a["param_names"] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert a["layer_names"] == ["0", "1", "2", "3"] and a["relu_layers"] == ["2"] and a["bn_layers"] == ["1"]
    assert a["grad_norm"].shape == (5, 4) and a["act_std"].shape == (5, 4) and a["dead_relu"].shape == (5, 1)
    np.testing.assert_allclose(a["grad_norm"], truth.grad, rtol=1e-5)
    np.testing.assert_allclose(a["update_ratio"], truth.ratio, rtol=1e-4)
    assert np.all(a["bn_var_drift"] > 0) and np.all(np.isfinite(a["act_mean"]))
    assert np.all((a["dead_relu"] >= 0) & (a["dead_relu"] <= 1))
    table = str(mon)
    assert "gradient health at step 20" in table and "3.weight" in table and "dead_relu" in table
    per_layer = mon.layer_grad_norms()
    np.testing.assert_allclose(per_layer["0"], np.hypot(*a["grad_norm"][-1, :2]))


def test_dead_relu_fraction_and_activation_stats_are_exact():
    rng = np.random.default_rng(0)
    model = FakeSequential(FakeLinear(4, 10, rng), FakeReLU(), FakeLinear(10, 2, rng))
    lin = model._modules["0"]
    lin.bias.data = np.where(np.arange(10) < 7, -100.0, 0.0).astype(np.float32)  # 7 of 10 dead
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    mon = GradientMonitor(every=1)
    fit(model, FakeCE(), FakeSGD(model.parameters(), lr=0.0), x, y, epochs=1, batch_size=32,
        callbacks=[mon], verbose=0, shuffle=False)
    a = mon.arrays()
    assert a["dead_relu"][0, 0] == 0.7
    h = np.maximum(x @ lin.weight.data.T + lin.bias.data, 0)
    assert a["act_mean"][0, 1] == np.float32(h.mean()) or np.isclose(a["act_mean"][0, 1], h.mean())
    np.testing.assert_allclose(a["act_std"][0, 1], h.std(0).mean(), rtol=1e-5)


def test_monitor_via_fit_argument_and_layers_unwrapped_after():
    x, y = blobs(64)
    model = mlp([8, 8, 3])
    h = fit(model, FakeCE(), FakeSGD(model.parameters()), x, y, epochs=2, batch_size=16,
            diagnostics=3, verbose=0, seed=0)
    assert list(h.diagnostics.arrays()["steps"]) == [0, 3, 6]
    assert all("forward" not in m.__dict__ for m in model._modules.values())


def _state(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_check_init_sigmoid_stack_vanishes_and_suggests_relu_kaiming():
    x, y = blobs(128, d=16)
    model = mlp([16] + [32] * 12 + [3], act=FakeSigmoid)
    before = _state(model)
    report = check_init(model, x, y, FakeCE())
    kinds = {i.kind: i for i in report.issues}
    assert {"vanishing_activation", "vanishing_gradient"} <= set(kinds)
    assert kinds["vanishing_activation"].layer_type == "FakeSigmoid"
    assert "ReLU with Kaiming init" in kinds["vanishing_gradient"].suggestion
    first = report.rows[0]["grad_scale"]
    assert first < 1e-5  # the first layer's gradient is a tiny fraction of the last layer's
    text = str(report)
    assert "vanishing_gradient" in text and "check_init: 2 problem(s)" in text
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_check_init_names_the_misscaled_layer():
    x, _ = blobs(128, d=16)
    rng = np.random.default_rng(1)
    layers = []
    for _i in range(6):
        layers += [FakeLinear(16, 16, rng, gain=np.sqrt(2.0)), FakeReLU()]
    model = FakeSequential(*layers, FakeLinear(16, 3, rng))
    healthy = check_init(model, x)
    assert healthy.ok, str(healthy)
    model._modules["6"].weight.data = model._modules["6"].weight.data * 1e-4
    report = check_init(model, x)
    assert report.flagged("vanishing_activation") == ["6"]
    assert "Kaiming" in report.issues[0].suggestion
    model._modules["6"].weight.data = model._modules["6"].weight.data * 1e8  # now 1e4 x too big
    report = check_init(model, x)
    assert report.flagged("exploding_activation") == ["6"]
    assert "clip gradients" in report.issues[0].suggestion


def test_check_init_restores_buffers_and_mode():
    rng = np.random.default_rng(0)
    model = FakeSequential(FakeLinear(4, 6, rng), RunningStat(6), FakeReLU(), FakeLinear(6, 2, rng))
    model.eval()
    before = _state(model)
    check_init(model, rng.standard_normal((16, 4)).astype(np.float32))
    assert not model.training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_check_init_on_real_layers_names_the_layer_and_restores_state():
    from steadygrad import nn
    from steadygrad.random import generator, manual_seed

    manual_seed(0)
    layers = []
    for _ in range(5):
        lin = nn.Linear(16, 16)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        layers += [lin, nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1)]
    model = nn.Sequential(*layers, nn.Linear(16, 3))
    x, y = blobs(64, d=16)
    assert check_init(model, x, y).ok
    model[8].weight.data = model[8].weight.data * 0  # a dead block: nothing passes layer 8
    model.eval()
    before = _state(model)
    rng_before = generator().bit_generator.state
    report = check_init(model, x, y)
    assert report.flagged("vanishing_activation") == ["8"], str(report)
    assert "8" in str(report) and not model.training
    assert generator().bit_generator.state == rng_before  # Dropout's draws were undone
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # BatchNorm statistics included


def test_monitor_reuses_the_optimizers_norm_pass(monkeypatch):
    from steadygrad import nn, optim
    from steadygrad.diagnostics import monitor
    from steadygrad.random import manual_seed

    manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2, max_grad_norm=1.0)
    own = []
    real = monitor.param_norms
    monkeypatch.setattr(monitor, "param_norms", lambda ps: own.append(1) or real(ps))
    truth, mon = Truth(1), GradientMonitor(every=1)
    x, y = blobs(64)
    fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=16, callbacks=[truth, mon],
        seed=0, verbose=0)
    assert len(own) == 1  # only before the optimizer's first step; then its per-parameter norms
    a = mon.arrays()
    assert a["grad_norm"].shape == (8, 6) and a["bn_layers"] == ["1"]
    np.testing.assert_allclose(a["grad_norm"], truth.grad, rtol=1e-5)
    np.testing.assert_allclose(a["update_ratio"], truth.ratio, rtol=1e-4)
    assert np.all(a["bn_var_drift"] > 0)


def test_layer_taps_come_off_when_a_step_raises():
    import pytest

    x, y = blobs(64)
    model = mlp([8, 8, 3])

    class Boom(FakeCE):
        def __call__(self, p, t):
            raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        fit(model, Boom(), FakeSGD(model.parameters()), x, y, epochs=1, batch_size=16,
            diagnostics=1, verbose=0)
    assert all("forward" not in m.__dict__ for m in model._modules.values())


def test_dead_and_saturated_units_come_from_what_a_layer_declares():
    """A ReLU or Tanh subclass under another name keeps its statistics (the layer declares
    `rectifier` / `output_bounds`; its class name does not matter), computed exactly."""
    from steadygrad import nn
    from steadygrad.diagnostics.probe import LayerProbe
    from steadygrad.random import manual_seed

    class Clamp(nn.ReLU):
        pass

    class Squash(nn.Tanh):
        pass

    manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 10), Clamp(), nn.Linear(10, 6), Squash())
    model[0].bias.data = np.where(np.arange(10) < 7, -100.0, 0.0).astype(np.float32)  # 7 dead
    model[2].weight.data = model[2].weight.data * 50  # drives most of the tanh into saturation
    x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
    with LayerProbe(model) as probe:
        out = np.array(model(x))
    stats = probe.forward_stats
    assert stats["1"]["dead"] == 0.7
    saturated = np.count_nonzero(np.abs(out) > 0.99) / out.size
    assert 0 < saturated < 1 and stats["3"]["saturated"] == saturated
    assert all("dead" not in stats[k] and "saturated" not in stats[k] for k in ("0", "2"))


# -- convolutions ---------------------------------------------------------------------------
def _conv_net():
    """A channels-last run (nn._layout) with every conv-family layer the tools meet: a grouped
    non-square Conv2d, BatchNorm2d, pooling, a ReLU with two dead channels, a residual block."""
    from steadygrad import nn
    from steadygrad.random import manual_seed

    manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 6, (3, 2), padding=1, groups=2), nn.BatchNorm2d(6), nn.MaxPool2d(2), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.Tanh())),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    model[1].bias.data = np.where(np.arange(6) < 2, -100.0, 0.0).astype(np.float32)  # 2 dead
    return model


def _images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 8, 7)).astype(np.float32), rng.integers(0, 3, n)


def _reference_run(model, x, y):
    """Each layer run on its own (torch's channels-first layout) on a copy in train mode: the
    output of every leaf layer by name, the parameter gradients and dL/dx of the input."""
    import copy

    from steadygrad import nn

    m = copy.deepcopy(model)
    outs, h = {}, x
    for i, layer in enumerate(m):
        if isinstance(layer, nn.Residual):
            c = layer.module[0](h)
            outs[f"{i}.module.0"] = np.array(c)
            t = np.array(layer.module[1](c))
            outs[f"{i}.module.1"] = t
            h = h + t
        else:
            h = np.array(layer(h))
            outs[str(i)] = h
    m = copy.deepcopy(model)  # a fresh copy: the runs above left forwards pending
    m.zero_grad()
    loss = nn.CrossEntropyLoss()
    loss(m(x), y)
    dx = np.array(m.backward(loss.backward()))
    return outs, dict(m.named_parameters()), dx


def test_check_init_on_conv_layers_matches_each_layer_run_alone():
    """Rows name every conv-family layer and hold exactly what numpy computes from each layer
    run alone in torch's layout: activation statistics over 4-D outputs (units are
    (channel, position), so the channels-last run changes nothing), dead ReLU units, per-layer
    gradient RMS, and the fan-in and init gain of the convolutions (in/groups * kh * kw)."""
    model = _conv_net()
    x, y = _images()
    outs, params, dx = _reference_run(model, x, y)
    report = check_init(model, x, y)
    rows = {r["layer"]: r for r in report.rows}
    assert [(r["layer"], r["type"]) for r in report.rows] == [
        ("0", "Conv2d"), ("1", "BatchNorm2d"), ("2", "MaxPool2d"), ("3", "ReLU"),
        ("4.module.0", "Conv2d"), ("4.module.1", "Tanh"), ("5", "AvgPool2d"), ("6", "Flatten"),
        ("7", "Linear")]
    in_std = x.reshape(16, -1).std(0).mean()
    for name, out in outs.items():
        flat = out.reshape(len(out), -1).astype(np.float64)
        np.testing.assert_allclose(rows[name]["act_mean"], flat.mean(), rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(rows[name]["act_std"], flat.std(0).mean(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(rows[name]["act_scale"], flat.std(0).mean() / in_std, rtol=1e-5)
    dead = 1 - np.count_nonzero(np.any(outs["3"].reshape(16, -1) > 0, axis=0)) / outs["3"][0].size
    assert dead >= 2 / 6 and rows["3"]["dead"] == dead
    np.testing.assert_allclose(rows["0"]["grad_in_std"], dx.std(), rtol=1e-5)
    rms = {}
    for layer in ("0", "1", "4.module.0", "7"):
        gs = [params[k].grad.astype(np.float64) for k in params if k.rsplit(".", 1)[0] == layer]
        rms[layer] = np.sqrt(sum((g * g).sum() for g in gs) / sum(g.size for g in gs))
    for layer, v in rms.items():
        np.testing.assert_allclose(rows[layer]["param_grad_rms"], v, rtol=1e-10, err_msg=layer)
        np.testing.assert_allclose(rows[layer]["grad_scale"], v / rms["7"], rtol=1e-10)
    for layer, fan in (("0", 1 * 3 * 2), ("4.module.0", 6 * 3 * 3), ("7", 24)):
        w = params[f"{layer}.weight"].data.astype(np.float64)
        assert rows[layer]["fan_in"] == fan
        np.testing.assert_allclose(rows[layer]["init_gain"], w.std() * np.sqrt(fan), rtol=1e-6)
    assert all(rows[k]["fan_in"] is None and rows[k]["init_gain"] is None
               for k in ("1", "2", "3", "4.module.1", "5", "6"))
    # every row lines up, whatever the length of the type name (AdaptiveAvgPool2d included)
    lines = report.table().splitlines()
    assert len({len(line) for line in lines[2:]}) == 1 and len(lines[0]) == len(lines[2]) + 4


def _deep_cnn(depth, fixed):
    """depth conv3x3 layers of 4 channels with tanh and torch's default init (gain 1/sqrt(3));
    `fixed`: each a residual block conv + BatchNorm2d + tanh."""
    from steadygrad import nn
    from steadygrad.random import manual_seed

    manual_seed(0)
    layers = []
    for _ in range(depth):
        block = [nn.Conv2d(4, 4, 3, padding=1)] + ([nn.BatchNorm2d(4)] if fixed else []) + [nn.Tanh()]
        layers.append(nn.Residual(nn.Sequential(*block)) if fixed else nn.Sequential(*block))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_check_init_names_where_a_deep_plain_cnn_vanishes_and_suggests_bn2d_and_residual():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 4, 6, 6)).astype(np.float32), rng.integers(0, 3, 32)
    report = check_init(_deep_cnn(14, fixed=False), x, y)
    issue = next(i for i in report.issues if i.kind == "vanishing_gradient")
    rows = {r["layer"]: r for r in report.rows}
    assert issue.layer_type == "Conv2d" and rows[issue.layer]["grad_scale"] < 1e-2
    # the layer named is where it starts: every weight layer after it is above the threshold
    after = [r for r in report.rows[report.rows.index(rows[issue.layer]) + 1:] if r["fan_in"]]
    assert after and all(r["grad_scale"] >= 1e-2 for r in after)
    assert f"(fan_in {4 * 9})" in issue.message and "init gain" in issue.message
    assert "BatchNorm2d" in issue.suggestion and "nn.Residual" in issue.suggestion
    # 14 layers of gain ~0.58 and tanh' <= 1: 6.5e-4 at the first layer, measured; the same
    # depth with BatchNorm2d in residual blocks keeps every layer within 0.19-0.35 of the last
    assert report.rows[0]["grad_scale"] < 2e-3
    fixed = check_init(_deep_cnn(14, fixed=True), x, y)
    assert not fixed.flagged("vanishing_gradient") and not fixed.flagged("vanishing_activation"), str(fixed)
    assert all(r["grad_scale"] > 0.1 for r in fixed.rows if r["fan_in"])


def test_suggestions_name_the_batchnorm_of_the_weight_layers():
    from steadygrad import nn
    from steadygrad.random import manual_seed

    manual_seed(0)
    rng = np.random.default_rng(0)
    layers = []
    for _ in range(8):
        layers += [nn.Conv1d(3, 3, 3, padding=1), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(3 * 5, 2))
    report = check_init(model, rng.standard_normal((32, 3, 5)).astype(np.float32), rng.integers(0, 2, 32))
    vanishing = [i for i in report.issues if i.kind.startswith("vanishing")]
    assert vanishing and all("BatchNorm1d" in i.suggestion and "BatchNorm2d" not in i.suggestion
                             for i in vanishing)


def test_gradient_monitor_on_conv_layers():
    from steadygrad import nn, optim

    model = _conv_net()
    x, y = _images(64, seed=1)
    truth, mon = Truth(2), GradientMonitor(every=2)
    fit(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2), x, y, epochs=2,
        batch_size=16, callbacks=[truth, mon], seed=0, verbose=0)
    a = mon.arrays()
    assert a["layer_names"] == ["0", "1", "2", "3", "4.module.0", "4.module.1", "5", "6", "7"]
    assert a["layer_types"][4] == "Conv2d" and a["weight_layers"] == ["0", "4.module.0", "7"]
    assert a["bn_layers"] == ["1"] and a["relu_layers"] == ["3"]
    assert a["param_names"][:2] == ["0.weight", "0.bias"] and "4.module.0.weight" in a["param_names"]
    np.testing.assert_allclose(a["grad_norm"], truth.grad, rtol=1e-5)
    np.testing.assert_allclose(a["update_ratio"], truth.ratio, rtol=1e-4)
    assert np.all(a["bn_var_drift"] > 0) and np.all(np.isfinite(a["act_std"]))
    assert np.all(a["dead_relu"] >= 2 / 6)  # the two channels whose BatchNorm bias is -100
    norms = mon.layer_grad_norms()
    np.testing.assert_allclose(norms["4.module.0"], np.hypot(*a["grad_norm"][-1, 4:6]))
    lines = mon.table().splitlines()
    params, layers = lines[1:2 + len(a["param_names"])], lines[2 + len(a["param_names"]):]
    assert len({len(s) for s in params}) == 1 and len({len(s) for s in layers}) == 1


def test_check_init_takes_the_indices_of_an_embedding_model() -> None:
    """A model that starts with nn.Embedding gets its x_probe as integer indices (a float probe
    is refused as fit refuses it); the indices have no gradient, which is not a non-finite one,
    and act/in is relative to the embedding rows the rest of the network sees."""
    import pytest

    import steadygrad as sg
    from steadygrad import nn

    sg.manual_seed(0)
    m = nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(),
                      nn.Linear(16, 3))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, (20, 4)), rng.integers(0, 3, 20)
    rep = sg.check_init(m, x, y)
    assert rep.issues == []
    assert rep.rows[0]["type"] == "Embedding" and rep.rows[0]["act_scale"] == 1.0
    assert np.isnan(rep.rows[0]["grad_in_std"]) and rep.rows[0]["finite"]
    with pytest.raises(TypeError, match="check_init: x_probe must hold integer indices"):
        sg.check_init(m, x.astype(np.float32), y)
