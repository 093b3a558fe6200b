"""A module tree's traversal (named_modules, parameters, buffers, children) and its torch-style
repr: what reads `_modules`, `_parameters` and `_buffers` without calling anything. Kept apart
from Module's call machinery (module.py), which inherits it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from steadygrad.nn.module import Module
    from steadygrad.nn.parameter import Parameter


class ModuleTree:
    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, np.ndarray | None]
    _modules: OrderedDict[str, Module]

    # -- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self  # type: ignore[misc]  # ModuleTree is only ever a Module's base
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def children(self) -> list[Module]:
        return list(self._modules.values())

    def named_children(self) -> list[tuple[str, Module]]:
        return list(self._modules.items())

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        out: list[tuple[str, Parameter]] = []
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    out.append((f"{mname}.{pname}" if mname else pname, p))
        return out

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        return [(f"{mname}.{bname}" if mname else bname, b)
                for mname, m in self.named_modules(prefix)
                for bname, b in m._buffers.items() if b is not None]

    def buffers(self) -> list[np.ndarray]:
        return [b for _, b in self.named_buffers()]


    # -- description -------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)
