"""History.plot and GradientMonitor.plot on the figures of a real short sg.fit (with
validation data, a per-epoch scheduler and diagnostics): the panels (titles, labels, scales),
the series (labels, and y data equal to what the history and the monitor recorded), keys=
selection, and the errors for bad keys and empty records."""

from __future__ import annotations

import builtins
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.diagnostics import GradientMonitor
from steadygrad.training.history import History

matplotlib = pytest.importorskip("matplotlib", reason="the plots need matplotlib (optional)")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def history() -> History:
    """4 epochs of a small MLP on 3 blobs, validation data, StepLR (the lr falls 100x), a
    GradientMonitor every 2 steps."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 6)) * 3
    y = rng.integers(0, 3, 120)
    x = (centers[y] + rng.standard_normal((120, 6))).astype(np.float32)
    sg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.01)
    return sg.fit(model, nn.CrossEntropyLoss(), opt, x[:96], y[:96], epochs=4, batch_size=16,
                  validation_data=(x[96:], y[96:]), scheduler=sched, diagnostics=2, seed=0,
                  verbose=0)


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_history_figure_panels_and_series(history: History) -> None:
    fig = history.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == [
        "loss", "accuracy", "learning rate", "gradient norm (global, before clipping)"]
    assert [a.get_ylabel() for a in axes] == ["loss", "accuracy", "lr", "grad_norm"]
    assert [a.get_xlabel() for a in axes] == ["", "", "", "optimizer step"]
    assert [sorted(_lines(a)) for a in axes] == [
        ["loss", "loss (step)", "val_loss"], ["accuracy", "accuracy (step)", "val_accuracy"],
        ["lr (step)"], ["grad_norm", "grad_norm (step)", "grad_norm_max"]]
    # one shared step axis: 6 batches an epoch, epoch rows at the step their epoch ended
    assert history.epoch_step == [6, 12, 18, 24]
    for a in axes:
        for key, line in _lines(a).items():
            if key.endswith(" (step)"):
                name = key[:-len(" (step)")]
                assert list(line.get_xdata()) == list(range(1, 25))
                np.testing.assert_array_equal(line.get_ydata(), np.asarray(history.steps[name]))
            else:
                assert list(line.get_xdata()) == [6, 12, 18, 24]
                np.testing.assert_array_equal(line.get_ydata(), np.asarray(history[key]))
        assert a.get_legend() is not None
    shared = axes[0].get_shared_x_axes()
    assert all(shared.joined(axes[0], a) for a in axes[1:])
    # the lr fell 100x (StepLR gamma 0.01 after 2 epochs): a log axis; norms: always log
    assert [a.get_yscale() for a in axes] == ["linear", "linear", "log", "log"]
    assert history["lr"] == pytest.approx([0.1, 0.1, 1e-3, 1e-3])


def test_step_log_agrees_with_the_epoch_rows(history: History) -> None:
    """The per-step entries are the steps the epoch rows summarise: equal batches (16 of 96),
    so an epoch's loss and accuracy are the means of its steps', grad_norm the mean and
    grad_norm_max the max of its steps' norms; the lr of every step is the schedule's."""
    s = history.step_arrays()
    assert list(s["step"]) == list(range(24))
    for key in ("loss", "accuracy", "grad_norm"):
        per_epoch = s[key].reshape(4, 6).mean(axis=1)
        np.testing.assert_allclose(per_epoch, history[key], rtol=1e-12, err_msg=key)
    np.testing.assert_array_equal(s["grad_norm"].reshape(4, 6).max(axis=1), history["grad_norm_max"])
    np.testing.assert_allclose(s["lr"], [0.1] * 12 + [1e-3] * 12, rtol=1e-12)
    assert np.all(np.isfinite(s["grad_norm"])) and np.all(s["grad_norm"] > 0)


def test_a_history_without_steps_is_drawn_over_epochs() -> None:
    """A history from before per-step curves (or built by hand) keeps the epoch axis."""
    h = History()
    h.load_state_dict({"epoch": [0, 1, 2], "history": {"loss": [3.0, 2.0, 1.0]}})
    (a,) = h.plot().get_axes()
    assert a.get_xlabel() == "epoch" and sorted(_lines(a)) == ["loss"]
    assert list(_lines(a)["loss"].get_xdata()) == [0, 1, 2]


def test_history_plot_keys_choose_panels(history: History) -> None:
    fig = history.plot(keys=["val_loss", "grad_norm_max"])
    axes = fig.get_axes()
    assert [sorted(_lines(a)) for a in axes] == [["loss", "loss (step)", "val_loss"],
                                                 ["grad_norm", "grad_norm (step)", "grad_norm_max"]]
    (a,) = history.plot(keys="samples_per_s").get_axes()  # bookkeeping: only when named
    np.testing.assert_array_equal(_lines(a)["samples_per_s"].get_ydata(), history["samples_per_s"])
    assert "samples_per_s" not in {k for a in history.plot().get_axes() for k in _lines(a)}


def test_history_plot_on_given_axes(history: History) -> None:
    fig, axes = plt.subplots(1, 2)
    assert history.plot(keys=["loss", "lr"], ax=axes, color="k") is fig
    assert _lines(axes[0])["val_loss"].get_color() == "k"
    assert [a.get_title() for a in axes] == ["loss", "learning rate"]
    with pytest.raises(ValueError, match="ax must be 2 Axes"):
        history.plot(keys=["loss", "lr"], ax=axes[0])
    (a,) = history.plot(keys="loss", marker="x").get_axes()  # the caller's keywords win
    assert {line.get_marker() for line in a.get_lines()} == {"x"}


@pytest.mark.parametrize("keys", [["loss", "val_los"], "bogus", ["loss", 3]])
def test_history_plot_bad_key_raises_naming_it(history: History, keys: Any) -> None:
    bad = [k for k in ([keys] if isinstance(keys, str) else keys) if k not in history]
    with pytest.raises(KeyError, match=repr(bad[0])) as exc:
        history.plot(keys=keys)
    assert "val_loss" in str(exc.value)  # what the history has
    assert plt.get_fignums() == []  # raised before any figure was made


def test_empty_history_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        History().plot()
    h = History()
    h.append(0, {"skipped_steps": 0.0})
    with pytest.raises(ValueError, match="nothing to plot"):
        h.plot()


def test_nan_padding_is_kept_as_a_gap() -> None:
    h = History()
    h.append(0, {"loss": 2.0})
    h.append(1, {"loss": 1.0, "val_loss": 1.5})  # val_loss first seen late: NaN at epoch 0
    (a,) = h.plot().get_axes()
    y = _lines(a)["val_loss"].get_ydata()
    assert np.isnan(y[0]) and y[1] == 1.5 and a.get_yscale() == "linear"


def test_monitor_figure_per_layer_norms(history: History) -> None:
    mon = history.diagnostics
    assert isinstance(mon, GradientMonitor)
    fig = mon.plot(vanish=1e-6, explode=1e3)
    (a,) = fig.get_axes()
    assert a.get_yscale() == "log" and a.get_xlabel() == "optimizer step"
    assert a.get_title() == "gradient norm per layer (before clipping)"
    lines = _lines(a)
    assert list(lines) == ["0", "2", "vanishing (1e-06)", "exploding (1000)"]  # the Linears
    arrays = mon.arrays()
    steps = list(range(0, 24, 2))  # 4 epochs x 6 batches, every 2nd step
    assert list(arrays["steps"]) == steps
    names, norms = mon.layer_grad_norm_series()
    g = arrays["grad_norm"]  # columns 0.weight, 0.bias, 2.weight, 2.bias
    np.testing.assert_allclose(norms, np.hypot(g[:, [0, 2]], g[:, [1, 3]]), rtol=1e-14)
    for j, name in enumerate(names):
        assert list(lines[name].get_xdata()) == steps
        np.testing.assert_array_equal(lines[name].get_ydata(), norms[:, j])
        assert [mon.layer_grad_norms(r)[name] for r in range(len(steps))] == list(norms[:, j])
    assert list(lines["exploding (1000)"].get_ydata()) == [1e3, 1e3]
    assert [sorted(_lines(a)) for a in mon.plot(layers=["2"]).get_axes()] == [["2"]]


def test_monitor_plot_errors(history: History) -> None:
    with pytest.raises(KeyError, match=r"'1'.*choose from 0, 2"):
        history.diagnostics.plot(layers=["1"])  # the ReLU has no parameters
    with pytest.raises(ValueError, match="nothing recorded"):
        GradientMonitor(every=3).plot()
    assert plt.get_fignums() == []


def test_missing_matplotlib_says_how_to_install(history: History,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    for draw in (history.plot, history.diagnostics.plot):
        with pytest.raises(ImportError, match="pip install matplotlib"):
            draw()


def test_the_guide_page_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/plots.md's code blocks, in order, in one namespace: the figures are saved, and
    the deep sigmoid stack's lines fan out as the page says (first layer far below the last)."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "plots.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    ns: dict[str, Any] = {}
    for code in blocks:
        exec(compile(code, "docs/plots.md", "exec"), ns)
    assert (tmp_path / "history.png").stat().st_size > 0
    assert (tmp_path / "gradients.png").stat().st_size > 0
    names, norms = ns["monitor"].layer_grad_norm_series()
    assert names[0] == "0" and names[-1] == "24"
    assert np.all(norms[:, 0] < 1e-3 * norms[:, -1])  # vanishing: decades apart
    (a,) = ns["fig"].get_axes()
    assert list(_lines(a)) == ["0", "2"]
