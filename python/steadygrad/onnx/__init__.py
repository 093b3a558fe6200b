"""ONNX export: `steadygrad.onnx.export(model, path, example_input)` writes the model's eval
forward as an ONNX file that onnxruntime (or any ONNX runtime) can run.

Importing this module needs nothing but steadygrad (of which it imports `nn` and `_core`
only); `export` needs the `onnx` package (`pip install steadygrad[onnx]`). The graph is built from the model's structure, not by tracing
a forward: each built-in layer has its ONNX form (steadygrad/onnx/_layers.py, _conv.py), the
containers (Sequential, Residual) are walked, and the shapes come from the example input
through each layer's own `output_shape`. The model is not run and not changed. docs/onnx.md has
the guide: what is exported, how, and what is not supported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steadygrad._core import __version__
from steadygrad.nn.module import Module
from steadygrad.onnx import _conv, _layers  # noqa: F401  (they register the layers' emitters)
from steadygrad.onnx._graph import Graph, Value
from steadygrad.onnx._tree import At, emit_module

if TYPE_CHECKING:
    from onnx import ModelProto

__all__ = ["export"]

MIN_OPSET = 17  # LayerNormalization's first opset

_INPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64))


def export(model: Module, path: str | os.PathLike[str], example_input: np.ndarray, *,
           opset: int = 17, dynamic_batch: bool = True) -> None:
    """Write `model`'s eval-mode forward to the ONNX file `path`.

    The model is a Sequential (nested Sequentials and Residual blocks included) of the
    built-in layers of steadygrad.nn, or one such layer. What is written is what
    `model.eval()(x)` computes: Dropout is the identity, BatchNorm uses its running statistics.
    The graph's input is named "input" and its output "output"; the initializers are the
    model's parameters and buffers under their state_dict keys ("0.weight",
    "3.running_mean"; BatchNorm's num_batches_tracked, which eval does not read, is left out).

    Args:
        model: The model; it is not run and not changed (its mode, parameters and buffers stay
            as they are).
        path: The file to write. It is written whole or not at all: an error leaves no file
            (and an existing one as it was).
        example_input: An input of the shape and dtype the model takes, batch first: float32,
            or int32/int64 indices for a model that starts with an Embedding. Only its shape and
            dtype are used.
        opset: The ONNX opset to target, at least 17 (LayerNormalization's) and at most the
            installed onnx package's newest.
        dynamic_batch: Whether the file takes any batch size (dim 0 named "batch") rather than
            only the example's.

    Raises:
        ImportError: The onnx package is not installed.
        TypeError: A module has no ONNX form (a custom Module subclass, a loss, a ModuleList):
            the message names its class and its path in the model, e.g. "model[2] (MyLayer)";
            or an argument has the wrong type.
        ValueError: The example input does not fit the model (the layer is named), or the
            opset is out of range.
    """
    try:
        import onnx
    except ImportError as e:
        raise ImportError("steadygrad.onnx.export needs the onnx package: "
                          "pip install steadygrad[onnx] (or pip install onnx)") from e
    proto = _build(onnx, model, example_input, _opset(opset, onnx.defs.onnx_opset_version()),
                   dynamic_batch)
    onnx.checker.check_model(proto, full_check=True)
    # written beside the target, then renamed over it: the file is whole or not there
    path = Path(os.fspath(path))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save_model(proto, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _opset(opset: object, newest: int) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"export: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset must be in [{MIN_OPSET}, {newest}] (the installed onnx "
                         f"package's newest), got {opset}")
    return int(opset)


def _build(onnx: Any, model: Module, example: Any, opset: int,
           dynamic_batch: bool) -> ModelProto:
    """The ModelProto of model's eval forward at the example's shape and dtype (`onnx`: the
    onnx package)."""
    helper = onnx.helper

    if not isinstance(model, Module):
        raise TypeError(f"export: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example, np.ndarray) or example.dtype not in _INPUT_DTYPES or example.ndim < 1:
        got = (f"{example.dtype} array of shape {example.shape}" if isinstance(example, np.ndarray)
               else type(example).__name__)
        raise TypeError("export: example_input must be a numpy array with a batch dimension, "
                        f"float32 (or int32/int64 indices for an Embedding), got {got}")
    if not isinstance(dynamic_batch, bool):
        raise TypeError(f"export: dynamic_batch must be a bool, got {dynamic_batch!r}")
    g = Graph(onnx, opset)
    x = Value("input", tuple(int(s) for s in example.shape), example.dtype)
    y = emit_module(g, model, x, At("model", ""))
    g.nodes.append(helper.make_node("Identity", [y.name], ["output"], name="output"))

    def dims(v: Value) -> list[int | str | None]:
        if not dynamic_batch:
            return list(v.shape)
        return ["batch" if v.batched else None, *v.shape[1:]]

    elem = helper.np_dtype_to_tensor_dtype
    graph = helper.make_graph(
        g.nodes, "steadygrad", [helper.make_tensor_value_info("input", elem(x.dtype), dims(x))],
        [helper.make_tensor_value_info("output", elem(y.dtype), dims(y))],
        initializer=list(g.initializers.values()))
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="steadygrad",
                             producer_version=__version__,
                             ir_version=helper.find_min_ir_version_for(opsets))

