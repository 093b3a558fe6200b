"""The walk over a model: each module's emitter found by its exact class (a subclass may change
what forward computes, so it is not taken for its base), the containers (Sequential, Residual)
recursed into, shapes carried from the example input through each layer's own output_shape,
and every error located by the module's path in the model ("model[2].module[0] (Conv2d)")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from steadygrad.nn.container import Sequential
from steadygrad.nn.module import Module
from steadygrad.nn.residual import Residual
from steadygrad.onnx._graph import Graph, Value


@dataclass(frozen=True)
class At:
    """Where a module sits: its path for messages and its state_dict key prefix."""

    path: str
    prefix: str

    def child(self, key: str) -> At:
        """Where the child under `key` sits ("model[2]" for a number, "model.fc" else)."""
        path = f"{self.path}[{key}]" if key.isdigit() else f"{self.path}.{key}"
        return At(path, f"{self.prefix}{key}.")

    def key(self, name: str) -> str:
        """The state_dict key of this module's parameter or buffer `name`."""
        return self.prefix + name

    def where(self, m: Module) -> str:
        """The path and the module's class, as messages name a module: "model[2] (Linear)"."""
        return f"{self.path} ({type(m).__name__})"


# A leaf's emitter: (graph, module, input, the module's output shape, where) -> output
Emitter = Callable[[Graph, Any, Value, tuple[int, ...], At], Value]
_EMITTERS: dict[type, Emitter] = {}
F = TypeVar("F", bound=Emitter)


def emits(*classes: type) -> Callable[[F], F]:
    """Register the decorated function as the emitter of exactly these classes."""
    def register(fn: F) -> F:
        for cls in classes:
            _EMITTERS[cls] = fn
        return fn
    return register


def emit_module(g: Graph, m: Module, x: Value, at: At) -> Value:
    """Add module m applied to x to the graph; its output."""
    cls = type(m)
    if isinstance(m, Sequential) and cls is Sequential:
        for key, child in m._modules.items():
            x = emit_module(g, child, x, at.child(key))
        return x
    if isinstance(m, Residual) and cls is Residual:
        return _residual(g, m, x, at)
    fn = _EMITTERS.get(cls)
    if fn is None:
        raise TypeError(
            f"{at.where(m)} has no ONNX export: steadygrad.onnx.export supports Sequential and "
            f"Residual containers of the built-in layers (steadygrad.nn), not "
            f"{cls.__module__}.{cls.__qualname__}")
    integer = bool(getattr(m, "integer_input", False))
    if integer != np.issubdtype(x.dtype, np.integer):
        want = "integer indices (int32 or int64)" if integer else "float32"
        raise TypeError(f"{at.where(m)} takes {want} input, got {x.dtype} (the example input's "
                        "dtype must suit the model's first layer)")
    rank = getattr(m, "_batched_rank", None)
    if rank is not None and len(x.shape) != rank:
        raise ValueError(f"{at.where(m)}: the export needs a batched input of rank {rank} "
                         f"(N first), got shape {x.shape}")
    try:
        out = m.output_shape(x.shape)
    except (ValueError, IndexError) as e:
        raise ValueError(f"{at.where(m)}: {e}") from None
    assert out is not None  # every built-in leaf knows its output shape
    return fn(g, m, x, tuple(out), at)


def _residual(g: Graph, m: Residual, x: Value, at: At) -> Value:
    """y = shortcut(x) + module(x), the shortcut the identity when None."""
    fx = emit_module(g, m.module, x, at.child("module"))
    sx = x if m.shortcut is None else emit_module(g, m.shortcut, x, at.child("shortcut"))
    if fx.shape != sx.shape:
        raise ValueError(f"{at.where(m)}: {m._mismatch(x.shape, fx.shape, sx.shape)}")
    return fx.to(g.node("Add", [sx.name, fx.name], "residual"))
