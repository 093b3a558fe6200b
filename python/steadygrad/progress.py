"""The package's one progress bar: `open_bar` gives tqdm when it is installed, else a
SimpleBar drawn in place with a carriage return. sg.fit's display (steadygrad.training.display)
and steadygrad-bench both draw with it. Output goes where the caller says (stderr, as tqdm's).
It imports nothing of steadygrad."""

from __future__ import annotations

import importlib
import math
import time
from typing import Any, Protocol, TextIO

_tqdm: Any  # optional and untyped: imported by name
try:
    _tqdm = importlib.import_module("tqdm").tqdm
except ImportError:  # pragma: no cover - exercised where tqdm is absent
    _tqdm = None


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
