"""Checkpoints: `sg.save` / `sg.load` of model, optimizer, scheduler, RNG states and user extras
in one safetensors file. Flat arrays hold the numbers; the metadata holds scalars, RNG states,
the data position and a structure fingerprint as JSON. No pickle anywhere; loading validates
everything before it copies anything, and rolls back if a component refuses its state."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

import numpy as np

from steadygrad._introspect import global_rng, named_layers
from steadygrad.checkpoint import safetensors as st
from steadygrad.checkpoint.tree import (
    CheckpointError,
    check_like,
    decode,
    encode,
    snapshot,
)

FORMAT = "steadygrad.checkpoint"
FORMAT_VERSION = 1


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


def _spec_diff(saved: Any, live: dict[str, Any]) -> str:
    saved = saved if isinstance(saved, dict) else {}
    for part in ("layers", "params", "buffers"):
        a, b = saved.get(part, []), live.get(part, [])
        a = a if isinstance(a, list) else []
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else None
            y = b[i] if i < len(b) else None
            if x != y:
                return f"first difference in {part} #{i}: checkpoint has {st.short(x)}, model has {y}"
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


# -- arguments ------------------------------------------------------------------------------------
def _path_arg(path: Any, fn: str) -> str:
    if not isinstance(path, (str, bytes, os.PathLike)):
        hint = f" (the path comes first: {fn}(path, model, ...))" if hasattr(path, "state_dict") else ""
        raise TypeError(f"{fn}: path must be a str or os.PathLike, got {type(path).__name__}{hint}")
    return os.fsdecode(os.fspath(path))


def _check_args(fn: str, model: Any, optimizer: Any, scheduler: Any, loading: bool) -> None:
    methods = ("state_dict", "load_state_dict") if loading else ("state_dict",)

    def has(obj: Any, names: tuple[str, ...]) -> bool:
        return all(callable(getattr(obj, m, None)) for m in names)

    if not has(model, (*methods, "named_parameters")):
        hint = ""
        if isinstance(model, dict):
            hint = " (pass the module itself, not its state_dict)"
        elif isinstance(model, (str, bytes, os.PathLike)):
            hint = f" (the path comes first: {fn}(path, model, ...))"
        raise TypeError(f"{fn}: model must be a Module (with {', '.join(methods)} and "
                        f"named_parameters), got {type(model).__name__}{hint}")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        is_optimizer = hasattr(obj, "param_groups")
        if obj is None or (has(obj, methods) and is_optimizer == (name == "optimizer")):
            continue
        hint = ""
        if name == "optimizer" and hasattr(obj, "optimizer"):
            hint = " (a scheduler? pass it as scheduler=)"
        elif name == "scheduler" and is_optimizer:
            hint = " (an optimizer? pass it as optimizer=)"
        needs = ", ".join((*methods, "param_groups") if name == "optimizer" else methods)
        article = "an" if name == "optimizer" else "a"
        raise TypeError(f"{fn}: {name} must be {article} {name} (with {needs}) or None, got "
                        f"{type(obj).__name__}{hint}")


# -- save -----------------------------------------------------------------------------------------
def save(path: str | os.PathLike[str], model: Any, optimizer: Any = None, scheduler: Any = None,
         extra: Any = None) -> None:
    """Writes model parameters (one flat array) and buffers, the optimizer's and scheduler's
    state_dicts, sg's RNG state and `extra` (JSON-able values and numpy arrays; `sg.fit` puts
    its resume position under extra["fit"]) atomically to `path` (safetensors format). A save
    killed half way leaves the old file; the next save of `path` removes its temporary."""
    path = _path_arg(path, "sg.save")
    _check_args("sg.save", model, optimizer, scheduler, loading=False)
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
            meta[name] = json.dumps(encode(obj.state_dict(), name, tensors))
            meta[f"{name}_type"] = type(obj).__name__
    meta["rng"] = json.dumps(encode(global_rng().bit_generator.state, "rng", tensors))
    if extra is not None:
        meta["extra"] = json.dumps(encode(extra, "extra", tensors))
    st.write(path, tensors, meta)


# -- load -----------------------------------------------------------------------------------------
def _meta_json(meta: dict[str, str], key: str, path: str) -> Any:
    if key not in meta:
        raise CheckpointError(f"{path}: corrupted metadata: missing {key!r}")
    try:
        return st.loads(meta[key], f"{path}: corrupted metadata {key!r}", allow_nan=True)
    except st.FormatError as e:
        raise CheckpointError(str(e)) from None


def _model_state(tensors: dict[str, np.ndarray], layout: Any, spec: dict[str, Any],
                 path: str) -> dict[str, np.ndarray]:
    """The model's state_dict from the file, for the parameter and buffer names of `spec` (the
    live model's, which the file's fingerprint matched). A flat layout must place every
    parameter inside 'model.params' without overlapping another."""
    if (not isinstance(layout, dict) or set(layout) != {"flat"}
            or not isinstance(layout["flat"], (list, type(None)))):
        raise CheckpointError(f"{path}: corrupted metadata 'model_layout': expected "
                              f"{{\"flat\": list or null}}, got {st.short(layout)}")
    new_sd: dict[str, np.ndarray] = {}
    params = spec["params"]
    if layout["flat"] is not None:
        flat = tensors.get("model.params")
        if flat is None:
            raise CheckpointError(f"{path}: missing key 'model.params'")
        if flat.ndim != 1:
            raise CheckpointError(f"{path}: 'model.params' should be 1-D, got shape {flat.shape}")
        wrong = next((dt for _, _, dt in params if dt != str(flat.dtype)), None)
        if wrong is not None:
            raise CheckpointError(f"{path}: 'model.params' holds {flat.dtype} in the checkpoint but "
                                  f"the model's parameters are {wrong}")
        if len(layout["flat"]) != len(params):
            raise CheckpointError(f"{path}: corrupted metadata 'model_layout': {len(layout['flat'])} "
                                  f"entries for {len(params)} parameters")
        spans = []
        for entry, (name, shape, _) in zip(layout["flat"], params, strict=True):
            if not (isinstance(entry, list) and len(entry) == 3 and entry[0] == name
                    and st.is_index(entry[1]) and entry[2] == shape):
                raise CheckpointError(f"{path}: corrupted metadata 'model_layout': parameter {name!r} "
                                      f"should be [{name!r}, offset, {shape}], got {st.short(entry)}")
            size = math.prod(shape)
            spans.append((entry[1], entry[1] + size, name, shape))
        end, prev = 0, ""
        for lo, hi, name, shape in sorted(spans):
            if hi > flat.size:
                raise CheckpointError(f"{path}: parameter {name!r} lies outside 'model.params' "
                                      f"(elements {lo}..{hi} of {flat.size})")
            if hi > lo and lo < end:
                raise CheckpointError(f"{path}: corrupted metadata 'model_layout': parameter {name!r} "
                                      f"overlaps {prev!r} in 'model.params'")
            if hi > lo:
                end, prev = hi, name
            new_sd[name] = flat[lo:hi].reshape(shape)
    for part, prefix in (("params", "model.param."), ("buffers", "model.buffer.")):
        for name, _, _ in spec[part]:
            if name not in new_sd:
                key = prefix + name
                if key not in tensors:
                    raise CheckpointError(f"{path}: missing key {key!r}")
                new_sd[name] = tensors[key]
    return new_sd


def _check_rng_state(rng: np.random.Generator, state: Any, path: str) -> None:
    """Sets the state on a scratch generator of the same kind, so a bad one fails here."""
    try:
        type(rng.bit_generator)(0).state = state
    except Exception as e:  # numpy raises TypeError, ValueError, OverflowError, KeyError...
        raise CheckpointError(f"{path}: corrupted RNG state ({type(e).__name__}: {e})") from None


def load(path: str | os.PathLike[str], model: Any, optimizer: Any = None, scheduler: Any = None, *,
         restore_rng: bool = False) -> Any:
    """Restores what `save` wrote into `model` (and `optimizer` / `scheduler` when given);
    returns `extra`. `restore_rng=True` also puts sg's random generator (nn.init, Dropout) back
    to its state at save time, which resuming training bit for bit needs (`sg.fit(resume=...)`
    does it); by default the generator is left alone, so later initialisation and dropout
    draw exactly as if nothing had been loaded. Raises CheckpointError, leaving everything
    untouched, if the file is truncated, corrupted or malformed, belongs to a different model
    or lacks a required part (TypeError for arguments of the wrong type, OSError if the file
    cannot be opened)."""
    path = _path_arg(path, "sg.load")
    _check_args("sg.load", model, optimizer, scheduler, loading=True)
    if not isinstance(restore_rng, (bool, np.bool_)):
        raise TypeError(f"sg.load: restore_rng must be a bool, got {type(restore_rng).__name__}")
    try:
        tensors, meta = st.read(path)
    except st.FormatError as e:
        raise CheckpointError(str(e)) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a steadygrad checkpoint "
                              f"(format={st.short(meta.get('format'))})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: checkpoint format version "
                              f"{st.short(meta.get('format_version'))}, this steadygrad reads "
                              f"version {FORMAT_VERSION}")
    saved_spec = _meta_json(meta, "model_spec", path)
    layout = _meta_json(meta, "model_layout", path)
    trees = {k: _meta_json(meta, k, path)
             for k in ("optimizer", "scheduler", "rng", "extra") if k in meta}
    if not isinstance(saved_spec, dict) or fingerprint(saved_spec) != meta.get("fingerprint"):
        raise CheckpointError(f"{path}: corrupted metadata: 'model_spec' does not match the fingerprint")
    live_spec = model_spec(model)
    if meta.get("fingerprint") != fingerprint(live_spec):
        raise CheckpointError(f"{path}: checkpoint was saved from a different model "
                              f"({_spec_diff(saved_spec, live_spec)})")

    # Everything is rebuilt and checked here; nothing in memory has been touched yet.
    new_sd = _model_state(tensors, layout, live_spec, path)
    check_like(new_sd, {k: np.asarray(v) for k, v in model.state_dict().items()}, "model", path)
    parts: list[tuple[Any, Any]] = [(model, new_sd)]
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if name not in trees:
            raise CheckpointError(f"{path}: the checkpoint holds no {name} state")
        if meta.get(f"{name}_type") != type(obj).__name__:
            saved_type = str(meta.get(f"{name}_type"))[:80]
            raise CheckpointError(f"{path}: {name} state was saved from {saved_type}, "
                                  f"cannot load it into {type(obj).__name__}")
        state = decode(trees[name], tensors, name, path)
        check_like(state, obj.state_dict(), name, path)
        parts.append((obj, state))
    rng = global_rng() if restore_rng else None
    rng_state: Any = None
    if rng is not None:
        if "rng" not in trees:
            raise CheckpointError(f"{path}: restore_rng=True but the checkpoint holds no RNG state")
        rng_state = decode(trees["rng"], tensors, "rng", path)
        _check_rng_state(rng, rng_state, path)
    extra = decode(trees["extra"], tensors, "extra", path) if "extra" in trees else None

    # Apply; if any component rejects its state, put every one back as it was.
    snapshots = [(obj, snapshot(obj)) for obj, _ in parts]
    rng_before: Any = rng.bit_generator.state if rng is not None else None
    try:
        for obj, state in parts:
            obj.load_state_dict(state)
        if rng is not None:
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
