"""What `sg.fit` returns: per-epoch metrics and per-step curves (History) and the loop position
needed to resume exactly (FitState). Both are plain data, JSON-serialisable, so a checkpoint
can carry them."""

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

    Per step: `steps` holds one entry per optimizer step in columns "step" (the global step
    index), "loss" and each metric of that batch, "lr" (the learning rate the step used) and
    "grad_norm" (its pre-clip global norm; NaN when the optimizer computed none);
    `epoch_step[i]` is the number of steps taken when epoch `epoch[i]` ended, so epoch rows
    and steps share one axis (History.plot draws both over it).
    """

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.epoch_step: list[int] = []
        self.history: dict[str, list[float]] = {}
        self.steps: dict[str, list[float]] = {}
        self.fit_state: dict[str, Any] | None = None
        self.diagnostics: Any = None  # the GradientMonitor when fit(..., diagnostics=k)

    def append(self, epoch: int, logs: dict[str, float], step: int | None = None) -> None:
        """Add one epoch's row (fit does), ended after `step` optimizer steps in all (default:
        the steps recorded so far). A key missing from a row reads NaN there, so every column
        stays as long as `epoch`."""
        self.epoch_step.append(len(self.steps.get("step", ())) if step is None else int(step))
        _append_row(self.history, len(self.epoch), logs)
        self.epoch.append(int(epoch))

    def record_step(self, logs: dict[str, float]) -> None:
        """Add one optimizer step's entry (fit does, after each step): logs has "step" and the
        step's values (see the class docstring)."""
        steps = self.steps
        if logs.keys() == steps.keys():  # the usual step: the same values as the last one
            for key, value in logs.items():
                steps[key].append(float(value))
            return
        _append_row(steps, len(steps.get("step", ())), logs)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def keys(self) -> list[str]:
        """The logged names, in the order they first appeared."""
        return list(self.history)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every column as a float64 array, and `epoch` and `epoch_step` as int64 ones."""
        out = {k: np.asarray(v, dtype=np.float64) for k, v in self.history.items()}
        out["epoch"] = np.asarray(self.epoch, dtype=np.int64)
        out["epoch_step"] = np.asarray(self.epoch_step, dtype=np.int64)
        return out

    def step_arrays(self) -> dict[str, np.ndarray]:
        """The per-step columns as float64 arrays ("step" as int64)."""
        out = {k: np.asarray(v, dtype=np.float64) for k, v in self.steps.items()}
        if "step" in out:
            out["step"] = out["step"].astype(np.int64)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The epochs, columns and steps as plain lists (JSON-serialisable; checkpoints carry
        it)."""
        return {"epoch": list(self.epoch), "epoch_step": list(self.epoch_step),
                "history": {k: list(v) for k, v in self.history.items()},
                "steps": {k: list(v) for k, v in self.steps.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the rows with those of a state_dict() (one saved before per-step curves
        existed has no steps: its epoch rows then have no step position)."""
        self.epoch = [int(e) for e in state["epoch"]]
        self.history = {k: [float(x) for x in v] for k, v in state["history"].items()}
        self.steps = {k: [float(x) for x in v] for k, v in state.get("steps", {}).items()}
        self.epoch_step = [int(e) for e in state.get("epoch_step", ())]

    def plot(self, keys: str | Sequence[str] | None = None, ax: Any = None, *,
             figsize: tuple[float, float] | None = None, **line_kwargs: Any) -> Any:
        """Draws the curves and returns the matplotlib Figure (matplotlib is optional:
        without it this raises ImportError saying `pip install matplotlib`).

        One panel per quantity, all over one shared x axis of optimizer steps: each metric
        with its val_ counterpart on the same axes (loss first), then the learning rate (log
        scale when it spans 10x or more), then the gradient norm (log scale). Per-step values
        (`steps`: each batch's loss and metrics, the lr and pre-clip norm of every step) are
        thin lines labelled "<key> (step)"; epoch rows are markers at the step where their
        epoch ended, labelled with their key (loss, val_loss, grad_norm: the epoch's mean,
        grad_norm_max, ...). A history without steps (loaded from a checkpoint written
        before they were recorded, or built by hand) is drawn over epochs instead. A value
        missing for an epoch (NaN) is a gap. Per-layer gradient norms are
        `GradientMonitor.plot`'s. `keys` chooses panels by any series in them ("loss" or
        "val_loss": the loss panel; "grad_norm_max": the gradient-norm panel); skipped_steps, dropped_samples and
        samples_per_s are drawn only when named. A key not in the history raises KeyError
        naming it, an empty history ValueError. `ax`: draw on these Axes instead of a new
        figure (one per panel). Other keyword arguments go to every `Axes.plot` call and win
        over its defaults (label, marker, linewidth, alpha).
        """
        return plot_history(self, keys, ax, figsize, line_kwargs)

    def __len__(self) -> int:
        return len(self.epoch)

    def __repr__(self) -> str:
        last = {k: v[-1] for k, v in self.history.items() if v}
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        return f"History(epochs={len(self.epoch)}, last: {shown})"


def _append_row(columns: dict[str, list[float]], n: int, logs: dict[str, float]) -> None:
    """Append one row of `logs` to columns that hold `n` rows. A key first seen late (e.g. a
    callback starts logging) is padded with NaN before, a key missing from the row gets NaN,
    so every column stays n + 1 long."""
    for key, value in logs.items():
        columns.setdefault(key, [math.nan] * n).append(float(value))
    for col in columns.values():
        if len(col) < n + 1:
            col.append(math.nan)


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
