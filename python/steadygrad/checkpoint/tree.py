"""The checkpoint's nested state <-> (a JSON tree, flat tensors): how an optimizer's, a
scheduler's or a user's state is encoded into metadata plus tensors and decoded back, and the
check that a decoded value has the kind of the live one it replaces. Knows nothing of models or
files (format.py puts the pieces into a safetensors file)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from steadygrad.checkpoint import safetensors as st


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: wrong model, corrupted or truncated file, missing key."""


# -- nested state <-> (JSON tree, flat tensors) -------------------------------------------------
_RESERVED = ("__tensor__", "__items__", "__tuple__")  # keys of the encoded forms below
_SCALARS = (bool, int, float, str, type(None))


def encode(obj: Any, key: str, tensors: dict[str, np.ndarray], depth: int = 0) -> Any:
    """`depth`: brackets open around obj in the JSON text, kept <= st.MAX_DEPTH so that load
    accepts what save writes (and a structure that contains itself fails clearly)."""
    if depth + 1 > st.MAX_DEPTH:
        raise ValueError(f"sg.save: {key!r} nests deeper than {st.MAX_DEPTH} levels "
                         "(or contains itself)")
    if isinstance(obj, np.ndarray):
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k in obj for k in _RESERVED):
            return {k: encode(v, f"{key}.{k}", tensors, depth + 1) for k, v in obj.items()}
        # Non-string keys (PyTorch-style per-parameter state indexed by int) keep their type.
        bad = next((k for k in obj if not _is_key(k, tuple)), None)
        if bad is not None:
            raise TypeError(f"sg.save: cannot store the dict key {bad!r} at {key!r} (str, int, "
                            "float, bool, None or a tuple of those)")
        items = [[k, encode(v, f"{key}.{k}", tensors, depth + 3)] for k, v in obj.items()]
        return {"__items__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{key}.{i}", tensors, depth + 2) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{key}.{i}", tensors, depth + 1) for i, v in enumerate(obj)]
    if isinstance(obj, _SCALARS):
        return obj
    raise TypeError(f"sg.save: cannot store {type(obj).__name__} at {key!r} (arrays, numbers, "
                    "strings, None, lists, tuples and dicts only)")


def decode(obj: Any, tensors: dict[str, np.ndarray], where: str, path: str) -> Any:
    """The inverse of encode; a malformed encoded form is a CheckpointError naming `where`."""
    if isinstance(obj, list):
        return [decode(v, tensors, f"{where}[{i}]", path) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    form = next((k for k in _RESERVED if k in obj), None)
    if form is None:
        return {k: decode(v, tensors, f"{where}[{k!r}]", path) for k, v in obj.items()}
    value = obj[form]
    if len(obj) != 1:
        raise CheckpointError(f"{path}: corrupted metadata: {where} mixes {form!r} with other "
                              f"keys {st.short(list(obj))}")
    if form == "__tensor__":
        if not isinstance(value, str) or value not in tensors:
            raise CheckpointError(f"{path}: {where}: missing tensor {st.short(value)}")
        return tensors[value]
    if not isinstance(value, list):
        raise CheckpointError(f"{path}: corrupted metadata: {where}[{form!r}] should be a list, "
                              f"got {st.kind(value)}")
    if form == "__tuple__":
        return tuple(decode(v, tensors, f"{where}[{i}]", path) for i, v in enumerate(value))
    out = {}
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and _is_key(item[0], list)):
            raise CheckpointError(f"{path}: corrupted metadata: {where} holds {st.short(item)} where a "
                                  "[key, value] pair with a scalar or list-of-scalars key belongs")
        k = tuple(item[0]) if isinstance(item[0], list) else item[0]
        out[k] = decode(item[1], tensors, f"{where}[{k!r}]", path)
    return out


def _is_key(k: Any, seq: type[tuple[Any, ...]] | type[list[Any]]) -> bool:
    """A dict key the encoded form can carry: a scalar or a `seq` (tuple in memory, list in
    JSON) of scalars."""
    return isinstance(k, _SCALARS) or (isinstance(k, seq) and all(isinstance(x, _SCALARS) for x in k))


def _category(v: Any) -> str | None:
    """The JSON kind a scalar must keep between memory and checkpoint (None: anything goes)."""
    if isinstance(v, (bool, np.bool_)):
        return "a boolean"
    if isinstance(v, (int, float, np.number)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return None


def check_like(new: Any, old: Any, where: str, path: str) -> None:
    """The loaded state must have the structure of the live one: arrays of the same shape and
    dtype, containers of the same kind, scalars of the same kind (a None on either side goes)."""
    if isinstance(old, np.ndarray):
        if not isinstance(new, np.ndarray):
            raise CheckpointError(f"{path}: {where} should be an array of shape {old.shape}, got "
                                  f"{type(new).__name__}")
        if new.shape != old.shape or new.dtype != old.dtype:
            raise CheckpointError(f"{path}: {where} has {new.dtype}{new.shape} in the checkpoint but "
                                  f"{old.dtype}{old.shape} in memory")
    elif isinstance(old, dict):
        if not isinstance(new, dict):
            raise CheckpointError(f"{path}: {where} should be a dict, got {type(new).__name__}")
        missing = [k for k in old if k not in new]
        if missing:
            raise CheckpointError(f"{path}: {where} is missing key(s) {missing}")
        for k in old:
            check_like(new[k], old[k], f"{where}[{k!r}]", path)
    elif isinstance(old, (list, tuple)):
        if not isinstance(new, (list, tuple)):
            raise CheckpointError(f"{path}: {where} should be a {type(old).__name__}, got "
                                  f"{type(new).__name__}")
        if len(new) != len(old):
            raise CheckpointError(f"{path}: {where} has {len(new)} entries, {len(old)} in memory")
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            check_like(a, b, f"{where}[{i}]", path)
    elif new is not None and _category(old) is not None and _category(new) != _category(old):
        raise CheckpointError(f"{path}: {where} is {_category(new) or type(new).__name__} in the "
                              f"checkpoint ({st.short(new)}) but {_category(old)} in memory "
                              f"({st.short(old)})")


def snapshot(obj: Any) -> Any:
    return copy.deepcopy(obj.state_dict())
