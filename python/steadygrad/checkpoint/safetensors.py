"""The safetensors container, written and read with numpy alone: an 8-byte little-endian
header length, a JSON header ({name: {dtype, shape, data_offsets}}, "__metadata__": {str: str}),
then the raw little-endian tensor bytes. Atomic writes; integrity checks on read. No pickle.

Reading treats the file as hostile and follows the format's rules whether or not a checksum is
present: the header is a JSON object that starts with "{", at most 100 MB and MAX_DEPTH deep,
without duplicate keys; every entry has exactly a known dtype, a shape of non-negative ints and a
[begin, end] pair of ints with begin <= end inside the file; each entry's bytes match its
shape times its itemsize; and the entries tile the data section exactly (no overlap, no hole,
nothing after the last one)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import socket
import struct
import tempfile
from typing import Any, BinaryIO

import numpy as np

_DTYPES: dict[str, np.dtype] = {
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
MAX_DEPTH = 64  # JSON nesting accepted (the header needs 3; json.loads recurses, ~1000 breaks it)
_MAX_NDIM = 32  # numpy 1.x's limit (2.x allows 64)
_MAX_BYTES = 2**63 - 1  # numpy's limit on an array's size in bytes
_ENTRY_KEYS = ("dtype", "shape", "data_offsets")


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


def checksum(entries: dict[str, dict[str, Any]], metadata: dict[str, str], data: bytes | memoryview) -> str:
    """sha256 over the canonical JSON of the tensor table and metadata (minus the checksum
    itself) and over the data bytes: any flipped byte in header or data changes it."""
    h = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != "checksum"}
    h.update(canonical({"tensors": entries, "metadata": meta}))
    h.update(data)
    return h.hexdigest()


# -- bounded JSON -----------------------------------------------------------------------------
# A JSON string, closed or running to the end (so a match never fails and never backtracks).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.S)
_CHUNK = 1 << 22


def nesting_depth(text: bytes) -> int:
    """How deep the brackets of a JSON text nest, counted outside strings, in linear time and
    without recursion (so a hostile text cannot exhaust the stack of the parser after it)."""
    skeleton = np.frombuffer(_JSON_STRING.sub(b'""', text), np.uint8)
    depth = deepest = 0
    for lo in range(0, skeleton.size, _CHUNK):
        c = skeleton[lo : lo + _CHUNK]
        step = (c == 0x5B).astype(np.int64) + (c == 0x7B) - (c == 0x5D) - (c == 0x7D)
        run = np.cumsum(step) + depth
        deepest = max(deepest, int(run.max()))
        depth = int(run[-1])
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes, what: str, *, allow_nan: bool = False) -> Any:
    """json.loads bounded to MAX_DEPTH, rejecting duplicate keys (and NaN/Infinity unless
    allow_nan: Python's json.dumps writes them for non-finite floats). `what` names the text
    in the FormatError raised on any failure."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if nesting_depth(raw) > MAX_DEPTH:
        raise FormatError(f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text if isinstance(text, str) else text.decode("utf-8"),
                          object_pairs_hook=_no_duplicates,
                          parse_constant=None if allow_nan else _no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise FormatError(f"{what} is not valid JSON: {e}") from None


# -- write ------------------------------------------------------------------------------------
def _layout(tensors: dict[str, np.ndarray]) -> tuple[dict[str, dict[str, Any]], list[np.ndarray], int]:
    entries: dict[str, dict[str, Any]] = {}
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


# Temporary files are named after the target, this host and the writing process:
# ".<target>.<host>-<pid>.<random>.tmp". A writer killed mid-save (SIGKILL, OOM killer) leaves its
# temporary behind; the next save of the same target deletes those whose pid no longer exists.
# Why a pid in the name rather than a lock: a lock (flock) is taken after the file exists, so a
# cleaner could see a fresh temporary unlocked and delete it under its writer; a pid is true
# from the moment the file is created, needs no fcntl, and a recycled pid only means a stale
# file is kept a while longer, never that a live writer's file is deleted. The host name keeps
# a directory shared between machines (NFS) safe: only this host's pids are judged (containers
# sharing a volume have their own PID namespaces but, normally, their own host names too).
# The random part is tempfile.mkstemp's ([a-z0-9_]); the pattern below matches exactly that form.
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def _writer_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False  # another thread of this process may be saving the same target
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: alive, another user's; others: keep it
        return False
    return False


def remove_stale_temporaries(path: str) -> list[str]:
    """Deletes the temporaries of `path` left by writers of this host that no longer run;
    returns their names. Best effort: what cannot be listed or deleted is left."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    directory = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(path)}.{_host()}-") + r"(\d+)\.[a-z0-9_]+\.tmp")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        m = pattern.fullmatch(name)
        if m is not None and _writer_gone(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
                removed.append(name)
    return removed


def write(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Writes atomically: a temporary file in the target directory, fsync, os.replace, fsync of
    the directory, so a crash leaves either the old file or the complete new one (and the next
    write of the same target removes the crashed writer's temporary)."""
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"safetensors: metadata must map str to str, got {k!r}: {type(v).__name__}")
    entries, arrays, total = _layout(tensors)
    data_hash_src = b"".join(a.data.cast("B") for a in arrays) if arrays else b""
    meta = dict(metadata)
    meta["checksum"] = checksum(entries, meta, data_hash_src)
    header = dict(entries)
    header["__metadata__"] = meta
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)  # the data section starts 8-byte aligned, as upstream

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file name", path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, f"cannot write {path}: no such directory", directory)
    remove_stale_temporaries(path)
    prefix = f".{os.path.basename(path)}.{_host()}-{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
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


