"""`History.plot`: a fit's per-epoch curves, one panel per quantity over one shared epoch axis.

History holds one row per epoch (fit logs nothing per step into it; per-step gradient norms
are GradientMonitor's, with its own `plot`), so the x axis is the epoch index. Panels, top to
bottom: each metric (loss first) with its val_ counterpart, the learning rate, the gradient
norm (grad_norm, the mean pre-clip global norm, and grad_norm_max); fit's bookkeeping columns
(skipped_steps, dropped_samples, samples_per_s) only when asked for by `keys`."""

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
    x = np.asarray(history.epoch, dtype=np.int64)
    for a, (panel, series) in zip(axes, chosen.items(), strict=True):
        for key in series:
            a.plot(x, np.asarray(history[key], dtype=np.float64), label=key, **line_kwargs)
        a.set_title(TITLES.get(panel, panel))
        a.set_ylabel(panel)
        if _log_scale(panel, np.asarray([v for k in series for v in history[k]])):
            a.set_yscale("log")
        a.legend(fontsize="small")
        a.grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator  # loaded with the axes: epochs are whole

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
