"""Progress display for `sg.fit`: verbose=1 draws a per-epoch bar (tqdm when installed, a plain
carriage-return bar otherwise) with loss, accuracy and samples/s; verbose=2 prints one line per
epoch; verbose=0 prints nothing. Output goes to stderr, as tqdm's does. `open_bar` is also the
bar of steadygrad-bench."""

from __future__ import annotations

import importlib
import math
import sys
import time
from typing import Any, Protocol, TextIO

from steadygrad.callbacks import Callback

_tqdm: Any  # optional and untyped: imported by name
try:
    _tqdm = importlib.import_module("tqdm").tqdm
except ImportError:  # pragma: no cover - exercised where tqdm is absent
    _tqdm = None


def format_logs(logs: dict[str, float]) -> str:
    parts = []
    for k, v in logs.items():
        if k in ("size", "grad_norm_max") or (k in ("skipped_steps", "dropped_samples") and not v):
            continue
        if k == "skipped_steps":
            parts.append(f"skipped {int(v)}")
        elif k == "dropped_samples":
            parts.append(f"dropped {int(v)} sample{'s' * (v != 1)}")
        elif k == "lr":
            parts.append(f"{k} {v:.3g}")
        elif k == "samples_per_s":
            parts.append(f"{v:,.0f} samples/s")
        else:
            parts.append(f"{k} {v:.4f}")
    return " - ".join(parts)


class Bar(Protocol):
    """What `open_bar` returns: tqdm's calls, the subset every caller uses."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...

    def close(self) -> None: ...


class SimpleBar:
    """A 30-character bar on one line, for when tqdm is absent; `update` redraws at most ~10
    times a second. leave=False wipes the line on close (tqdm's meaning)."""

    def __init__(self, total: int, desc: str, file: TextIO, leave: bool = True,
                 initial: int = 0) -> None:
        self.total, self.desc, self.file, self.leave = total, desc, file, leave
        self.n = initial
        self.postfix = ""
        self._last = -math.inf
        self._width = 0

    def update(self, n: int = 1) -> None:
        self.n = min(self.n + n, self.total)
        now = time.perf_counter()
        if now - self._last > 0.1 or self.n >= self.total:
            self._last = now
            self._draw()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        if refresh:
            self._draw()

    def _draw(self) -> None:
        filled = int(30 * self.n / max(self.total, 1))
        bar = "#" * filled + "." * (30 - filled)
        line = f"{self.desc} [{bar}] {self.n}/{self.total} {self.postfix}"
        # pad over what a longer previous line left
        self.file.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.file.flush()

    def close(self) -> None:
        if self.leave:
            self._draw()
            self.file.write("\n")
        else:
            self.file.write("\r" + " " * self._width + "\r")
        self.file.flush()


def open_bar(total: int, desc: str, file: TextIO, *, leave: bool = True, initial: int = 0,
             use_tqdm: bool = True) -> Bar:
    """tqdm when it is installed (and wanted), else a SimpleBar; the one bar of the package
    (sg.fit's epochs and steadygrad-bench's suites)."""
    if use_tqdm and _tqdm is not None:
        bar: Bar = _tqdm(total=total, initial=initial, desc=desc, file=file, leave=leave,
                         dynamic_ncols=True)
        return bar
    return SimpleBar(total, desc, file, leave=leave, initial=initial)


class ProgressBar(Callback):
    def __init__(self, verbose: int, epochs: int, steps_per_epoch: int, file: TextIO | None = None,
                 use_tqdm: bool = True) -> None:
        self.verbose = verbose
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.file = file if file is not None else sys.stderr
        self.use_tqdm = use_tqdm and _tqdm is not None
        self.bar: Bar | None = None
        self._t0 = 0.0
        self._seen = 0

    def on_epoch_begin(self, epoch: int) -> None:
        self._t0 = time.perf_counter()
        self._seen = 0
        if self.verbose != 1:
            return
        desc = f"Epoch {epoch + 1}/{self.epochs}"
        done = self.loop.state.batch
        self.bar = open_bar(self.steps, desc, self.file, initial=done, use_tqdm=self.use_tqdm)

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self._seen += int(logs.get("size", 0))
        if self.bar is None:
            return
        dt = max(time.perf_counter() - self._t0, 1e-9)
        shown = {k: v for k, v in self.loop.running_logs().items() if k in ("loss", "accuracy")}
        shown["samples_per_s"] = self._seen / dt
        self.bar.set_postfix_str(format_logs(shown), refresh=False)
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.close()
            self.bar = None
        elif self.verbose >= 2:
            self.file.write(f"Epoch {epoch + 1}/{self.epochs} - {format_logs(logs)}\n")
            self.file.flush()

    def on_train_end(self, logs: dict[str, float]) -> None:
        if self.bar is not None:  # stopped mid-epoch
            self.bar.close()
            self.bar = None
