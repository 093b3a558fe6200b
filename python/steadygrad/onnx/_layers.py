"""ONNX forms of the dense, elementwise and normalisation layers, each computing what the
layer's eval forward computes: Linear, Identity, Dropout (the identity in eval), Flatten, the
activations (with their parameters: LeakyReLU's slope, ELU's alpha, GELU's approximate,
Softplus's beta and threshold), BatchNorm1d/2d on running statistics (or on the batch's when
the layer keeps none), LayerNorm, Embedding and Softmax/LogSoftmax. The convolution and
pooling layers are in _conv.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from steadygrad import nn
from steadygrad.onnx._graph import Graph, Value
from steadygrad.onnx._tree import At, emits


@emits(nn.Linear)
def _linear(g: Graph, m: nn.Linear, x: Value, out: tuple[int, ...], at: At) -> Value:
    inputs = [x.name, g.param(at.key("weight"), m.weight.data)]
    if m.bias is not None:
        inputs.append(g.param(at.key("bias"), m.bias.data))
    return x.to(g.node("Gemm", inputs, "linear", transB=1), out)


@emits(nn.Identity, nn.Dropout)
def _identity(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    return x.to(g.node("Identity", [x.name]))


@emits(nn.Flatten)
def _flatten(g: Graph, m: nn.Flatten, x: Value, out: tuple[int, ...], at: At) -> Value:
    # The target shape from the layer's own output shape; the batch dim, unless flattened
    # into the next ones, is copied from the input (Reshape's 0), so the file takes any batch.
    nd = len(x.shape)
    start, end = (d + nd if d < 0 else d for d in (m.start_dim, m.end_dim))
    merges_batch = start == 0 and end > 0
    target = [-1 if merges_batch else 0, *out[1:]]
    y = g.node("Reshape", [x.name, g.const(target, np.int64, "shape")], "flatten")
    return Value(y, out, x.dtype, x.batched and not merges_batch)


def _unary(op: str, **attrs: Any) -> Any:
    def emit(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
        return x.to(g.node(op, [x.name], op.lower(), **attrs))
    return emit


emits(nn.ReLU)(_unary("Relu"))
emits(nn.Tanh)(_unary("Tanh"))
emits(nn.Sigmoid)(_unary("Sigmoid"))


@emits(nn.LeakyReLU)
def _leaky_relu(g: Graph, m: nn.LeakyReLU, x: Value, out: tuple[int, ...], at: At) -> Value:
    return x.to(g.node("LeakyRelu", [x.name], alpha=float(m.negative_slope)))


@emits(nn.ELU)
def _elu(g: Graph, m: nn.ELU, x: Value, out: tuple[int, ...], at: At) -> Value:
    return x.to(g.node("Elu", [x.name], alpha=float(m.alpha)))


@emits(nn.SiLU)
def _silu(g: Graph, m: nn.SiLU, x: Value, out: tuple[int, ...], at: At) -> Value:
    return x.to(g.node("Mul", [x.name, g.node("Sigmoid", [x.name])], "silu"))


@emits(nn.GELU)
def _gelu(g: Graph, m: nn.GELU, x: Value, out: tuple[int, ...], at: At) -> Value:
    # torch's: x Phi(x) = x (1 + erf(x / sqrt 2)) / 2, or with approximate='tanh'
    # x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 (opset 17 has no Gelu op)
    if m.approximate == "tanh":
        cube = g.node("Mul", [g.node("Mul", [x.name, x.name]), x.name])
        inner = g.node("Add", [x.name, g.node("Mul", [cube, g.const(0.044715)])])
        s = g.node("Tanh", [g.node("Mul", [inner, g.const(math.sqrt(2.0 / math.pi))])])
    else:
        s = g.node("Erf", [g.node("Mul", [x.name, g.const(1.0 / math.sqrt(2.0))])])
    half_x = g.node("Mul", [x.name, g.const(0.5)])
    return x.to(g.node("Mul", [half_x, g.node("Add", [s, g.const(1.0)])], "gelu"))


@emits(nn.Softplus)
def _softplus(g: Graph, m: nn.Softplus, x: Value, out: tuple[int, ...], at: At) -> Value:
    # torch's: x where beta x > threshold, else log(1 + exp(beta x)) / beta
    z = g.node("Mul", [x.name, g.const(m.beta)])
    soft = g.node("Div", [g.node("Softplus", [z]), g.const(m.beta)])
    linear = g.node("Greater", [z, g.const(m.threshold)])
    return x.to(g.node("Where", [linear, x.name, soft], "softplus"))


@emits(nn.Softmax, nn.LogSoftmax)
def _softmax(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    op = "Softmax" if type(m) is nn.Softmax else "LogSoftmax"
    return x.to(g.node(op, [x.name], op.lower(), axis=int(m.dim) % max(len(x.shape), 1)))


@emits(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    c = m.num_features
    scale = (g.param(at.key("weight"), m.weight.data) if m.weight is not None
             else g.const(np.ones(c), hint="ones"))
    shift = (g.param(at.key("bias"), m.bias.data) if m.bias is not None
             else g.const(np.zeros(c), hint="zeros"))
    rm, rv = m.running_mean, m.running_var
    if rm is not None and rv is not None:  # eval form: the running statistics
        inputs = [x.name, scale, shift, g.param(at.key("running_mean"), rm),
                  g.param(at.key("running_var"), rv)]
        return x.to(g.node("BatchNormalization", inputs, "batchnorm", epsilon=float(m.eps)))
    if rm is not None or rv is not None:
        raise ValueError(f"{at.where(m)}: running_mean and running_var must both be arrays or "
                         "both None, got one of each")
    # No running statistics (track_running_stats=False): eval normalises by the batch's own
    # mean and biased variance, as the layer's forward does.
    axes = [0, *range(2, len(x.shape))]
    centred = g.node("Sub", [x.name, g.reduce_mean(x.name, axes)])
    var = g.reduce_mean(g.node("Mul", [centred, centred]), axes)
    std = g.node("Sqrt", [g.node("Add", [var, g.const(m.eps)])])
    per_channel = g.const([c, *[1] * (len(x.shape) - 2)], np.int64, "shape")
    w = g.node("Reshape", [scale, per_channel])
    b = g.node("Reshape", [shift, per_channel])
    y = g.node("Mul", [g.node("Div", [centred, std]), w])
    return x.to(g.node("Add", [y, b], "batchnorm"))


@emits(nn.LayerNorm)
def _layernorm(g: Graph, m: nn.LayerNorm, x: Value, out: tuple[int, ...], at: At) -> Value:
    ns = m.normalized_shape
    inputs = [x.name, g.param(at.key("weight"), m.weight.data) if m.weight is not None
              else g.const(np.ones(ns), hint="ones")]
    if m.bias is not None:
        inputs.append(g.param(at.key("bias"), m.bias.data))
    return x.to(g.node("LayerNormalization", inputs, "layernorm", axis=-len(ns),
                       epsilon=float(m.eps)))


@emits(nn.Embedding)
def _embedding(g: Graph, m: nn.Embedding, x: Value, out: tuple[int, ...], at: At) -> Value:
    return x.to(g.node("Gather", [g.param(at.key("weight"), m.weight.data), x.name],
                       "embedding", axis=0), out)
