"""`History.plot`: a fit's curves, one panel per quantity over one shared axis of optimizer steps.

History holds one row per epoch and one entry per step (`History.steps`): each batch's loss and
metrics, the step's learning rate and pre-clip gradient norm. Per-step values are thin lines;
epoch rows are markers at the step where their epoch ended (`History.epoch_step`). Panels, top
to bottom: each metric (loss first) with its val_ counterpart, the learning rate, the gradient
norm (grad_norm: the epoch's mean pre-clip global norm, grad_norm_max, and every step's);
fit's bookkeeping columns (skipped_steps, dropped_samples, samples_per_s) only when asked for by
`keys`. A history without steps is drawn over epochs. Per-layer norms are GradientMonitor's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad import _plot

if TYPE_CHECKING:
    from steadygrad.training.history import History

BOOKKEEPING = ("skipped_steps", "dropped_samples", "samples_per_s")
GRAD_KEYS = ("grad_norm", "grad_norm_max")
TITLES = {"lr": "learning rate", "grad_norm": "gradient norm (global, before clipping)"}


def panel_of(key: str) -> str:
    """The panel a series is drawn in: val_<name> with <name>, grad_norm_max with grad_norm."""
    if key in GRAD_KEYS:
        return "grad_norm"
    return key[4:] if key.startswith("val_") and len(key) > 4 else key


def _order(panel: str) -> int:
    """Metrics first (in the history's order), then lr, the gradient norm, the bookkeeping."""
    if panel in BOOKKEEPING:
        return 3
    return {"lr": 1, "grad_norm": 2}.get(panel, 0)


def chosen_panels(history: History, keys: str | Sequence[str] | None) -> dict[str, list[str]]:
    """panel -> its series (history keys, in history order), for `keys` (None: every series
    but the bookkeeping ones; else the panels holding the named series)."""
    names = history.keys()
    if keys is None:
        wanted = {panel_of(k) for k in names if panel_of(k) not in BOOKKEEPING}
    else:
        asked = [keys] if isinstance(keys, str) else list(keys)
        for k in asked:
            if not isinstance(k, str) or k not in history:
                raise KeyError(f"History.plot: keys: no series {k!r} in this history "
                               f"(it has {', '.join(names)})")
        wanted = {panel_of(k) for k in asked}
    out: dict[str, list[str]] = {}
    for k in names:
        if panel_of(k) in wanted:
            out.setdefault(panel_of(k), []).append(k)
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _log_scale(panel: str, values: np.ndarray) -> bool:
    """Gradient norms span decades: always log. The learning rate: log when it spans 10x."""
    pos = values[np.isfinite(values) & (values > 0)]
    if pos.size == 0:
        return False
    return panel == "grad_norm" or (panel == "lr" and float(pos.max()) >= 10.0 * float(pos.min()))


def _by_step(history: History) -> bool:
    """Whether the epoch rows have step positions and there are steps to draw."""
    return bool(history.steps.get("step")) and len(history.epoch_step) == len(history.epoch)


def _step_series(history: History, panel: str, series: list[str]) -> list[str]:
    """The per-step columns drawn in a panel: those of its epoch series' names (the lr and
    grad_norm panels: the step's own lr and norm; grad_norm_max has no per-step column)."""
    return [k for k in series if k in history.steps and k != "step"]


def plot_history(history: History, keys: str | Sequence[str] | None, ax: Any,
                 figsize: tuple[float, float] | None, line_kwargs: dict[str, Any]) -> Any:
    """The figure of History.plot (see there)."""
    if len(history) == 0:
        raise ValueError("History.plot: the history is empty (no epoch has ended yet)")
    chosen = chosen_panels(history, keys)
    if not chosen:
        raise ValueError("History.plot: nothing to plot (the history holds only "
                         f"{', '.join(history.keys()) or 'no series'}; pass keys= to choose)")
    fig, axes = _plot.panels("History.plot", len(chosen), ax, figsize)
    by_step = _by_step(history)
    x = np.asarray(history.epoch_step if by_step else history.epoch, dtype=np.int64)
    steps = history.step_arrays() if by_step else {}
    for a, (panel, series) in zip(axes, chosen.items(), strict=True):
        drawn: list[float] = []
        for key in _step_series(history, panel, series) if by_step else []:
            y = steps[key]
            a.plot(steps["step"] + 1, y, **{"label": f"{key} (step)", "linewidth": 0.8,
                                            "alpha": 0.5, **line_kwargs})
            drawn.extend(y.tolist())
        for key in series:
            if by_step and key == "lr" and "lr" in steps:
                continue  # the epoch's lr is its first step's: the step line already has it
            y = np.asarray(history[key], dtype=np.float64)
            a.plot(x, y, **{"label": key, "marker": "o" if by_step else None, **line_kwargs})
            drawn.extend(y.tolist())
        a.set_title(TITLES.get(panel, panel))
        a.set_ylabel(panel)
        if _log_scale(panel, np.asarray(drawn)):
            a.set_yscale("log")
        a.legend(fontsize="small")
        a.grid(True, alpha=0.3)
    axes[-1].set_xlabel("optimizer step" if by_step else "epoch")
    from matplotlib.ticker import MaxNLocator  # loaded with the axes: steps and epochs are whole

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
