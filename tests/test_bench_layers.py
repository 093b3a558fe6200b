"""The `layers` benchmark suite and the optim suite's Adagrad / NAdam cases: what each lists,
that both frameworks' timed steps compute the same thing (gradients, parameter updates, against
torch), that a layer steadygrad lacks is skipped with its reason, and a tiny run's report. No
timing is asserted."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import steadygrad as sg
from steadygrad.bench import cli, layers, optim
from steadygrad.bench.suite import STEADYGRAD, TORCH, Case, Measured, Plan, RunInfo
from steadygrad.nn import Module, Parameter


class _StandInLayerNorm(Module):
    """torch.nn.LayerNorm(normalized_shape) over the last dimension in numpy, standing in for
    steadygrad.nn.LayerNorm where this build does not have it yet (the suite's wiring is
    what is tested: constructor, state_dict keys, zero_grad, forward, backward)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(normalized_shape, np.float32))
        self.bias = Parameter(np.zeros(normalized_shape, np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        x64 = x.astype(np.float64)
        self.rstd = 1 / np.sqrt(x64.var(-1, keepdims=True) + self.eps)
        self.xhat = (x64 - x64.mean(-1, keepdims=True)) * self.rstd
        return (self.xhat * self.weight.data + self.bias.data).astype(np.float32)

    def backward(self, grad_output: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        dy = grad_output.astype(np.float64)
        self.weight.accumulate_grad((dy * self.xhat).sum(0))
        self.bias.accumulate_grad(dy.sum(0))
        dxhat = dy * self.weight.data
        dx = self.rstd * (dxhat - dxhat.mean(-1, keepdims=True)
                          - self.xhat * (dxhat * self.xhat).mean(-1, keepdims=True))
        return dx.astype(np.float32) if input_grad else None


class _StandInEmbedding(Module):
    """torch.nn.Embedding(num_embeddings, embedding_dim) in numpy (see _StandInLayerNorm)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.weight = Parameter(np.zeros((num_embeddings, embedding_dim), np.float32))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.idx = x
        return self.weight.data[x]

    def backward(self, grad_output: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        dw = np.zeros(self.weight.shape, np.float64)
        np.add.at(dw, self.idx.ravel(), grad_output.reshape(-1, dw.shape[1]))
        self.weight.accumulate_grad(dw)
        return None


STAND_INS = {"LayerNorm": _StandInLayerNorm, "Embedding": _StandInEmbedding}


@pytest.fixture
def every_layer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """steadygrad.nn with every layer the suite benchmarks: a numpy stand-in for those this
    build lacks."""
    for name, cls in STAND_INS.items():
        if layers.missing(name):
            monkeypatch.setattr(sg.nn, name, cls, raising=False)
    yield


@pytest.mark.parametrize("layer", list(layers.LAYERS))
def test_both_frameworks_step_compute_the_same_gradients(layer: str, every_layer: None) -> None:
    dims = layers.LAYERS[layer][1]
    ours, theirs = (layers.BUILDERS[fw](layer, dims) for fw in layers.FRAMEWORKS)
    for built in (ours, theirs):  # the second step's gradients replace the first's
        built.step()
        built.step()
    got, want = ours.grads(), theirs.grads()
    assert sorted(got) == sorted(want)
    assert "input" in got or layer == "Embedding"  # integer indices have no gradient
    for key, ref in want.items():
        # float32 results of O(1) values: a few ulps of the largest per element summed over
        # at most the batch (the parameter gradients' reductions)
        tol = 64 * np.finfo(np.float32).eps * max(1.0, float(np.abs(ref).max())) * dims[0]
        np.testing.assert_allclose(got[key], ref, rtol=0, atol=tol, err_msg=f"{layer} {key}")
        assert np.any(ref != 0), (layer, key)  # a real gradient, not an untouched zero


def test_missing_layers_are_skipped_with_their_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sg.nn, "BCEWithLogitsLoss")
    assert layers.missing("BCEWithLogitsLoss") == \
        "steadygrad.nn.BCEWithLogitsLoss is not in this build"
    with pytest.raises(RuntimeError, match="BCEWithLogitsLoss is not in this build"):
        layers.build_steadygrad("BCEWithLogitsLoss", (4, 10))
    suite = layers.SUITE
    cases = suite.cases("quick")
    assert all(c.params["layer"] != "BCEWithLogitsLoss" for c in cases)
    assert [c.params["layer"] for c in cases] == \
        [name for name in layers.LAYERS if not layers.missing(name)]
    result = suite.report([], RunInfo("quick", suite.plan("quick"), [2]))
    key = "BCEWithLogitsLoss 256x1000"
    assert result["skipped_cases"][key] == "steadygrad.nn.BCEWithLogitsLoss is not in this build"
    assert f"skipped {key}: steadygrad.nn.BCEWithLogitsLoss is not in this build" in \
        result["notes"]


def test_layer_cases_are_the_issues_sizes(every_layer: None) -> None:
    keys = [c.key for c in layers.SUITE.cases("full")]
    assert keys == ["LayerNorm 256x1024", "Embedding 50000x256, idx 64x128",
                    "BCEWithLogitsLoss 256x1000", "CrossEntropyLoss 256x1000"]
    assert [c.key for c in layers.SUITE.cases("quick")] == keys
    for case in layers.SUITE.cases("full"):
        assert case.contenders == {"steadygrad": STEADYGRAD, "torch": TORCH}


def _measured(case: Case, threads: int, seconds: dict[str, float]) -> Measured:
    m = Measured(case, threads)
    m.results = {k: {"seconds": s, "best_seconds": s / 2, "samples": [s]}
                 for k, s in seconds.items()}
    return m


def test_layer_rows_judge_the_target_at_two_threads_only(every_layer: None) -> None:
    ln, _, _, ce = layers.SUITE.cases("full")
    measured = [_measured(ln, 2, {"steadygrad": 1e-4, "torch": 2e-4}),
                _measured(ln, 1, {"steadygrad": 1e-4, "torch": 2e-4}),
                _measured(ce, 2, {"steadygrad": 1e-4, "torch": 1.2e-4})]
    rows = layers.SUITE.report(measured, RunInfo("full", Plan(repeat=1), [2, 1]))["rows"]
    assert [r["steadygrad_us"] for r in rows] == pytest.approx([100.0, 100.0, 100.0])
    assert [r["torch_best_us"] for r in rows] == pytest.approx([100.0, 100.0, 60.0])
    assert [r["torch_x"] for r in rows] == pytest.approx([2.0, 2.0, 1.2])
    assert [r.get("target_met") for r in rows] == [True, None, None]  # CE has no target
    slow = _measured(ln, 2, {"steadygrad": 1e-4, "torch": 1.4e-4})
    (row,) = layers.SUITE.report([slow], RunInfo("full", Plan(repeat=1), [2]))["rows"]
    assert row["target_met"] is False and row["target_x"] == 1.5


def _positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_tiny_layers_run_reports_each_layer(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert cli.main(["layers", "--tiny", "--threads", "1", "--compare", "torch",
                     "--json", str(out), "--no-progress"]) == 0
    assert "Single layers" in capsys.readouterr().out
    res = json.loads(out.read_text())["suites"]["layers"]
    assert res["errors"] == []
    present = [n for n in layers.LAYERS if not layers.missing(n)]
    assert [r["layer"] for r in res["rows"]] == present
    assert sorted(k.split()[0] for k in res["skipped_cases"]) == \
        sorted(set(layers.LAYERS) - set(present))
    assert [c[0] for c in res["columns"]] == [
        "layer", "shape", "threads", "steadygrad_us", "steadygrad_best_us", "torch_us",
        "torch_best_us", "torch_x", "target_met"]
    for row in res["rows"]:
        assert _positive(row["steadygrad_us"]) and _positive(row["torch_us"]), row
        assert row["torch_x"] == pytest.approx(row["torch_us"] / row["steadygrad_us"])
        assert row.get("target_met") is None  # judged at 2 threads only


def test_optim_suite_has_adagrad_and_nadam_against_torchs_fastest() -> None:
    assert optim.torch_contenders("Adagrad") == {"torch": ("fused", {"fused": True}),
                                                 "torch_foreach": ("foreach", {"foreach": True})}
    assert optim.torch_contenders("NAdam") == {"torch": ("foreach", {"foreach": True})}
    cases = {c.key: c for c in optim.SUITE.cases("full")}
    assert set(cases["16.8M Adagrad clip"].contenders) == {"sg", "torch", "torch_foreach"}
    assert set(cases["16.8M NAdam clip"].contenders) == {"sg", "torch"}
    assert cases["16.8M NAdam clip"].params == {"size": "16.8M", "optimizer": "NAdam",
                                                "clip": True}
    assert optim.numel("16.8M") == 16_785_408


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("name", ["Adagrad", "NAdam"])
def test_optim_steps_match_torch(name: str, clip: bool) -> None:
    params = {"size": "262k", "optimizer": name, "clip": clip}
    start = np.concatenate([v.ravel() for v, _ in optim._arrays("262k")]).astype(np.float64)
    grads = np.concatenate([g.ravel() for _, g in optim._arrays("262k")]).astype(np.float64)
    assert np.linalg.norm(grads) > 2.0  # max_grad_norm 1.0 scales these gradients
    after: dict[str, np.ndarray] = {}
    for contender in ["sg", "sg_guard", *optim.torch_contenders(name)]:
        step, values = optim.build_step(params, contender)
        for _ in range(3):
            step()
        after[contender] = np.concatenate([v.ravel() for v in values()])
    want = after.pop("torch")
    assert np.abs(want - start).max() > 1e-4  # the steps moved the parameters
    for contender, got in after.items():
        # float32 parameters of |p| < 1: each of the 3 updates rounds within a few ulps
        np.testing.assert_allclose(got, want, rtol=0, atol=3e-7, err_msg=contender)


def test_optim_row_takes_torchs_fastest_implementation() -> None:
    case = next(c for c in optim.SUITE.cases("full") if c.key == "16.8M Adagrad clip")
    row: dict[str, Any] = optim._row(_measured(case, 2, {"sg": 0.01, "torch": 0.03,
                                                         "torch_foreach": 0.02}), None)
    assert row["torch_impl_ms"] == pytest.approx({"fused": 30.0, "foreach": 20.0})
    assert (row["torch_impl"], row["torch_ms"]) == ("foreach", pytest.approx(20.0))
    assert row["torch_variant"] == "clip_grad_norm_ + Adagrad(foreach=True)"
    assert row["torch_x"] == pytest.approx(2.0)
    assert row["torch_gbs"] == pytest.approx(32 * row["params"] / 20.0 / 1e6)
    failed = _measured(case, 2, {"sg": 0.01, "torch": 0.03})
    failed.results["torch_foreach"] = {"error": "boom"}
    row = optim._row(failed, None)
    assert (row["torch_impl"], row["torch_x"]) == ("fused", pytest.approx(3.0))
    assert row["torch_impl_ms"] == {"fused": pytest.approx(30.0), "foreach": None}


def test_optim_configs_pick_optimizers_at_every_size() -> None:
    """--configs on the optim suite: only the named optimizers, at every full size, with and
    without clipping, after the bandwidth probe."""
    from steadygrad.bench import optim as bench_optim

    s = bench_optim.OptimSuite()
    assert set(s.config_names) == set(bench_optim.OPTS)
    keys = [c.key for c in s.named_cases(["Adagrad", "NAdam"])]
    assert keys[0] == bench_optim.PROBE_KEY
    assert keys[1:] == [f"{size} {name}{clip}" for size in bench_optim.SIZES
                        for name in ("Adagrad", "NAdam") for clip in ("", " clip")]
