"""Small helpers shared by the layer modules (work buffers that never alias their inputs, the
(batch, features) input contract of Linear and BatchNorm1d)."""

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


def grad_input_out(module: Module, x: np.ndarray, grad_output: object, input_grad: bool,
                   donate_input: bool) -> np.ndarray | None:
    """Where a layer's backward writes dL/dx: None when it is not wanted; x itself when the
    plan says the input is dead after this backward (`donate_input`: the previous layer's own
    output buffer, read by nothing later); else the layer's reusable "dx" buffer."""
    if not input_grad:
        return None
    if donate_input and x.flags.writeable and x.flags.c_contiguous:
        return x
    return work_like(module, "dx", x.shape, grad_output)


def shape_of(x: object, ndim: int | None = None) -> tuple[int, ...] | None:
    """x.shape if x is a float32 ndarray (of rank ndim, when given), else None."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        return None
    if ndim is not None and x.ndim != ndim:
        return None
    shape: tuple[int, ...] = x.shape
    return shape


def work_rows(module: Module, x: object, features: int) -> np.ndarray | None:
    """The module's reusable (batch, features) output for a 2-D float32 input x (None if x is
    not one: the binding then reports it)."""
    s = shape_of(x, 2)
    return work_like(module, "out", None if s is None else (s[0], features), x)


def check_rows(shape: tuple[int, ...], features: int) -> None:
    """Raise unless shape is (batch, features)."""
    if len(shape) != 2 or shape[1] != features:
        raise ValueError(f"expected input of shape (batch, {features}), got {tuple(shape)}")


def size_arg(name: str, value: object, owner: str | None = None) -> int:
    """value if it is a non-negative int (not a bool), else a ValueError naming the argument
    (after `owner: ` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        where = f"{owner}: " if owner else ""
        raise ValueError(f"{where}{name} must be a non-negative int, got {value!r}")
    return int(value)


def real_arg(owner: str, name: str, value: object) -> float:
    """value as a float if it is a real number (not a bool, not a string), else a TypeError
    naming the argument: a constructor's comparisons would otherwise fail with Python's own
    message, which names nothing."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r} "
                        f"({type(value).__name__})")
    return float(value)


def int_arg(owner: str, name: str, value: object) -> int:
    """value if it is an int (not a bool), else a TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)
