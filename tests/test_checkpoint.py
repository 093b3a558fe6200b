"""Checkpoints: safetensors layout, round trips, atomic writes, and every way a load can fail
(truncation, corruption, wrong model, missing key, a component rejecting its state) leaving
the model and optimizer in memory bitwise untouched."""

from __future__ import annotations

import itertools
import json
import os
import struct

import numpy as np
import pytest
from train_fakes import FakeLinear, FakeReLU, FakeSequential, FakeSGD, FakeStepLR, RunningStat, mlp

from steadygrad.checkpoint import CheckpointError, load, save
from steadygrad.checkpoint import safetensors as st


def _trained(seed: int = 0):
    model = mlp([6, 10, 4], seed=seed)
    opt = FakeSGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        opt.zero_grad()
        x = rng.standard_normal((5, 6)).astype(np.float32)
        model.backward(model(x) - 1.0)
        opt.step()
    return model, opt


def _snapshot(model, opt):
    return ({k: v.copy() for k, v in model.state_dict().items()},
            json.dumps({k: v for k, v in opt.state_dict().items() if k != "state"}),
            opt.state_dict()["state"]["momentum_buffer"].copy(), opt.step_count)


def _assert_same(before, after):
    (m0, g0, b0, s0), (m1, g1, b1, s1) = before, after
    assert m0.keys() == m1.keys()
    for k in m0:
        np.testing.assert_array_equal(m0[k], m1[k], err_msg=f"model entry {k} changed")
    assert g0 == g1 and s0 == s1
    np.testing.assert_array_equal(b0, b1)


