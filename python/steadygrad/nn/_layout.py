"""Channels-last layout of the convolution family. The API is torch's channels-first
(N, C, L) / (N, C, H, W); conv, pooling and BatchNorm2d compute on channels-last
(N, L, C) / (N, H, W, C) arrays, where a pixel's channels are contiguous (the GEMM's rows,
BatchNorm's rows, the SIMD lanes of depthwise and pooling). A Sequential's plan keeps a run of
such layers channels-last and converts only at the run's edges (nn/plan.py); a layer used on
its own converts its input and output itself.

A layer that can do this declares `channels_last = True` and takes
`forward(x, *, layout_in=FIRST, layout_out=FIRST)`: x arrives in layout_in, the output leaves
in layout_out, its backward receives dL/dy in layout_out and returns dL/dx in layout_in.
Shapes in `output_shape`, `memory` and every error message are the logical (channels-first)
ones. Elementwise layers (activations, Dropout, Identity) declare `layout_agnostic = True`.
"""

from __future__ import annotations

import numpy as np

from steadygrad import _core

FIRST = "channels_first"
LAST = "channels_last"
LAYOUTS = (FIRST, LAST)


def last_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, C, *S) -> (N, *S, C)."""
    return (shape[0], *shape[2:], shape[1])


def first_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(N, *S, C) -> (N, C, *S)."""
    return (shape[0], shape[-1], *shape[1:-1])


def to_last(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Copy channels-first x (N, C, *S) into channels-last out (N, *S, C) (rank 3 or 4; one
    blocked transpose per image in C++, cpp/layout/)."""
    return _core.to_channels_last(x, out)


def to_first(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Copy channels-last x (N, *S, C) into channels-first out (N, C, *S)."""
    return _core.to_channels_first(x, out)


def conversion_bytes(shape_in: tuple[int, ...], shape_out: tuple[int, ...], layout_in: str,
                     layout_out: str) -> tuple[int, int]:
    """(activation, workspace) bytes a channels-last layer holds beyond its own `memory()`
    (which counts its channels-last work) for converting at a run's edge: layout_in FIRST
    keeps a channels-last copy of the input (which its backward reads, and may then take its
    channels-last dL/dx); layout_out FIRST keeps the converted output and converts dL/dy into a
    channels-last buffer. 2-D shapes have one layout and cost nothing."""
    act = ws = 0
    if layout_in == FIRST and len(shape_in) > 2:
        act += 4 * int(np.prod(shape_in))
    if layout_out == FIRST and len(shape_out) > 2:
        n = 4 * int(np.prod(shape_out))
        act, ws = act + n, ws + n
    return act, ws
