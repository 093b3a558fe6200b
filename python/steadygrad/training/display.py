"""What sg.fit prints as it trains: verbose=1 draws a per-epoch bar (steadygrad.progress's:
tqdm when installed) with loss, the metrics and samples/s; verbose=2 prints one line per epoch;
verbose=0 prints nothing. Output goes to stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from steadygrad.callbacks import Callback
from steadygrad.progress import Bar, open_bar


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


class ProgressBar(Callback):
    def __init__(self, verbose: int, epochs: int, steps_per_epoch: int, file: TextIO | None = None,
                 use_tqdm: bool = True) -> None:
        self.verbose = verbose
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.file = file if file is not None else sys.stderr
        self.use_tqdm = use_tqdm
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
        shown = self.loop.running_logs()  # loss and the metrics
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
