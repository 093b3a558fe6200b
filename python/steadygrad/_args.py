"""The argument checks every tool shares (sg.fit's, DataLoader's, check_init's): an int count,
a bool flag, an input array, and how a bad value is shown in the message. Imports nothing of
steadygrad."""

from __future__ import annotations

from typing import Any

import numpy as np


def describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"{v.dtype} array of shape {v.shape}"
    if isinstance(v, (tuple, list)):
        return f"{type(v).__name__} of {len(v)} items"
    text = repr(v)
    return f"{text[:60]}... ({type(v).__name__})" if len(text) > 60 else f"{text} ({type(v).__name__})"


def count(value: Any, name: str, minimum: int = 1) -> int:
    """An int (numpy ints too; not bool, not float) >= minimum."""
    want = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {want}, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be {want}, got {value}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def features(x: Any, where: str, integer: bool = False) -> np.ndarray:
    """x as a C-contiguous array with at least one sample: float32, or for a model that takes
    integer indices (`integer`, intro.integer_input) int32/int64 (other integer types widened
    to int64)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{where} must be a numeric array, got {describe(arr)}")
    if arr.ndim == 0 or len(arr) == 0:
        raise ValueError(f"{where} must hold at least one sample, got {describe(arr)}")
    if not integer:
        return np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind not in "iu" or not np.can_cast(arr.dtype, np.int64):
        raise TypeError(f"{where} must hold integer indices (int32 or int64): the model's first "
                        f"layer takes indices (nn.Embedding), got {describe(arr)}")
    native = arr.dtype in (np.dtype(np.int32), np.dtype(np.int64))
    return np.ascontiguousarray(arr if native else arr.astype(np.int64))
