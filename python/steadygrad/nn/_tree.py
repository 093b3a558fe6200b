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
    """The traversal every Module has, with torch's names and orders."""

    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, np.ndarray | None]
    _modules: OrderedDict[str, Module]

    # -- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(name, module) for this module ('' or `prefix`) and every descendant, depth first,
        named by their dotted path ('3.module.0')."""
        yield prefix, self  # type: ignore[misc]  # ModuleTree is only ever a Module's base
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> list[Module]:
        """This module and every descendant, depth first."""
        return [m for _, m in self.named_modules()]

    def children(self) -> list[Module]:
        """The direct child modules, in registration order."""
        return list(self._modules.values())

    def named_children(self) -> list[tuple[str, Module]]:
        """(name, child) for each direct child, in registration order."""
        return list(self._modules.items())

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """(state_dict key, Parameter) for every parameter of the tree, a shared one once."""
        out: list[tuple[str, Parameter]] = []
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    out.append((f"{mname}.{pname}" if mname else pname, p))
        return out

    def parameters(self) -> list[Parameter]:
        """Every Parameter of the tree, a shared one once (what an optimizer is given)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """(state_dict key, array) for every registered buffer that is not None."""
        return [(f"{mname}.{bname}" if mname else bname, b)
                for mname, m in self.named_modules(prefix)
                for bname, b in m._buffers.items() if b is not None]

    def buffers(self) -> list[np.ndarray]:
        """Every registered buffer that is not None (BatchNorm's running statistics)."""
        return [b for _, b in self.named_buffers()]


    # -- description -------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The layer's arguments inside its repr, `Linear(...)`; a layer overrides it."""
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
