"""What `sg.fit` returns: per-epoch metrics (History) and the loop position needed to resume
exactly (FitState). Both are plain data, JSON-serialisable, so a checkpoint can carry them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from steadygrad.training.plotting import plot_history


class History:
    """Per-epoch logs of a fit: `history["loss"]` is a list with one float per epoch.

    Keys: loss, the metrics (accuracy for integer targets unless fit's metrics= says
    otherwise), val_loss and val_<metric> (with validation data), lr
    (the learning rate at the epoch's first step; a per-step scheduler changes it every batch),
    grad_norm / grad_norm_max (mean and max pre-clip global norm over the epoch's steps),
    skipped_steps (non-finite steps the optimizer skipped in the epoch), dropped_samples (only
    when fit drops a final batch: samples per epoch not trained on), samples_per_s (trained
    samples only), plus whatever callbacks log. `epoch` lists epoch indices. loss and accuracy
    are means over the samples actually trained on.
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.fit_state: dict[str, Any] | None = None
        self.diagnostics: Any = None  # the GradientMonitor when fit(..., diagnostics=k)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Add one epoch's row (fit does). A key missing from a row reads NaN there, so every
        column stays as long as `epoch`."""
        n = len(self.epoch)
        self.epoch.append(int(epoch))
        for key, value in logs.items():
            # A key first seen late (e.g. a callback starts logging) is padded with NaN so that
            # every column stays aligned with `epoch`.
            col = self.history.setdefault(key, [math.nan] * n)
            col.append(float(value))
        for col in self.history.values():
            if len(col) < n + 1:
                col.append(math.nan)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def keys(self) -> list[str]:
        """The logged names, in the order they first appeared."""
        return list(self.history)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every column as a float64 array, and `epoch` as an int64 one."""
        out = {k: np.asarray(v, dtype=np.float64) for k, v in self.history.items()}
        out["epoch"] = np.asarray(self.epoch, dtype=np.int64)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The epochs and columns as plain lists (JSON-serialisable; checkpoints carry it)."""
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the rows with those of a state_dict()."""
        self.epoch = [int(e) for e in state["epoch"]]
        self.history = {k: [float(x) for x in v] for k, v in state["history"].items()}

    def plot(self, keys: str | Sequence[str] | None = None, ax: Any = None, *,
             figsize: tuple[float, float] | None = None, **line_kwargs: Any) -> Any:
        """Draws the curves and returns the matplotlib Figure (matplotlib is optional:
        without it this raises ImportError saying `pip install matplotlib`).

        One panel per quantity, all over one shared x axis of epochs (`self.epoch`: History
        has one row per epoch; per-step gradient norms are `GradientMonitor.plot`'s): each
        metric with its val_ counterpart on the same axes (loss first), then the learning
        rate (log scale when it spans 10x or more), then grad_norm and grad_norm_max (log
        scale). Each line is labelled with its key; a value missing for an epoch (NaN) is a
        gap. `keys` chooses panels by any series in them ("loss" or "val_loss": the loss
        panel; "grad_norm_max": the gradient-norm panel); skipped_steps, dropped_samples and
        samples_per_s are drawn only when named. A key not in the history raises KeyError
        naming it, an empty history ValueError. `ax`: draw on these Axes instead of a new
        figure (one per panel). Other keyword arguments go to every `Axes.plot` call.
        """
        return plot_history(self, keys, ax, figsize, line_kwargs)

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        return f"History(epochs={len(self.epoch)}, last: {shown})"


class FitState:
    """Where a fit is: the epoch and batch to run next, the global step, the shuffle seed and
    the shuffle generator's state *at the start of the current epoch* (so the epoch's
    permutation can be drawn again on resume), counters and the history so far."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self.skipped_steps = 0
        self.epoch_rng_state: Mapping[str, Any] = self.rng.bit_generator.state
        self.history = History()
        self.callbacks: dict[str, Any] = {}
        self.acc: dict[str, float] = {}  # running sums of the current epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batch": self.batch,
            "global_step": self.global_step,
            "skipped_steps": self.skipped_steps,
            "epoch_rng_state": _jsonable_rng_state(self.epoch_rng_state),
            "history": self.history.state_dict(),
            "callbacks": self.callbacks,
            "acc": dict(self.acc),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FitState:
        missing = {"seed", "epoch", "batch", "global_step", "epoch_rng_state", "history"} - set(state)
        if missing:
            raise ValueError(f"fit: resume state is missing {sorted(missing)}")
        fs = cls(int(state["seed"]))
        fs.epoch = int(state["epoch"])
        fs.batch = int(state["batch"])
        fs.global_step = int(state["global_step"])
        fs.skipped_steps = int(state.get("skipped_steps", 0))
        fs.epoch_rng_state = state["epoch_rng_state"]
        fs.rng.bit_generator.state = fs.epoch_rng_state
        fs.history.load_state_dict(state["history"])
        fs.callbacks = dict(state.get("callbacks", {}))
        fs.acc = dict(state.get("acc", {}))
        if "correct" in fs.acc:  # saved before metrics had a registry: its accuracy sum
            fs.acc["metric:accuracy"] = fs.acc.pop("correct")
        return fs


def _jsonable_rng_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """numpy bit-generator states are dicts of ints/strs (PCG64's are 128-bit ints, which JSON
    holds exactly); arrays (MT19937) become lists."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out[k] = _jsonable_rng_state(v)
        elif isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out
