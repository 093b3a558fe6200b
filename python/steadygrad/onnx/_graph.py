"""The ONNX graph under construction: its nodes, its initializers (the model's parameters and
buffers, named by their state_dict keys) and what a layer's emitter needs to add to it (fresh
value names, constants as Constant nodes so that the initializers are exactly the state_dict's
tensors, the opset-dependent form of a reduction). The onnx package is handed in by
steadygrad.onnx.export once it was found: importing this module does not need it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from onnx import NodeProto, TensorProto


@dataclass(frozen=True)
class Value:
    """A tensor of the graph: its name, its logical (channels-first) shape with the example's
    batch size at dim 0, its numpy dtype, and whether dim 0 is still the batch dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    batched: bool = True

    def to(self, name: str, shape: tuple[int, ...] | None = None) -> Value:
        """The value a shape-preserving (or `shape`-giving) float op makes of this one."""
        return Value(name, self.shape if shape is None else shape, np.dtype(np.float32),
                     self.batched)


class Graph:
    """Nodes in order, initializers by name, and a counter for fresh value names; `onnx` is
    the onnx package."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self._helper, self._numpy_helper = onnx.helper, onnx.numpy_helper
        self.opset = opset
        self.nodes: list[NodeProto] = []
        self.initializers: dict[str, TensorProto] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        """A value name used nowhere else ('/' cannot appear in a state_dict key)."""
        self._count += 1
        return f"/{hint}_{self._count}"

    def node(self, op: str, inputs: Sequence[str], hint: str = "", **attrs: Any) -> str:
        """Append one single-output node and return the name of its output ('' in `inputs`
        leaves an optional input out)."""
        out = self.fresh(hint or op.lower())
        self.nodes.append(self._helper.make_node(op, list(inputs), [out], name=out.lstrip("/"),
                                           **attrs))
        return out

    def param(self, key: str, array: np.ndarray) -> str:
        """The model's tensor under its state_dict key, as an initializer (a copy of it)."""
        if key not in self.initializers:
            self.initializers[key] = self._numpy_helper.from_array(np.asarray(array), key)
        return key

    def const(self, value: Any, dtype: type = np.float32, hint: str = "const") -> str:
        """A Constant node holding `value` (a scalar or an array) as `dtype`."""
        out = self.fresh(hint)
        tensor = self._numpy_helper.from_array(np.asarray(value, dtype), out.lstrip("/"))
        self.nodes.append(self._helper.make_node("Constant", [], [out], name=out.lstrip("/"),
                                           value=tensor))
        return out

    def reduce_mean(self, x: str, axes: Sequence[int]) -> str:
        """ReduceMean over `axes`, keeping them (an attribute before opset 18, an input from
        it)."""
        if self.opset < 18:
            return self.node("ReduceMean", [x], axes=list(axes), keepdims=1)
        return self.node("ReduceMean", [x, self.const(list(axes), np.int64, "axes")], keepdims=1)

    def pad(self, x: str, rank: int, before: Sequence[int], after: Sequence[int], mode: str,
            value: float | None = None) -> str:
        """Pad the trailing len(before) axes of a rank-`rank` tensor (ONNX's constant, reflect
        or edge mode; `value` for constant)."""
        lead = [0] * (rank - len(before))
        pads = self.const([*lead, *before, *lead, *after], np.int64, "pads")
        inputs = [x, pads] + ([] if value is None else [self.const(value)])
        return self.node("Pad", inputs, mode=mode)
