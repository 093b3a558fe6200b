"""ONNX forms of the convolution and pooling layers, on the channels-first (N, C, L) /
(N, C, H, W) tensors the user's model takes (the layers' channels-last work layout is internal,
nn/_layout.py). Every padding is given explicitly, so the graph does not depend on how a
runtime reads ceil_mode or auto_pad: torch's 'same' split (the odd one after), the reflect /
replicate / circular padding modes, and the extra end padding that makes a ceil_mode output
size a floor one (padding the max pool with -inf, and left out of the average pool's count)."""

from __future__ import annotations

from typing import Any

import numpy as np

from steadygrad import nn
from steadygrad.onnx._graph import Graph, Value
from steadygrad.onnx._tree import At, emits

# torch's padding modes as ONNX Pad's; circular is built from slices (Pad's wrap is opset 19)
_PAD_MODES = {"reflect": "reflect", "replicate": "edge"}


def _circular(g: Graph, x: str, rank: int, pads: tuple[tuple[int, int], ...]) -> str:
    """x with each spatial axis wrapped around: its last `before` positions put in front, its
    first `after` ones behind (torch's circular mode; the layer checks pads <= size)."""
    for i, (before, after) in enumerate(pads):
        axis = rank - len(pads) + i
        parts = []
        if before:
            parts.append(_slice(g, x, axis, -before, np.iinfo(np.int64).max))
        parts.append(x)
        if after:
            parts.append(_slice(g, x, axis, 0, after))
        if len(parts) > 1:
            x = g.node("Concat", parts, "circular", axis=axis)
    return x


def _slice(g: Graph, x: str, axis: int, start: int, end: int) -> str:
    consts = [g.const([v], np.int64, "slice") for v in (start, end, axis)]
    return g.node("Slice", [x, *consts])


@emits(nn.Conv1d, nn.Conv2d)
def _conv(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    pads: tuple[tuple[int, int], ...] = m._pads  # (before, after) per spatial dim
    rank = len(x.shape)
    src = x.name
    if m.padding_mode == "circular":
        src, pads = _circular(g, src, rank, pads), tuple((0, 0) for _ in pads)
    elif m.padding_mode != "zeros":
        src = g.pad(src, rank, [p[0] for p in pads], [p[1] for p in pads],
                    _PAD_MODES[m.padding_mode])
        pads = tuple((0, 0) for _ in pads)
    inputs = [src, g.param(at.key("weight"), m.weight.data)]
    if m.bias is not None:
        inputs.append(g.param(at.key("bias"), m.bias.data))
    y = g.node("Conv", inputs, "conv", kernel_shape=list(m.kernel_size), strides=list(m.stride),
               dilations=list(m.dilation), group=int(m.groups),
               pads=[p[0] for p in pads] + [p[1] for p in pads])
    return x.to(y, out)


def _ceil_extra(in_sizes: tuple[int, ...], out_sizes: tuple[int, ...], m: Any) -> list[int]:
    """Per spatial dim, the padding beyond the layer's own at the end that makes the floor
    output size the layer's (ceil_mode's last window running past the padded input)."""
    return [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
            for n, o, k, s, p, d in zip(in_sizes, out_sizes, m._k, m._s, m._p, m._d,
                                        strict=True)]


@emits(nn.MaxPool1d, nn.MaxPool2d)
def _max_pool(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    extra = _ceil_extra(x.shape[2:], out[2:], m)
    src = x.name
    if any(m._p) or any(extra):  # -inf: the padding never wins a window (torch's)
        src = g.pad(src, len(x.shape), list(m._p), [p + e for p, e in zip(m._p, extra,
                                                                           strict=True)],
                    "constant", float("-inf"))
    y = g.node("MaxPool", [src], "maxpool", kernel_shape=list(m._k), strides=list(m._s),
               dilations=list(m._d))
    return x.to(y, out)


@emits(nn.AvgPool1d, nn.AvgPool2d)
def _avg_pool(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    # torch divides a window's sum by its size within the padded input (count_include_pad) or
    # within the input, never counting where a ceil_mode window runs past the padded input;
    # divisor_override divides every sum by one number.
    extra = _ceil_extra(x.shape[2:], out[2:], m)
    p, rank, src = list(m._p), len(x.shape), x.name
    divisor = m.divisor_override
    if divisor is not None:  # every window full (zeros padded explicitly): mean * size / divisor
        src = g.pad(src, rank, p, [a + e for a, e in zip(p, extra, strict=True)], "constant")
        mean = g.node("AveragePool", [src], kernel_shape=list(m._k), strides=list(m._s))
        y = g.node("Mul", [mean, g.const(float(np.prod(m._k)) / divisor)], "avgpool")
        return x.to(y, out)
    before, after = p, [a + e for a, e in zip(p, extra, strict=True)]
    if m.count_include_pad and any(p):  # the layer's padding counted: explicit zeros
        src = g.pad(src, rank, p, p, "constant")
        before, after = [0] * len(p), extra
    y = g.node("AveragePool", [src], "avgpool", kernel_shape=list(m._k), strides=list(m._s),
               pads=before + after, count_include_pad=0)
    return x.to(y, out)


@emits(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool(g: Graph, m: Any, x: Value, out: tuple[int, ...], at: At) -> Value:
    ins, outs = x.shape[2:], out[2:]
    if all(o == 1 for o in outs):
        return x.to(g.node("GlobalAveragePool", [x.name], "avgpool"), out)
    if all(n % o == 0 for n, o in zip(ins, outs, strict=True)):  # equal windows, no overlap
        kernel = [n // o for n, o in zip(ins, outs, strict=True)]
        return x.to(g.node("AveragePool", [x.name], "avgpool", kernel_shape=kernel,
                           strides=kernel), out)
    # torch's windows floor(i n / o) .. ceil((i + 1) n / o), of unequal sizes and overlapping:
    # the mean along each axis as a product with its (n, o) averaging matrix.
    y = x.name
    if len(ins) == 2:  # H: (o, n) @ (N, C, n, W)
        y = g.node("MatMul", [g.const(_window_means(ins[0], outs[0]).T), y])
    y = g.node("MatMul", [y, g.const(_window_means(ins[-1], outs[-1]))], "avgpool")
    return x.to(y, out)


def _window_means(n: int, o: int) -> np.ndarray:
    """(n, o): column i averages torch's window i of an adaptive pool from n to o."""
    w = np.zeros((n, o))
    for i in range(o):
        lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
        w[lo:hi, i] = 1.0 / (hi - lo)
    return w
