"""The safetensors container, written and read with numpy alone: an 8-byte little-endian
header length, a JSON header ({name: {dtype, shape, data_offsets}}, "__metadata__": {str: str}),
then the raw little-endian tensor bytes. Atomic writes; integrity checks on read. No pickle."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from typing import BinaryIO

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {dt.newbyteorder("<") if dt.itemsize > 1 else dt: name for name, dt in _DTYPES.items()}
_MAX_HEADER = 100_000_000  # the reference implementation's limit


class FormatError(ValueError):
    """The file is not a readable safetensors file (truncated, corrupted, malformed)."""


def dtype_name(dt: np.dtype) -> str:
    key = np.dtype(dt).newbyteorder("<") if np.dtype(dt).itemsize > 1 else np.dtype(dt)
    try:
        return _NAMES[key]
    except KeyError:
        raise TypeError(f"safetensors: dtype {dt} has no safetensors equivalent") from None


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def checksum(entries: dict[str, dict], metadata: dict[str, str], data: bytes | memoryview) -> str:
    """sha256 over the canonical JSON of the tensor table and metadata (minus the checksum
    itself) and over the data bytes: any flipped byte in header or data changes it."""
    h = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != "checksum"}
    h.update(canonical({"tensors": entries, "metadata": meta}))
    h.update(data)
    return h.hexdigest()


def _layout(tensors: dict[str, np.ndarray]) -> tuple[dict[str, dict], list[np.ndarray], int]:
    entries: dict[str, dict] = {}
    arrays: list[np.ndarray] = []
    offset = 0
    for name, arr in tensors.items():
        a = np.asarray(arr)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")  # (np.ascontiguousarray would turn a 0-d scalar into 1-d)
        if a.dtype.itemsize > 1 and a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        entries[name] = {
            "dtype": dtype_name(a.dtype),
            "shape": [int(s) for s in a.shape],
            "data_offsets": [offset, offset + a.nbytes],
        }
        arrays.append(a)
        offset += a.nbytes
    return entries, arrays, offset


def write(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Writes atomically: a temporary file in the target directory, fsync, os.replace, fsync of
    the directory, so a crash leaves either the old file or the complete new one."""
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"safetensors: metadata must map str to str, got {k!r}: {type(v).__name__}")
    entries, arrays, total = _layout(tensors)
    data_hash_src = b"".join(memoryview(a).cast("B") for a in arrays) if arrays else b""
    meta = dict(metadata)
    meta["checksum"] = checksum(entries, meta, data_hash_src)
    header = dict(entries)
    header["__metadata__"] = meta
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)  # the data section starts 8-byte aligned, as upstream

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(hbytes)))
            f.write(hbytes)
            f.write(data_hash_src)
            assert f.tell() == 8 + len(hbytes) + total
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory fds (Windows): the rename is still atomic
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _read_exact(f: BinaryIO, n: int, what: str, path: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise FormatError(f"{path}: truncated file: expected {n} bytes of {what}, got {len(b)}")
    return b


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads every tensor (copied, writeable, native order) and the metadata; verifies the
    layout (no gaps, overlaps or overruns), the file length and the checksum if present."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", _read_exact(f, 8, "header length", path))
        if n > _MAX_HEADER or 8 + n > size:
            raise FormatError(
                f"{path}: truncated or corrupted file: header length {n} but the file has {size} bytes"
            )
        try:
            header = json.loads(_read_exact(f, n, "header", path).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{path}: corrupted header (not valid JSON): {e}") from None
        if not isinstance(header, dict):
            raise FormatError(f"{path}: corrupted header: expected a JSON object")
        metadata = header.pop("__metadata__", {}) or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise FormatError(f"{path}: corrupted header: __metadata__ must map str to str")
        entries = _check_entries(header, path)
        data_len = max((e["data_offsets"][1] for e in entries.values()), default=0)
        if size != 8 + n + data_len:
            raise FormatError(
                f"{path}: truncated or corrupted file: header describes {8 + n + data_len} bytes, "
                f"the file has {size}"
            )
        data = _read_exact(f, data_len, "tensor data", path)
    if "checksum" in metadata and checksum(entries, metadata, data) != metadata["checksum"]:
        raise FormatError(f"{path}: checksum mismatch: the file is corrupted")
    tensors = {}
    for name, e in entries.items():
        lo, hi = e["data_offsets"]
        dt = _DTYPES[e["dtype"]]
        arr = np.frombuffer(data, dtype=dt, count=(hi - lo) // dt.itemsize, offset=lo)
        tensors[name] = arr.astype(dt.newbyteorder("="), copy=True).reshape(e["shape"])
    return tensors, metadata


def _check_entries(header: dict, path: str) -> dict[str, dict]:
    spans = []
    for name, e in header.items():
        ok = (
            isinstance(e, dict)
            and e.get("dtype") in _DTYPES
            and isinstance(e.get("shape"), list)
            and all(isinstance(s, int) and s >= 0 for s in e["shape"])
            and isinstance(e.get("data_offsets"), list)
            and len(e["data_offsets"]) == 2
            and all(isinstance(o, int) for o in e["data_offsets"])
        )
        if not ok:
            raise FormatError(f"{path}: corrupted header entry for tensor {name!r}: {e!r}")
        lo, hi = e["data_offsets"]
        nbytes = int(np.prod(e["shape"], dtype=np.int64)) * _DTYPES[e["dtype"]].itemsize
        if lo < 0 or hi - lo != nbytes:
            raise FormatError(
                f"{path}: corrupted header: tensor {name!r} spans {hi - lo} bytes but "
                f"{e['dtype']}{tuple(e['shape'])} needs {nbytes}"
            )
        spans.append((lo, hi, name))
    pos = 0
    for lo, hi, name in sorted(spans):
        if lo != pos:
            raise FormatError(f"{path}: corrupted header: tensor {name!r} starts at {lo}, expected {pos}")
        pos = hi
    return header