def test_file_is_safetensors_layout(tmp_path):
    model, opt = _trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt, extra={"note": "hi", "arr": np.arange(5, dtype=np.int64)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and len(raw) >= 8 + n
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "steadygrad.checkpoint" and meta["format_version"] == "1"
    assert len(meta["fingerprint"]) == 32 and len(meta["checksum"]) == 64
    spans = sorted(e["data_offsets"] for e in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    flat = header["model.params"]
    assert flat["dtype"] == "F32" and len(flat["shape"]) == 1  # one flat parameter array
    got = np.frombuffer(raw, dtype="<f4", count=flat["shape"][0], offset=8 + n + flat["data_offsets"][0])
    np.testing.assert_array_equal(got, model.parameters()[0].storage.data)


def test_readable_by_the_safetensors_package(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")  # in the test extras
    model, opt = _trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt)
    tensors = sn.load_file(str(path))
    np.testing.assert_array_equal(tensors["model.params"], model.parameters()[0].storage.data)
    np.testing.assert_array_equal(tensors["optimizer.state.momentum_buffer"], opt.buf)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["format"] == "steadygrad.checkpoint"


def test_reads_files_written_by_the_safetensors_package(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    a = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([1, -2], np.int64),
         "z": np.zeros((0, 3), np.float64)}
    sn.save_file(a, str(tmp_path / "u.safetensors"), metadata={"k": "v"})
    tensors, meta = st.read(tmp_path / "u.safetensors")
    assert meta == {"k": "v"}
    for k in a:
        np.testing.assert_array_equal(tensors[k], a[k])
        assert tensors[k].dtype == a[k].dtype


def test_round_trip_restores_everything_bitwise(tmp_path):
    model, opt = _trained(0)
    sched = FakeStepLR(opt, step_size=2)
    sched.step()
    sched.step()
    sched.step()
    extra = {"epoch": 3, "nested": {"t": (1, 2.5, None), "a": np.ones((2, 2), np.float32)}, "s": "x"}
    save(tmp_path / "c.safetensors", model, opt, sched, extra=extra)

    model2, opt2 = _trained(1)
    sched2 = FakeStepLR(opt2, step_size=7)
    got = load(tmp_path / "c.safetensors", model2, opt2, sched2)
    _assert_same(_snapshot(model, opt), _snapshot(model2, opt2))
    assert sched2.state_dict() == sched.state_dict()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.05
    assert got["epoch"] == 3 and got["s"] == "x" and got["nested"]["t"] == (1, 2.5, None)
    np.testing.assert_array_equal(got["nested"]["a"], extra["nested"]["a"])


def test_buffers_are_saved(tmp_path):
    rng = np.random.default_rng(0)
    model = FakeSequential(FakeLinear(3, 4, rng), RunningStat(4))
    model(rng.standard_normal((8, 3)).astype(np.float32))
    save(tmp_path / "c.safetensors", model)
    other = FakeSequential(FakeLinear(3, 4, np.random.default_rng(5)), RunningStat(4))
    load(tmp_path / "c.safetensors", other)
    np.testing.assert_array_equal(other._modules["1"].running_var, model._modules["1"].running_var)


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    model, opt = _trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="cannot store object"):
        save(path, model, opt, extra={"bad": object()})
    assert path.read_bytes() == before  # the old checkpoint survives a failed save
    assert os.listdir(tmp_path) == ["c.safetensors"]


def _corrupt_cases(raw: bytes):
    (n,) = struct.unpack("<Q", raw[:8])
    yield "empty", b""
    yield "cut in length", raw[:5]
    yield "cut in header", raw[: 8 + n // 2]
    yield "cut in data", raw[: len(raw) - 7]
    yield "extra bytes", raw + b"\0"
    yield "huge length", struct.pack("<Q", 2**40) + raw[8:]
    flipped = bytearray(raw)
    flipped[len(raw) - 3] ^= 0x10
    yield "flipped data byte", bytes(flipped)
    header = raw[8 : 8 + n].replace(b'FakeSGD', b'FakeSGX')
    assert header != raw[8 : 8 + n]
    yield "edited metadata", raw[:8] + header + raw[8 + n :]
    yield "garbage header", raw[:8] + b"{" * n + raw[8 + n :]


def test_corrupted_files_raise_and_change_nothing(tmp_path):
    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    raw = (tmp_path / "c.safetensors").read_bytes()
    model2, opt2 = _trained(1)
    before = _snapshot(model2, opt2)
    for name, data in _corrupt_cases(raw):
        (tmp_path / "bad.safetensors").write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load(tmp_path / "bad.safetensors", model2, opt2)
        assert "bad.safetensors" in str(e.value), name
        _assert_same(before, _snapshot(model2, opt2))


def test_different_model_is_rejected_naming_the_difference(tmp_path):
    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    wider = mlp([6, 11, 4], seed=3)
    before = {k: v.copy() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"different model .*params #0.*\[10, 6\].*\[11, 6\]"):
        load(tmp_path / "c.safetensors", wider)
    for k, v in wider.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    rng = np.random.default_rng(0)
    same_shapes_other_type = FakeSequential(FakeLinear(6, 10, rng), RunningStat(10), FakeLinear(10, 4, rng))
    with pytest.raises(CheckpointError, match="different model"):
        load(tmp_path / "c.safetensors", same_shapes_other_type)


def test_missing_key_and_missing_parts(tmp_path):
    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    tensors, meta = st.read(tmp_path / "c.safetensors")
    del tensors["optimizer.state.momentum_buffer"]
    meta.pop("checksum")
    st.write(tmp_path / "m.safetensors", tensors, meta)  # a valid file that lacks a tensor
    model2, opt2 = _trained(1)
    before = _snapshot(model2, opt2)
    with pytest.raises(CheckpointError, match=r"missing tensor 'optimizer\.state\.momentum_buffer'"):
        load(tmp_path / "m.safetensors", model2, opt2)
    _assert_same(before, _snapshot(model2, opt2))

    save(tmp_path / "w.safetensors", model)  # weights only
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load(tmp_path / "w.safetensors", model2, opt2)
    _assert_same(before, _snapshot(model2, opt2))


def test_wrong_version_and_wrong_optimizer_type(tmp_path):
    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    tensors, meta = st.read(tmp_path / "c.safetensors")
    meta.pop("checksum")
    meta["format_version"] = "99"
    st.write(tmp_path / "v.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="format version '99'"):
        load(tmp_path / "v.safetensors", model)

    class OtherSGD(FakeSGD):
        pass

    model2, _ = _trained(1)
    with pytest.raises(CheckpointError, match="saved from FakeSGD, cannot load it into OtherSGD"):
        load(tmp_path / "c.safetensors", model2, OtherSGD(model2.parameters()))


def test_component_failing_half_way_is_rolled_back(tmp_path):
    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)

    class Flaky(FakeSGD):
        def load_state_dict(self, sd):
            self.buf[...] = sd["state"]["momentum_buffer"]  # partly applied ...
            if self.buf[0] != 7.0:
                raise RuntimeError("boom")  # ... then fails (it accepts only its own state back)

    model2, _ = _trained(1)
    opt2 = Flaky(model2.parameters(), lr=0.1)
    opt2.buf[...] = 7.0
    before = _snapshot(model2, opt2)
    tensors, meta = st.read(tmp_path / "c.safetensors")
    meta.pop("checksum")
    meta["optimizer_type"] = "Flaky"
    st.write(tmp_path / "f.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match=r"RuntimeError: boom.*nothing was changed"):
        load(tmp_path / "f.safetensors", model2, opt2)
    _assert_same(before, _snapshot(model2, opt2))


def test_per_parameter_layout_when_not_flat(tmp_path):
    rng = np.random.default_rng(0)
    model = FakeSequential(FakeLinear(3, 2, rng), FakeReLU())
    from steadygrad.nn.parameter import flatten

    flatten([model._modules["0"].bias])  # split them: the bias now has its own storage
    save(tmp_path / "c.safetensors", model)
    tensors, _ = st.read(tmp_path / "c.safetensors")
    assert set(tensors) == {"model.param.0.weight", "model.param.0.bias"}
    other = FakeSequential(FakeLinear(3, 2, np.random.default_rng(9)), FakeReLU())
    load(tmp_path / "c.safetensors", other)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def _real(width=16, bn=True):
    from steadygrad import nn
    from steadygrad.random import manual_seed

    manual_seed(3)
    mid = [nn.BatchNorm1d(width)] if bn else [nn.Identity()]
    return nn.Sequential(nn.Linear(5, width), *mid, nn.ReLU(), nn.Linear(width, 2))


def test_real_model_round_trip_and_mismatches(tmp_path):
    from steadygrad.random import generator

    model = _real()
    model(np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32))  # moves BN stats
    save(tmp_path / "c.safetensors", model)
    rng_saved = generator().bit_generator.state
    other = _real()
    generator().random(10)  # sg's RNG moves on after the save
    assert generator().bit_generator.state != rng_saved
    load(tmp_path / "c.safetensors", other, restore_rng=True)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v, err_msg=k)
    assert generator().bit_generator.state == rng_saved  # restore_rng=True brings sg's RNG back
    tensors, _ = st.read(tmp_path / "c.safetensors")
    assert {"model.params", "model.buffer.1.running_mean", "model.buffer.1.running_var",
            "model.buffer.1.num_batches_tracked"} <= set(tensors)
    assert tensors["model.buffer.1.num_batches_tracked"].shape == ()
    sn = pytest.importorskip("safetensors.numpy")
    theirs = sn.load_file(str(tmp_path / "c.safetensors"))
    for k, v in tensors.items():
        np.testing.assert_array_equal(theirs[k], v, err_msg=k)
        assert theirs[k].shape == v.shape and theirs[k].dtype == v.dtype

    for wrong, why in ((_real(width=17), r"\[16, 5\].*\[17, 5\]"), (_real(bn=False), "BatchNorm1d.*Identity")):
        before = {k: v.copy() for k, v in wrong.state_dict().items()}
        with pytest.raises(CheckpointError, match=why):
            load(tmp_path / "c.safetensors", wrong)
        for k, v in wrong.state_dict().items():
            np.testing.assert_array_equal(v, before[k])


def _draws():
    """What sg's generator feeds: a fresh layer's initialisation, a Dropout mask, raw draws."""
    from steadygrad import nn
    from steadygrad.random import generator

    drop = nn.Dropout(0.5)
    drop.train()
    mask = drop(np.ones((4, 8), np.float32)).copy()
    return nn.Linear(5, 3).weight.data.copy(), mask, generator().random(4)


def test_load_leaves_sg_rng_alone_unless_restore_rng(tmp_path):
    from steadygrad.random import generator, manual_seed

    save(tmp_path / "c.safetensors", _real())  # the file holds sg's RNG state at save time
    saved = generator().bit_generator.state
    manual_seed(11)
    expected = _draws()
    other = _real()
    manual_seed(11)
    assert generator().bit_generator.state != saved
    load(tmp_path / "c.safetensors", other)
    for got, want in zip(_draws(), expected, strict=True):
        np.testing.assert_array_equal(got, want)  # as if nothing had been loaded

    manual_seed(11)
    load(tmp_path / "c.safetensors", other, restore_rng=True)  # resuming training
    assert generator().bit_generator.state == saved
    with pytest.raises(TypeError, match="restore_rng must be a bool, got str"):
        load(tmp_path / "c.safetensors", other, restore_rng="yes")


def test_restore_rng_needs_an_rng_state_and_is_rolled_back(tmp_path):
    from steadygrad.random import generator

    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    tensors, meta = st.read(tmp_path / "c.safetensors")
    del meta["rng"]
    st.write(tmp_path / "n.safetensors", tensors, meta)
    model2, opt2 = _trained(1)
    load(tmp_path / "n.safetensors", model2)  # without restore_rng the RNG state is not needed
    before, rng_before = _snapshot(model2, opt2), generator().bit_generator.state
    with pytest.raises(CheckpointError, match="restore_rng=True but the checkpoint holds no RNG state"):
        load(tmp_path / "n.safetensors", model2, opt2, restore_rng=True)
    _assert_same(before, _snapshot(model2, opt2))
    assert generator().bit_generator.state == rng_before

    class Flaky(FakeSGD):
        def load_state_dict(self, sd):
            if sd["param_groups"][0]["lr"] != 0.5:
                raise RuntimeError("boom")  # (it accepts its own state back)
            super().load_state_dict(sd)

    model3, _ = _trained(1)
    opt3 = Flaky(model3.parameters(), lr=0.5)
    meta["rng"] = json.dumps(_real_rng_state_of_another_seed())
    meta["optimizer_type"] = "Flaky"
    st.write(tmp_path / "f.safetensors", tensors, meta)
    before = _snapshot(model3, opt3)
    with pytest.raises(CheckpointError, match=r"RuntimeError: boom.*nothing was changed"):
        load(tmp_path / "f.safetensors", model3, opt3, restore_rng=True)
    _assert_same(before, _snapshot(model3, opt3))
    assert generator().bit_generator.state == rng_before  # the RNG was put back too


def _real_rng_state_of_another_seed():
    return np.random.default_rng(99).bit_generator.state


def test_a_garbage_rng_state_fails_only_when_restored(tmp_path):
    from steadygrad.random import generator

    model, opt = _trained(0)
    save(tmp_path / "c.safetensors", model, opt)
    tensors, meta = st.read(tmp_path / "c.safetensors")
    meta["rng"] = json.dumps({"bit_generator": "PCG64", "state": {"state": "x", "inc": 2**200}})
    st.write(tmp_path / "g.safetensors", tensors, meta)
    model2, opt2 = _trained(1)
    before, rng_before = _snapshot(model2, opt2), generator().bit_generator.state
    with pytest.raises(CheckpointError, match="corrupted RNG state"):
        load(tmp_path / "g.safetensors", model2, opt2, restore_rng=True)
    _assert_same(before, _snapshot(model2, opt2))
    assert generator().bit_generator.state == rng_before
    load(tmp_path / "g.safetensors", model2, opt2)
    _assert_same(_snapshot(model, opt), _snapshot(model2, opt2))


def test_bad_arguments_are_clear_type_errors(tmp_path):
    model, opt = _trained(0)
    sched = FakeStepLR(opt, step_size=2)
    path = tmp_path / "c.safetensors"
    save(path, model, opt, sched)
    raw = path.read_bytes()
    before = _snapshot(model, opt)
    cases = [
        (lambda: save(model, path), r"sg.save: path must be a str or os.PathLike, got FakeSequential "
                                    r"\(the path comes first: sg.save\(path, model, ...\)\)"),
        (lambda: load(model, path), r"sg.load: path must be .* got FakeSequential \(the path comes first"),
        (lambda: load(12, model), r"sg.load: path must be a str or os.PathLike, got int$"),
        (lambda: load(path, model.state_dict()), r"sg.load: model must be a Module .* got dict "
                                                 r"\(pass the module itself, not its state_dict\)"),
        (lambda: load(path, str(path)), r"model must be a Module .* got str \(the path comes first"),
        (lambda: save(path, 5), r"sg.save: model must be a Module \(with state_dict and named_parameters\), got int"),
        (lambda: save(path, model, sched), r"sg.save: optimizer must be an optimizer .* got FakeStepLR "
                                           r"\(a scheduler\? pass it as scheduler=\)"),
        (lambda: load(path, model, None, opt), r"sg.load: scheduler must be a scheduler .* got FakeSGD "
                                               r"\(an optimizer\? pass it as optimizer=\)"),
        (lambda: load(path, model, "adam"), r"sg.load: optimizer must be an optimizer \(with state_dict, "
                                            r"load_state_dict, param_groups\) or None, got str"),
    ]
    for call, match in cases:
        with pytest.raises(TypeError, match=match):
            call()
        assert path.read_bytes() == raw and sorted(os.listdir(tmp_path)) == ["c.safetensors"]
        _assert_same(before, _snapshot(model, opt))
    with pytest.raises(FileNotFoundError, match="no such directory"):
        save(tmp_path / "missing" / "c.safetensors", model)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        save(tmp_path, model)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.safetensors", model)


def test_extra_round_trips_reserved_keys_and_refuses_cycles(tmp_path):
    model, _ = _trained(0)
    extra = {"__tuple__": [1, 2], "a": {"__tensor__": "x", "__items__": None}, (1, "b"): (3,),
             "nan": float("nan"), "inf": [float("-inf")]}
    save(tmp_path / "c.safetensors", model, extra=extra)
    got = load(tmp_path / "c.safetensors", model)
    assert got.keys() == extra.keys() and got["__tuple__"] == [1, 2] and got[(1, "b")] == (3,)
    assert got["a"] == extra["a"] and np.isnan(got["nan"]) and got["inf"] == [float("-inf")]
    cyclic: dict = {}
    cyclic["self"] = cyclic
    for bad, err, match in ((cyclic, ValueError, "nests deeper than 64 levels \\(or contains itself\\)"),
                            ({frozenset([1]): 1}, TypeError, "cannot store the dict key frozenset"),
                            ({"a": object()}, TypeError, "cannot store object at 'extra.a'")):
        with pytest.raises(err, match=match):
            save(tmp_path / "c.safetensors", model, extra=bad)
    assert load(tmp_path / "c.safetensors", model).keys() == extra.keys()  # the old file survived
