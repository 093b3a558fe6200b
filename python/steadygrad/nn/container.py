"""Containers: Sequential and Residual. Building one moves every parameter of the tree into
one flat, 64-byte-aligned buffer (`model.flat_storage`), so an optimizer step, a norm or a
checkpoint is one pass over one array. Build the model before creating its optimizer.
A child's error is re-raised with its index and label: "Sequential[2] Linear(256 -> 10): ..."."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from steadygrad import _core
from steadygrad.nn import _calls
from steadygrad.nn._util import work_like
from steadygrad.nn.module import _NAMED_ERRORS, Module
from steadygrad.nn.plan import LayerPlan, plan_sequential


def check_used_once(container: Module) -> None:
    """Raise if one module object appears twice in the tree: its forward caches serve one
    backward, so a second use would silently take the first one's gradients."""
    seen: dict[int, str] = {}
    for name, m in container.named_modules():
        if id(m) in seen:
            raise ValueError(
                f"{type(container).__name__}: the module at '{name}' ({m.label()}) is the same "
                f"object as the one at '{seen[id(m)] or 'the top'}'; a module instance can be "
                "used once per model (its forward keeps the inputs its backward needs). Use a "
                "separate instance; to share weights, assign the same Parameter to both")
        seen[id(m)] = name


class Sequential(Module):
    """Runs its modules in order; backward runs them in reverse."""

    _is_container = True
    skips_grad_input = True  # its first child may leave dL/dx out

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} must be an nn.Module, got {type(m).__name__}")
            setattr(self, str(i), m)
        check_used_once(self)
        self._checked_shape: tuple[int, ...] | None = None
        # (structure generation it was made for, the plan)
        # (structure generation it was made for, the plan, its forward and backward kwargs)
        self._plan: tuple[int, tuple[LayerPlan, ...], list[dict[str, Any]],
                          list[dict[str, Any]]] = (-1, (), [], [])
        self._flatten_parameters()

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx: int) -> Module:
        return list(self._modules.values())[idx]

    def output_shape(self, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for key, m in self._modules.items():
            if shape is None:  # past a module of unknown output shape: nothing more to check
                return None
            shape = self._in_child(key, m, m.output_shape, shape)
        return shape

    def plan(self) -> tuple[LayerPlan, ...]:
        """Which child fuses an epilogue, which runs inside the one before it, which writes
        its dL/dx over its input (nn.plan): decided from what the children declare, once per
        structure. `print(*model.plan(), sep="\n")` shows it."""
        gen = _calls.structure_generation()
        if self._plan[0] != gen:
            plan = plan_sequential(list(self._modules.values()))
            object.__setattr__(self, "_plan", (gen, plan, [lp.forward_kwargs() for lp in plan],
                                               [lp.backward_kwargs() for lp in plan]))
        return self._plan[1]

    def forward(self, x: np.ndarray) -> np.ndarray:
        # Check the whole chain's shapes once per input shape, so a mismatch deep in the stack
        # is reported before any layer runs (no running statistics or RNG state touched).
        if isinstance(x, np.ndarray) and x.shape != self._checked_shape:
            self.output_shape(x.shape)
            self._checked_shape = x.shape
        self.plan()
        # _in_child's naming, inlined: this loop runs once per layer and step
        for kw, (key, m) in zip(self._plan[2], self._modules.items(), strict=True):
            try:
                x = m._run_forward(x, **kw)
            except _NAMED_ERRORS as e:
                raise self._located(key, m, e) from e
        return x

    def _backward(self, grad_output: np.ndarray, *, input_grad: bool = True) -> np.ndarray:
        g = grad_output
        items = list(self._modules.items())
        self.plan()
        bwd = self._plan[3]
        for i in range(len(items) - 1, -1, -1):
            key, m = items[i]
            try:
                g = m._run_backward(g, input_grad or i > 0, **bwd[i])
            except _NAMED_ERRORS as e:
                raise self._located(key, m, e) from e
        return g


class Residual(Module):
    """y = x + module(x); module must keep the shape. dL/dx = dL/dy + module.backward(dL/dy)."""

    _is_container = True

    def __init__(self, module: Module) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"Residual: module must be an nn.Module, got {type(module).__name__}")
        self.module = module
        check_used_once(self)
        self._flatten_parameters()

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        out = self._in_child("module", self.module, self.module.output_shape, shape)
        if out is None:
            return tuple(shape)  # unknown inside; forward checks the shapes match
        if tuple(out) != tuple(shape):
            raise ValueError(f"module maps shape {tuple(shape)} to {tuple(out)}; "
                             "y = x + module(x) needs them equal")
        return tuple(shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        fx = self._in_child("module", self.module, self.module._run_forward, x)
        if not isinstance(fx, np.ndarray) or fx.shape != getattr(x, "shape", None):
            raise ValueError(f"module maps shape {getattr(x, 'shape', None)} to "
                             f"{getattr(fx, 'shape', None)}; y = x + module(x) needs them equal")
        return _core.add(x, fx, out=work_like(self, "out", x.shape, x, fx))

    def _backward(self, grad_output: np.ndarray) -> np.ndarray:
        g = self._in_child("module", self.module, self.module._run_backward, grad_output)
        return _core.add(grad_output, g, out=work_like(self, "dx", g.shape, grad_output, g))

    def memory(self, shape: tuple[int, ...]) -> tuple[int, int]:
        n = 4 * int(np.prod(shape))
        return n, n
