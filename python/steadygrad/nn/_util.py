"""Small helpers shared by the layer modules (work buffers that never alias their inputs)."""

from __future__ import annotations

import numpy as np

from steadygrad.nn.module import Module


def work_like(module: Module, key: str, shape: tuple[int, ...] | None,
              *avoid: object) -> np.ndarray | None:
    """The module's reusable float32 work array `key` of `shape`, or None when the shape is
    unknown (the binding then reports the bad input). Never returns memory shared with `avoid`
    (e.g. a layer applied to its own previous output gets a fresh array)."""
    if shape is None:
        return None
    buf = module._buffer(key, shape)
    for a in avoid:
        if isinstance(a, np.ndarray) and np.may_share_memory(buf, a):
            module._forget_buffer(key)
            buf = module._buffer(key, shape)
            break
    return buf


def shape_of(x: object, ndim: int | None = None) -> tuple[int, ...] | None:
    """x.shape if x is a float32 ndarray (of rank ndim, when given), else None."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        return None
    if ndim is not None and x.ndim != ndim:
        return None
    return x.shape
