"""Hand-built hostile checkpoints: every malformed header, layout or metadata tree must raise
CheckpointError naming what is wrong and leave the model, the optimizer, the scheduler and sg's
RNG exactly as they were. The checksum is recomputed over each forged file, so the reader's
own validation is what catches them (a checksum is only sha256: anyone can forge one). A
hypothesis fuzzer then mutates a valid header's JSON values at random: only CheckpointError or
success may come out, never another exception."""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import steadygrad as sg
from steadygrad import nn, optim
from steadygrad.checkpoint import CheckpointError, load
from steadygrad.checkpoint import safetensors as st
from steadygrad.random import generator

JSON_META = ("model_spec", "model_layout", "optimizer", "scheduler", "rng", "extra")


def _targets(seed: int) -> tuple[Any, Any, Any]:
    """A small real model with BatchNorm buffers, Adam with state and a StepLR, after one step."""
    sg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x = np.random.default_rng(seed).standard_normal((6, 5)).astype(np.float32)
    loss = nn.CrossEntropyLoss()
    loss(model(x), np.array([0, 1, 2, 0, 1, 2]))
    model.backward(loss.backward())
    opt.step()
    sched.step()
    return model, opt, sched


def _state(model: Any, opt: Any, sched: Any) -> Any:
    return copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict(),
                          generator().bit_generator.state))


def _assert_equal(a: Any, b: Any, where: str = "state") -> None:
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=f"{where} changed")
        assert a.dtype == b.dtype, where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where} changed: {a!r} -> {b!r}"


