"""The argument checks every tool shares (sg.fit's, DataLoader's): an int count, a bool flag,
and how a bad value is shown in the message. Imports nothing of steadygrad."""

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
