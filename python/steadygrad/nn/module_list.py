"""ModuleList: torch.nn.ModuleList on the editing rules of nn/container.py's _ModuleSequence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from steadygrad.nn.container import _ModuleSequence
from steadygrad.nn.module import Module


class ModuleList(_ModuleSequence):
    """Holds modules in a list (torch.nn.ModuleList): registers them (their parameters are the
    owner's, state_dict keys '0.weight', ...) but has no forward; a module's forward calls them,
    e.g. `for layer in self.layers: x = layer(x)`, and that chain of calls needs no backward.
    Indexing, slicing (a ModuleList), append/extend/insert/pop, item assignment, del, + and +=
    behave as torch's."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError('Module [ModuleList] is missing the required "forward" function')

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def __repr__(self) -> str:
        """torch's: runs of equal reprs compressed to '(2-4): 3 x Linear(...)'."""
        reprs = [repr(m) for m in self]
        if not reprs:
            return "ModuleList()"
        runs: list[list[Any]] = []  # [start, end, repr]
        for i, r in enumerate(reprs):
            if runs and runs[-1][2] == r:
                runs[-1][1] = i
            else:
                runs.append([i, i, r])
        lines = []
        for a, b, r in runs:
            head = f"({a}): " if a == b else f"({a}-{b}): {b - a + 1} x "
            lines.append("  " + (head + r).replace("\n", "\n  "))
        return "ModuleList(\n" + "\n".join(lines) + "\n)"