@dataclass
class Forged:
    """A checkpoint taken apart: the header JSON (with its __metadata__), the metadata values
    that are JSON themselves (parsed), the data bytes; plus raw overrides for texts that
    cannot be built from Python values (deep nesting, invalid JSON, a wrong length field)."""

    header: Any
    inner: dict[str, Any]
    data: bytes
    raw_header: bytes | None = None
    raw_inner: dict[str, str] = field(default_factory=dict)
    length: int | None = None

    def entries(self) -> dict[str, Any]:
        return {k: v for k, v in self.header.items() if k != "__metadata__"}

    def to_bytes(self) -> bytes:
        hb = self.raw_header
        if hb is None:
            header = copy.deepcopy(self.header)
            meta = header.get("__metadata__") if isinstance(header, dict) else None
            if isinstance(meta, dict):
                meta = {k: v for k, v in meta.items() if k not in JSON_META and k != "checksum"}
                meta.update({k: json.dumps(v) for k, v in self.inner.items()})
                meta.update(self.raw_inner)
                if all(isinstance(v, str) for v in meta.values()):  # a valid checksum, forged
                    entries = {k: v for k, v in header.items() if k != "__metadata__"}
                    meta["checksum"] = st.checksum(entries, meta, self.data)
                header["__metadata__"] = meta
            hb = json.dumps(header).encode()
        return struct.pack("<Q", len(hb) if self.length is None else self.length) + hb + self.data

    def drop_tensor(self, name: str) -> None:
        """Removes a tensor and its bytes, keeping the layout valid."""
        lo, hi = self.header.pop(name)["data_offsets"]
        self.data = self.data[:lo] + self.data[hi:]
        for k, e in self.entries().items():
            if e["data_offsets"][0] >= hi:
                self.header[k]["data_offsets"] = [o - (hi - lo) for o in e["data_offsets"]]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Forged:
    path = tmp_path_factory.mktemp("hostile") / "c.safetensors"
    model, opt, sched = _targets(0)
    sg.save(path, model, opt, sched, extra={"epoch": 1, "t": (1, 2), "a": np.arange(3)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    inner = {k: json.loads(v) for k, v in header["__metadata__"].items() if k in JSON_META}
    return Forged(header, inner, raw[8 + n :])


def _load_rejects(tmp_path: Any, data: bytes, match: str | None) -> None:
    model, opt, sched = _targets(1)
    sg.manual_seed(77)
    before = _state(model, opt, sched)
    (tmp_path / "bad.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match=match) as e:
        load(tmp_path / "bad.safetensors", model, opt, sched, restore_rng=True)
    assert "bad.safetensors" in str(e.value)
    _assert_equal(before, _state(model, opt, sched))


def _set(f: Forged, name: str, key: str, value: Any) -> None:
    f.header[name][key] = value


def _raw(text: bytes) -> Callable[[Forged], None]:
    def edit(f: Forged) -> None:
        f.raw_header = text
    return edit


def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _overlap_bias(f: Forged) -> None:
    f.inner["model_layout"]["flat"][1][1] = 32  # 0.bias inside 0.weight (elements 0..40)


def _hole(f: Forged) -> None:
    last = max(f.entries(), key=lambda k: f.header[k]["data_offsets"][0])
    f.header[last]["data_offsets"] = [o + 8 for o in f.header[last]["data_offsets"]]
    f.data += bytes(8)


def _empty_inside(f: Forged) -> None:
    f.header["z"] = {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}


def _zero_times_huge(f: Forged) -> None:
    end = len(f.data)
    f.header["z"] = {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [end, end]}


def _as_float64(f: Forged) -> None:
    f.header["model.params"]["dtype"] = "F64"
    f.header["model.params"]["shape"] = [f.header["model.params"]["shape"][0] // 2]


def _square_params(f: Forged) -> None:
    f.header["model.params"]["shape"] = [12, 12]  # 144 elements, but 2-D


def _per_param_layout_without_tensors(f: Forged) -> None:
    f.inner["model_layout"] = {"flat": None}


def _opt_items(f: Forged) -> list:
    return f.inner["optimizer"]["state"]["__items__"]


CASES: list[tuple[str, Callable[[Forged], None], str | None]] = [
    # the header as a whole
    ("header is an array", _raw(b'["model.params"]'), "must start with '{'"),
    ("header is null", _raw(b"null"), "must start with '{'"),
    ("header starts with a space", _raw(b' {"__metadata__": {}}'), "must start with '{'"),
    ("header not UTF-8", _raw(b'{"\xff\xfe": 1}'), "not valid JSON"),
    ("header not JSON", _raw(b'{"a": }'), "not valid JSON"),
    ("header padded with NULs", _raw(b"{}\0\0\0"), "not valid JSON"),
    ("header nests 50000 deep", _raw(b'{"a": ' + _deep(50000).encode() + b"}"), "nests deeper than 64"),
    ("duplicate tensor name", _raw(b'{"x": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, '
                                   b'"x": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}'),
     "duplicate key 'x'"),
    ("NaN in the header", _raw(b'{"x": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 0]}}'),
     "NaN is not JSON"),
    ("a 5000-digit number", _raw(b'{"x": {"dtype": "U8", "shape": [' + b"9" * 5000 + b'], '
                                 b'"data_offsets": [0, 0]}}'), "not valid JSON"),
    ("length field past EOF", lambda f: setattr(f, "length", 10**6), "header length 1000000"),
    ("length field 2**63", lambda f: setattr(f, "length", 2**63), "header length"),
    ("length field 0", lambda f: setattr(f, "length", 0), "must start with '{'"),
    # one tensor entry
    ("entry is an array", lambda f: f.header.__setitem__("model.params", [0, 576]), "expected an object"),
    ("entry is a number", lambda f: f.header.__setitem__("model.params", 7), "expected an object"),
    ("entry lacks dtype", lambda f: f.header["model.params"].pop("dtype"), "expected exactly the keys"),
    ("entry has an extra key", lambda f: _set(f, "model.params", "crc", 1), "expected exactly the keys"),
    ("dtype BF16", lambda f: _set(f, "model.params", "dtype", "BF16"), "unknown dtype 'BF16'"),
    ("dtype lower case", lambda f: _set(f, "model.params", "dtype", "f32"), "unknown dtype 'f32'"),
    ("dtype a number", lambda f: _set(f, "model.params", "dtype", 32), "unknown dtype 32"),
    ("dtype a list", lambda f: _set(f, "model.params", "dtype", ["F32"]), "unknown dtype"),
    ("shape a string", lambda f: _set(f, "model.params", "shape", "144"), "shape must be a list"),
    ("shape null", lambda f: _set(f, "model.params", "shape", None), "shape must be a list"),
    ("shape negative", lambda f: _set(f, "model.params", "shape", [-144]), "shape must be a list"),
    ("shape -1 times -144", lambda f: _set(f, "model.params", "shape", [-1, -144]), "shape must be"),
    ("shape float", lambda f: _set(f, "model.params", "shape", [144.0]), "shape must be a list"),
    ("shape bool", lambda f: _set(f, "model.buffer.1.num_batches_tracked", "shape", [True]), "shape must"),
    ("shape 10**30", lambda f: _set(f, "model.params", "shape", [10**30]), "shape must be a list"),
    ("shape 40 dims", lambda f: _set(f, "model.buffer.1.num_batches_tracked", "shape", [1] * 40),
     "at most 32"),
    ("shape 0 x 2**62 x 2**62", _zero_times_huge, "too large for an array"),
    ("shape of the wrong size", lambda f: _set(f, "model.params", "shape", [143]),
     r"spans 576 bytes but F32\(143,\) needs 572"),
    ("offsets a string", lambda f: _set(f, "model.params", "data_offsets", "0,576"), "data_offsets must be"),
    ("offsets of length 3", lambda f: _set(f, "model.params", "data_offsets", [0, 288, 576]),
     "data_offsets must be"),
    ("offsets floats", lambda f: _set(f, "model.params", "data_offsets", [0.0, 576.0]), "data_offsets must be"),
    ("offsets strings", lambda f: _set(f, "model.params", "data_offsets", ["0", "576"]), "data_offsets must"),
    ("offsets negative", lambda f: _set(f, "model.params", "data_offsets", [-8, 568]), "data_offsets must"),
    ("offsets bools", lambda f: _set(f, "model.buffer.1.num_batches_tracked", "data_offsets", [False, True]),
     "data_offsets must"),
    ("begin > end", lambda f: _set(f, "model.params", "data_offsets", [576, 0]), "begin <= end"),
    ("offsets past EOF", lambda f: _set(f, "model.params", "data_offsets", [0, 10**12]), "begin <= end <="),
    ("offsets 10**30", lambda f: _set(f, "model.params", "data_offsets", [10**30, 10**30 + 576]),
     "begin <= end <="),
    ("two tensors on the same bytes", lambda f: _set(f, "model.buffer.1.running_var", "data_offsets",
                                                     f.header["model.buffer.1.running_mean"]["data_offsets"]),
     "overlaps the tensor before it"),
    ("an empty tensor inside another", _empty_inside, "overlaps the tensor before it"),
    ("a hole between tensors", _hole, "leaves a hole of 8 bytes"),
    ("bytes after the last tensor", lambda f: setattr(f, "data", f.data + bytes(8)), "the tensors cover"),
    ("params stored as float64", _as_float64, "holds float64 in the checkpoint but the model.s parameters are float32"),
    ("params stored 2-D", _square_params, r"'model.params' should be 1-D, got shape \(12, 12\)"),
    ("a buffer of the wrong dtype", lambda f: _set(f, "model.buffer.1.num_batches_tracked", "dtype", "F64"),
     "float64.*in the checkpoint but int64"),
    ("a buffer missing", lambda f: f.drop_tensor("model.buffer.1.running_var"),
     "missing key 'model.buffer.1.running_var'"),
    ("an optimizer tensor missing", lambda f: f.drop_tensor("optimizer.state.0.exp_avg"),
     "missing tensor 'optimizer.state.0.exp_avg'"),
    # __metadata__
    ("metadata an array", lambda f: f.header.__setitem__("__metadata__", ["format"]),
     "__metadata__ must be an object, got an array"),
    ("metadata a string", lambda f: f.header.__setitem__("__metadata__", "x"), "__metadata__ must be an object"),
    ("metadata null", lambda f: f.header.__setitem__("__metadata__", None), "not a steadygrad checkpoint"),
    ("metadata value a number", lambda f: f.header["__metadata__"].__setitem__("format_version", 1),
     "must map str to str, 'format_version' holds a number"),
    ("metadata value an object", lambda f: f.header["__metadata__"].__setitem__("fingerprint", {}),
     "'fingerprint' holds an object"),
    ("format missing", lambda f: f.header["__metadata__"].pop("format"), "not a steadygrad checkpoint"),
    ("format version 2", lambda f: f.header["__metadata__"].__setitem__("format_version", "2"),
     "format version '2'"),
    ("fingerprint edited", lambda f: f.header["__metadata__"].__setitem__("fingerprint", "0" * 32),
     "'model_spec' does not match the fingerprint"),
    # metadata values that are JSON
    ("model_spec not JSON", lambda f: f.raw_inner.__setitem__("model_spec", "{"),
     "metadata 'model_spec' is not valid JSON"),
    ("model_spec nests 10**5 deep", lambda f: f.raw_inner.__setitem__("model_spec", _deep(10**5)),
     "'model_spec' nests deeper than 64"),
    ("model_spec a list", lambda f: f.inner.__setitem__("model_spec", []), "does not match the fingerprint"),
    ("model_spec missing", lambda f: f.inner.pop("model_spec"), "missing 'model_spec'"),
    ("model_layout missing", lambda f: f.inner.pop("model_layout"), "missing 'model_layout'"),
    ("model_layout a list", lambda f: f.inner.__setitem__("model_layout", [1]), "'model_layout': expected"),
    ("model_layout flat a string", lambda f: f.inner["model_layout"].__setitem__("flat", "x"),
     "'model_layout': expected"),
    ("layout entry short", lambda f: f.inner["model_layout"]["flat"].__setitem__(0, ["0.weight", 0]),
     r"parameter '0.weight' should be \['0.weight', offset, \[8, 5\]\]"),
    ("layout entries swapped", lambda f: f.inner["model_layout"]["flat"].reverse(), "should be"),
    ("layout entry missing", lambda f: f.inner["model_layout"]["flat"].pop(), "5 entries for 6 parameters"),
    ("layout offset negative", lambda f: f.inner["model_layout"]["flat"][0].__setitem__(1, -1), "should be"),
    ("layout offset float", lambda f: f.inner["model_layout"]["flat"][0].__setitem__(1, 0.0), "should be"),
    ("layout offset bool", lambda f: f.inner["model_layout"]["flat"][0].__setitem__(1, False), "should be"),
    ("layout offset 10**30", lambda f: f.inner["model_layout"]["flat"][5].__setitem__(1, 10**30),
     "'3.bias' lies outside 'model.params'"),
    ("layout shape transposed", lambda f: f.inner["model_layout"]["flat"][0].__setitem__(2, [5, 8]),
     "should be"),
    ("layout parameters overlap", _overlap_bias, "'0.bias' overlaps '0.weight'"),
    ("per-parameter layout, no tensors", _per_param_layout_without_tensors, "missing key 'model.param.0.weight'"),
    ("optimizer not JSON", lambda f: f.raw_inner.__setitem__("optimizer", "{'state': 1}"),
     "'optimizer' is not valid JSON"),
    ("optimizer nests deep", lambda f: f.raw_inner.__setitem__("optimizer", _deep(3000)), "nests deeper"),
    ("optimizer a list", lambda f: f.inner.__setitem__("optimizer", []), "optimizer should be a dict"),
    ("optimizer __items__ a number", lambda f: f.inner["optimizer"]["state"].__setitem__("__items__", 5),
     r"optimizer\['state'\]\['__items__'\] should be a list"),
    ("optimizer item not a pair", lambda f: _opt_items(f).__setitem__(0, [0]), r"\[key, value\] pair"),
    ("optimizer item key an object", lambda f: _opt_items(f)[0].__setitem__(0, {"a": 1}), r"\[key, value\]"),
    ("optimizer tensor ref a number", lambda f: _opt_items(f)[0][1].__setitem__("exp_avg", {"__tensor__": 3}),
     "missing tensor 3"),
    ("optimizer tensor ref unknown", lambda f: _opt_items(f)[0][1]["exp_avg"].__setitem__("__tensor__", "no"),
     "missing tensor 'no'"),
    ("optimizer encoded forms mixed", lambda f: _opt_items(f)[0][1]["exp_avg"].__setitem__("x", 1),
     "mixes '__tensor__' with other keys"),
    ("optimizer step infinite", lambda f: f.raw_inner.__setitem__(
        "optimizer", json.dumps(f.inner["optimizer"]).replace('"step": 1.0', '"step": 1e400', 1)),
     "could not restore the state.*nothing was changed"),
    ("optimizer step negative", lambda f: _opt_items(f)[0][1].__setitem__("step", -1.0),
     "could not restore the state.*nothing was changed"),
    ("optimizer lr a string", lambda f: f.inner["optimizer"]["param_groups"][0].__setitem__("lr", "fast"),
     r"optimizer\['param_groups'\]\[0\]\['lr'\] is a string in the checkpoint"),
    ("optimizer param_groups empty", lambda f: f.inner["optimizer"].__setitem__("param_groups", []),
     "has 0 entries, 1 in memory"),
    ("optimizer type", lambda f: f.header["__metadata__"].__setitem__("optimizer_type", "SGD"),
     "saved from SGD, cannot load it into Adam"),
    ("optimizer state missing", lambda f: f.inner.pop("optimizer"), "holds no optimizer state"),
    ("scheduler last_epoch a string", lambda f: f.inner["scheduler"].__setitem__("last_epoch", "1"),
     "last_epoch'\\] is a string"),
    ("scheduler a number", lambda f: f.inner.__setitem__("scheduler", 3), "scheduler should be a dict"),
    ("rng state garbage", lambda f: f.inner["rng"]["state"].__setitem__("state", "x"), "corrupted RNG state"),
    ("rng another generator", lambda f: f.inner["rng"].__setitem__("bit_generator", "MT19937"),
     "corrupted RNG state"),
    ("rng a list", lambda f: f.inner.__setitem__("rng", [1, 2]), "corrupted RNG state"),
    ("rng missing", lambda f: f.inner.pop("rng"), "holds no RNG state"),
    ("extra nests deep", lambda f: f.raw_inner.__setitem__("extra", _deep(100)), "'extra' nests deeper"),
    ("extra __tuple__ a number", lambda f: f.inner["extra"].__setitem__("t", {"__tuple__": 5}),
     r"extra\['t'\]\['__tuple__'\] should be a list"),
    ("extra tensor ref a list", lambda f: f.inner["extra"].__setitem__("a", {"__tensor__": []}),
     "missing tensor"),
]


@pytest.mark.parametrize(("edit", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_file_raises_checkpoint_error_and_changes_nothing(tmp_path, template, edit, match):
    forged = copy.deepcopy(template)
    edit(forged)
    _load_rejects(tmp_path, forged.to_bytes(), match)


def test_the_untouched_template_loads(tmp_path, template):
    """The forging itself is sound: rebuilt without edits, the file loads (so each case above
    fails for its edit alone)."""
    (tmp_path / "ok.safetensors").write_bytes(copy.deepcopy(template).to_bytes())
    model, opt, sched = _targets(1)
    extra = load(tmp_path / "ok.safetensors", model, opt, sched, restore_rng=True)
    assert extra["epoch"] == 1 and extra["t"] == (1, 2)
    np.testing.assert_array_equal(extra["a"], np.arange(3))
    saved, _, _ = _targets(0)
    _assert_equal(saved.state_dict(), model.state_dict())


def test_nesting_depth_counts_brackets_outside_strings_only():
    assert st.nesting_depth(b"") == 0 and st.nesting_depth(b"3") == 0
    assert st.nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert st.nesting_depth(b'{"[[[[": "]]]]{{"}') == 1
    assert st.nesting_depth(b'["\\"[[[", "\\\\", [1]]') == 2  # escaped quote and backslash
    assert st.nesting_depth(b'["unterminated [[[[') == 1
    big = b"[" * 5_000_000 + b"]" * 5_000_000  # spans several chunks
    assert st.nesting_depth(big) == 5_000_000


# -- fuzzing ----------------------------------------------------------------------------------------
_LEAVES = (hs.none() | hs.booleans() | hs.integers(-3, 2000) | hs.integers(-(2**70), 2**70)
           | hs.sampled_from([2**63, 2**64, 10**30, 1e400]) | hs.floats(allow_nan=True)
           | hs.text(max_size=6)
           | hs.sampled_from(["F32", "I64", "BF16", "model.params", "optimizer.state.0.exp_avg", "PCG64"]))
_KEYS = hs.text(max_size=6) | hs.sampled_from(["__tensor__", "__items__", "__tuple__", "dtype", "shape",
                                               "data_offsets", "flat", "state", "param_groups"])
_VALUES = hs.recursive(_LEAVES, lambda c: hs.lists(c, max_size=4) | hs.dictionaries(_KEYS, c, max_size=4),
                       max_leaves=8)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON tree, containers first."""
    out: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append((node, k))
        out.extend(_slots(v))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hs.data())
def test_fuzzed_header_values_raise_only_checkpoint_error(tmp_path, template, data):
    forged = copy.deepcopy(template)
    root = {"header": forged.header, "inner": forged.inner}
    for _ in range(data.draw(hs.integers(1, 3), label="mutations")):
        slots = [s for s in _slots(root) if s[0] is not root]
        node, key = data.draw(hs.sampled_from(slots), label="where")
        op = data.draw(hs.sampled_from(["replace", "replace", "delete", "rename"]), label="op")
        if op == "replace" or isinstance(node, list):
            node[key] = data.draw(_VALUES, label="value")
        elif op == "delete":
            del node[key]
        else:
            node[data.draw(_KEYS, label="new key")] = node.pop(key)
    (tmp_path / "fuzz.safetensors").write_bytes(forged.to_bytes())
    model, opt, sched = _targets(1)
    before = _state(model, opt, sched)
    try:
        load(tmp_path / "fuzz.safetensors", model, opt, sched, restore_rng=data.draw(hs.booleans()))
    except CheckpointError:
        _assert_equal(before, _state(model, opt, sched))
