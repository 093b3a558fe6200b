"""Checkpoints: `sg.save` / `sg.load` of model, optimizer, scheduler, RNG states and user extras
in one safetensors file. Flat arrays hold the numbers; the metadata holds scalars, RNG states,
the data position and a structure fingerprint as JSON. No pickle anywhere; loading validates
everything before it copies anything, and rolls back if a component refuses its state."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any

import numpy as np

from steadygrad import _safetensors as st
from steadygrad._introspect import global_rng, named_layers

FORMAT = "steadygrad.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: wrong model, corrupted or truncated file, missing key."""


# -- nested state <-> (JSON tree, flat tensors) -------------------------------------------------
def _encode(obj: Any, key: str, tensors: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, np.ndarray):
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and "__tensor__" not in obj:
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        # Non-string keys (PyTorch-style per-parameter state indexed by int) keep their type.
        return {"__items__": [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"sg.save: cannot store {type(obj).__name__} at {key!r} (arrays, numbers, "
                    "strings, None, lists, tuples and dicts only)")


def _decode(obj: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            k = obj["__tensor__"]
            if k not in tensors:
                raise CheckpointError(f"{path}: missing tensor {k!r}")
            return tensors[k]
        if set(obj) == {"__items__"}:
            return {_key(k): _decode(v, tensors, path) for k, v in obj["__items__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, tensors, path) for v in obj["__tuple__"])
        return {k: _decode(v, tensors, path) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors, path) for v in obj]
    return obj


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def _check_like(new: Any, old: Any, where: str, path: str) -> None:
    """The loaded state must have the structure of the live one wherever both hold arrays."""
    if isinstance(old, np.ndarray):
        if not isinstance(new, np.ndarray):
            raise CheckpointError(f"{path}: {where} should be an array of shape {old.shape}, got "
                                  f"{type(new).__name__}")
        if new.shape != old.shape or new.dtype != old.dtype:
            raise CheckpointError(f"{path}: {where} has {new.dtype}{new.shape} in the checkpoint but "
                                  f"{old.dtype}{old.shape} in memory")
    elif isinstance(old, dict) and isinstance(new, dict):
        missing = [k for k in old if k not in new]
        if missing:
            raise CheckpointError(f"{path}: {where} is missing key(s) {missing}")
        for k in old:
            _check_like(new[k], old[k], f"{where}[{k!r}]", path)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        if len(new) != len(old):
            raise CheckpointError(f"{path}: {where} has {len(new)} entries, {len(old)} in memory")
        for i, (a, b) in enumerate(zip(new, old, strict=False)):
            _check_like(a, b, f"{where}[{i}]", path)


def _snapshot(obj: Any) -> Any:
    return copy.deepcopy(obj.state_dict())


# -- the model's structure ------------------------------------------------------------------------
def model_spec(model: Any) -> dict[str, Any]:
    """Names, shapes and dtypes of every state entry, and every layer's type, in order."""
    sd = model.state_dict()
    params = [n for n, _ in model.named_parameters()]
    pset = set(params)
    return {
        "params": [[n, list(np.shape(sd[n])), str(np.asarray(sd[n]).dtype)] for n in params],
        "buffers": [[n, list(np.shape(v)), str(np.asarray(v).dtype)] for n, v in sd.items() if n not in pset],
        "layers": [[n, type(m).__name__] for n, m in named_layers(model)],
    }


def fingerprint(spec: dict[str, Any]) -> str:
    return hashlib.sha256(st.canonical(spec)).hexdigest()[:32]


def _spec_diff(saved: dict[str, Any], live: dict[str, Any]) -> str:
    for part in ("layers", "params", "buffers"):
        a, b = saved.get(part, []), live.get(part, [])
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else None
            y = b[i] if i < len(b) else None
            if x != y:
                return f"first difference in {part} #{i}: checkpoint has {x}, model has {y}"
    return "the structures differ"


def _flat_storage(model: Any) -> tuple[Any, list[tuple[str, int, tuple[int, ...]]]] | None:
    """The single FlatStorage holding exactly the model's parameters in order, or None."""
    named = list(model.named_parameters())
    if not named:
        return None
    storage = getattr(named[0][1], "storage", None)
    if (storage is None or any(getattr(p, "storage", None) is not storage for _, p in named)
            or [id(p) for _, p in named] != [id(p) for p in storage.params]):
        return None
    return storage, [(n, p.offset, tuple(p.shape)) for n, p in named]


# -- save -----------------------------------------------------------------------------------------
def save(path: str | os.PathLike, model: Any, optimizer: Any = None, scheduler: Any = None,
         extra: Any = None) -> None:
    """Writes model parameters (one flat array) and buffers, the optimizer's and scheduler's
    state_dicts, sg's RNG state and `extra` (JSON-able values and numpy arrays; `sg.fit` puts
    its resume position under extra["fit"]) atomically to `path` (safetensors format)."""
    tensors: dict[str, np.ndarray] = {}
    sd = model.state_dict()
    spec = model_spec(model)
    flat = _flat_storage(model)
    pnames = [p[0] for p in spec["params"]]
    layout: Any
    if flat is not None:
        storage, offsets = flat
        tensors["model.params"] = np.asarray(storage.data)
        layout = {"flat": [[n, off, list(shape)] for n, off, shape in offsets]}
    else:
        for n in pnames:
            tensors[f"model.param.{n}"] = np.asarray(sd[n])
        layout = {"flat": None}
    pset = set(pnames)
    for n, v in sd.items():
        if n not in pset:
            tensors[f"model.buffer.{n}"] = np.asarray(v)
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "fingerprint": fingerprint(spec),
        "model_spec": json.dumps(spec),
        "model_layout": json.dumps(layout),
    }
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None:
            meta[name] = json.dumps(_encode(obj.state_dict(), name, tensors))
            meta[f"{name}_type"] = type(obj).__name__
    rng = global_rng()
    if rng is not None:
        meta["rng"] = json.dumps(_encode(rng.bit_generator.state, "rng", tensors))
    if extra is not None:
        meta["extra"] = json.dumps(_encode(extra, "extra", tensors))
    st.write(path, tensors, meta)


# -- load -----------------------------------------------------------------------------------------
def load(path: str | os.PathLike, model: Any, optimizer: Any = None, scheduler: Any = None) -> Any:
    """Restores what `save` wrote into `model` (and `optimizer` / `scheduler` when given) and
    sg's RNG; returns `extra`. Raises CheckpointError, leaving everything untouched, if the
    file is truncated or corrupted, belongs to a different model or lacks a required part."""
    path = os.fspath(path)
    try:
        tensors, meta = st.read(path)
    except st.FormatError as e:
        raise CheckpointError(str(e)) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a steadygrad checkpoint (format={meta.get('format')!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('format_version')!r}, "
                              f"this steadygrad reads version {FORMAT_VERSION}")
    try:
        saved_spec = json.loads(meta["model_spec"])
        layout = json.loads(meta["model_layout"])
        trees = {k: json.loads(meta[k]) for k in ("optimizer", "scheduler", "rng", "extra") if k in meta}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupted metadata: {e}") from None
    live_spec = model_spec(model)
    if meta.get("fingerprint") != fingerprint(live_spec):
        raise CheckpointError(f"{path}: checkpoint was saved from a different model "
                              f"({_spec_diff(saved_spec, live_spec)})")

    # Everything is rebuilt and checked here; nothing in memory has been touched yet.
    live_sd = model.state_dict()
    new_sd: dict[str, np.ndarray] = {}
    if layout.get("flat") is not None:
        flat = tensors.get("model.params")
        if flat is None:
            raise CheckpointError(f"{path}: missing key 'model.params'")
        for n, off, shape in layout["flat"]:
            size = int(np.prod(shape, dtype=np.int64))
            if off < 0 or off + size > flat.size:
                raise CheckpointError(f"{path}: parameter {n!r} lies outside 'model.params'")
            new_sd[n] = flat[off : off + size].reshape(shape)
    for n, _, _ in saved_spec["params"]:
        if n not in new_sd:
            key = f"model.param.{n}"
            if key not in tensors:
                raise CheckpointError(f"{path}: missing key {key!r}")
            new_sd[n] = tensors[key]
    for n, _, _ in saved_spec["buffers"]:
        key = f"model.buffer.{n}"
        if key not in tensors:
            raise CheckpointError(f"{path}: missing key {key!r}")
        new_sd[n] = tensors[key]
    _check_like(new_sd, {k: np.asarray(v) for k, v in live_sd.items()}, "model", path)

    parts: list[tuple[Any, Any]] = [(model, new_sd)]
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if name not in trees:
            raise CheckpointError(f"{path}: the checkpoint holds no {name} state")
        if meta.get(f"{name}_type") != type(obj).__name__:
            raise CheckpointError(f"{path}: {name} state was saved from {meta.get(f'{name}_type')}, "
                                  f"cannot load it into {type(obj).__name__}")
        state = _decode(trees[name], tensors, path)
        _check_like(state, obj.state_dict(), name, path)
        parts.append((obj, state))
    rng = global_rng()
    rng_state = _decode(trees["rng"], tensors, path) if "rng" in trees else None
    extra = _decode(trees["extra"], tensors, path) if "extra" in trees else None

    # Apply; if any component rejects its state, put every one back as it was.
    snapshots = [(obj, _snapshot(obj)) for obj, _ in parts]
    rng_before = rng.bit_generator.state if rng is not None else None
    try:
        for obj, state in parts:
            obj.load_state_dict(state)
        if rng is not None and rng_state is not None:
            rng.bit_generator.state = rng_state
    except Exception as e:
        failed = []
        for obj, snap in snapshots:
            try:
                obj.load_state_dict(snap)
            except Exception:  # keep restoring the others; report it below
                failed.append(type(obj).__name__)
        if rng is not None:
            rng.bit_generator.state = rng_before
        outcome = f"could not roll back {failed}" if failed else "nothing was changed"
        raise CheckpointError(f"{path}: could not restore the state ({type(e).__name__}: {e}); "
                              f"{outcome}") from e
    return extra