# -- read -------------------------------------------------------------------------------------
def _read_exact(f: BinaryIO, n: int, what: str, path: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise FormatError(f"{path}: truncated file: expected {n} bytes of {what}, got {len(b)}")
    return b


def read(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads every tensor (copied, writeable, native order) and the metadata; validates the
    header and the layout (see the module docstring), then the checksum if present."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", _read_exact(f, 8, "header length", path))
        if n > _MAX_HEADER or 8 + n > size:
            raise FormatError(
                f"{path}: truncated or corrupted file: header length {n} but the file has {size} bytes"
                + (f" (at most {_MAX_HEADER} accepted)" if n > _MAX_HEADER else "")
            )
        raw = _read_exact(f, n, "header", path)
        if raw[:1] != b"{":
            raise FormatError(f"{path}: corrupted header: it must start with '{{', got {raw[:1]!r}")
        header = loads(raw, f"{path}: corrupted header")
        if not isinstance(header, dict):
            raise FormatError(f"{path}: corrupted header: expected a JSON object, got {kind(header)}")
        metadata = header.pop("__metadata__", None)
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise FormatError(f"{path}: corrupted header: __metadata__ must be an object, "
                              f"got {kind(metadata)}")
        bad = next(((k, v) for k, v in metadata.items() if not isinstance(v, str)), None)
        if bad is not None:
            raise FormatError(f"{path}: corrupted header: __metadata__ must map str to str, "
                              f"{bad[0]!r} holds {kind(bad[1])}")
        data_len = size - 8 - n
        _check_entries(header, data_len, path)
        data = _read_exact(f, data_len, "tensor data", path)
    if "checksum" in metadata and checksum(header, metadata, data) != metadata["checksum"]:
        raise FormatError(f"{path}: checksum mismatch: the file is corrupted")
    tensors = {}
    for name, e in header.items():
        lo, hi = e["data_offsets"]
        dt = _DTYPES[e["dtype"]]
        arr = np.frombuffer(data, dtype=dt, count=(hi - lo) // dt.itemsize, offset=lo)
        tensors[name] = arr.astype(dt.newbyteorder("="), copy=True).reshape(e["shape"])
    return tensors, metadata


def kind(v: Any) -> str:
    """What a parsed JSON value is, in words (for error messages)."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")


def is_index(v: Any) -> bool:
    """A JSON value usable as a size or an offset: an int >= 0 (bool excluded)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_entries(header: dict[str, Any], data_len: int, path: str) -> None:
    """Every entry well-typed and inside the data section; together they tile it exactly."""
    spans = []
    for name, e in header.items():
        where = f"{path}: corrupted header: tensor {name!r}"
        if not isinstance(e, dict):
            raise FormatError(f"{where}: expected an object with {list(_ENTRY_KEYS)}, got {kind(e)}")
        if sorted(e) != sorted(_ENTRY_KEYS):
            raise FormatError(f"{where}: expected exactly the keys {list(_ENTRY_KEYS)}, got {list(e)}")
        dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise FormatError(f"{where}: unknown dtype {dtype!r} (this reader knows {list(_DTYPES)})")
        if (not isinstance(shape, list) or len(shape) > _MAX_NDIM
                or not all(is_index(s) and s <= _MAX_BYTES for s in shape)):
            raise FormatError(f"{where}: shape must be a list of at most {_MAX_NDIM} non-negative "
                              f"ints, got {short(shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_index(o) for o in offsets)):
            raise FormatError(f"{where}: data_offsets must be [begin, end], two non-negative ints, "
                              f"got {short(offsets)}")
        lo, hi = offsets
        if lo > hi or hi > data_len:
            raise FormatError(f"{where}: data_offsets [{short(lo)}, {short(hi)}] must satisfy "
                              f"begin <= end <= {data_len} (the size of the data section)")
        itemsize = _DTYPES[dtype].itemsize
        if math.prod(s for s in shape if s) * itemsize > _MAX_BYTES:
            raise FormatError(f"{where}: shape {short(shape)} is too large for an array")
        nbytes = math.prod(shape) * itemsize
        if hi - lo != nbytes:
            raise FormatError(f"{where}: spans {hi - lo} bytes but {dtype}{tuple(shape)} needs {nbytes}")
        spans.append((lo, hi, name))
    pos = 0
    for lo, hi, name in sorted(spans):
        if lo != pos:
            what = "overlaps the tensor before it" if lo < pos else f"leaves a hole of {lo - pos} bytes"
            raise FormatError(f"{path}: corrupted header: tensor {name!r} starts at byte {lo} and "
                              f"{what} (tensors must tile the data section)")
        pos = hi
    if pos != data_len:
        raise FormatError(f"{path}: truncated or corrupted file: the tensors cover {pos} bytes, "
                          f"the data section has {data_len}")


def short(v: Any, limit: int = 80) -> str:
    """repr(v), cut to `limit` characters (hostile values can be huge)."""
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."
