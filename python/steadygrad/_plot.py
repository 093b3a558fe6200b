"""What `History.plot` and `GradientMonitor.plot` share: matplotlib imported only when a figure
is asked for (it is an optional dependency), and the panels a figure is drawn on (new ones, or
the caller's axes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pyplot(who: str) -> Any:
    """matplotlib.pyplot, or an ImportError saying that `who` needs it and how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"{who} needs matplotlib, which is not installed: "
                          "pip install matplotlib") from exc
    return plt


def panels(who: str, n: int, ax: Any, figsize: tuple[float, float] | None) -> tuple[Any, list[Any]]:
    """(figure, n axes): the caller's `ax` (one Axes when n == 1, else a sequence of n Axes on
    one figure), or a new figure of n panels stacked over one shared x axis."""
    if ax is None:
        plt = pyplot(who)
        fig, axes = plt.subplots(n, 1, sharex=True, squeeze=False, layout="constrained",
                                 figsize=figsize or (7.0, 2.4 * n + 0.8))
        return fig, list(axes[:, 0])
    if hasattr(ax, "flat"):  # a numpy array of Axes, as plt.subplots returns
        ax = list(ax.flat)
    given = list(ax) if isinstance(ax, Sequence) else [ax]
    if len(given) != n:
        raise ValueError(f"{who}: ax must be {'one Axes' if n == 1 else f'{n} Axes'} (one per "
                         f"panel), got {len(given)}")
    fig = given[0].figure
    if any(a.figure is not fig for a in given):
        raise ValueError(f"{who}: the Axes in ax must belong to one figure")
    return fig, given
