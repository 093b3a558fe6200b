"""The benchmark suites' one contract (suite.py) and one runner (runner.py): every suite's cases
cross to a worker and back unchanged, the runner interleaves rounds of one process per runtime
and reduces samples to medians, progress arrives through the callback, and a worker reports
each job (or its error) on its own. No timing is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import steadygrad as sg
from steadygrad.bench import cli, runner, worker
from steadygrad.bench.gemm import HASWELL_KEY
from steadygrad.bench.suite import (
    FRAMEWORKS,
    NAMES,
    STEADYGRAD,
    TORCH,
    Case,
    Measured,
    Plan,
    RunInfo,
    Runtime,
    Size,
    load,
)

SIZES: tuple[Size, ...] = ("tiny", "quick", "full")


@pytest.mark.parametrize("name", NAMES)
def test_every_suite_meets_the_contract(name: str) -> None:
    suite = load(name)
    assert suite.name == name
    for size in SIZES:
        plan, cases = suite.plan(size), suite.cases(size)
        assert plan.repeat >= 1 and plan.rounds >= 1 and plan.per_round * plan.rounds >= plan.repeat
        assert cases, (name, size)
        assert len({c.key for c in cases}) == len(cases), f"{name} {size}: duplicate case keys"
        for case in cases:
            assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case, case.key
            frameworks = {rt.framework for rt in case.contenders.values()}
            assert frameworks <= set(FRAMEWORKS), (case.key, frameworks)
            assert frameworks - {"steadygrad"} <= suite.peers, (name, case.key, suite.peers)
        configs = {suite.config_of(c) for c in cases} - {None}
        assert configs <= set(suite.config_names) or not suite.config_names
    if suite.config_names:  # --configs: any of them, in the order asked
        names = list(reversed(suite.config_names))
        got = [suite.config_of(c) for c in suite.named_cases(names)]
        assert list(dict.fromkeys(n for n in got if n is not None)) == names
    else:
        with pytest.raises(ValueError, match="no named configurations"):
            suite.named_cases(["x"])


@pytest.mark.parametrize("name", ["train", "memory"])
def test_cnn_configs_run_by_default(name: str) -> None:
    keys = {size: [c.key for c in load(name).cases(size)] for size in SIZES}
    assert "C2" in keys["quick"] and {"C1", "C2"} <= set(keys["full"])


class _FakeSuite:
    name = "fake"
    peers = frozenset({"torch"})
    first_threads_only = False

    config_names = ("a", "b")

    def __init__(self, isolate: bool) -> None:
        self.isolate = isolate
        self.reported: list[Measured] = []

    def named_cases(self, names: list[str]) -> list[Case]:
        return [c for n in names for c in self.cases("full") if c.key == n]

    def plan(self, size: Size) -> Plan:
        return Plan(repeat=5, rounds=3)

    def cases(self, size: Size) -> list[Case]:
        both = {"sg": STEADYGRAD, "torch": TORCH}
        return [Case("a", {}, both), Case("b", {}, both), Case("pinned", {}, {"sg": STEADYGRAD}, 1)]

    def measure(self, case: Case, contender: str, plan: Plan) -> dict[str, Any]:
        raise AssertionError("runs in the worker, not here")

    def report(self, measured: list[Measured], run: RunInfo) -> dict[str, Any]:
        self.reported = measured
        return {"suite": self.name, "rows": [], "run": run}


class _Bar:
    def __init__(self, total: int) -> None:
        self.total, self.n, self.closed, self.postfix = total, 0, False, ""

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def close(self) -> None:
        self.closed = True


def _run_fake(isolate: bool, peers: set[str],
              configs: list[str] | None = None) -> tuple[_FakeSuite, list[dict[str, Any]], _Bar]:
    tasks: list[dict[str, Any]] = []
    bars: list[_Bar] = []

    def spawn(task: dict[str, Any], on_result: worker.OnResult) -> None:
        key = (task["threads"], task["runtime"]["framework"], task["jobs"][0]["case"]["key"])
        rnd = sum(1 for t in tasks
                  if (t["threads"], t["runtime"]["framework"], t["jobs"][0]["case"]["key"]) == key)
        tasks.append(task)
        for i, job in enumerate(task["jobs"]):
            if job["case"]["key"] == "b" and job["contender"] == "torch" and rnd == 1:
                on_result(i, {"error": "boom"})  # fails in the second round only
            else:  # seconds encode (round, case, contender) so the medians can be checked
                base = 1.0 + rnd + (10 if job["contender"] == "torch" else 0)
                on_result(i, {"samples": [base, base + 0.5], "extra": rnd})

    def progress(total: int, desc: str) -> _Bar:
        bars.append(_Bar(total))
        return bars[-1]

    suite = _FakeSuite(isolate)
    runner.run(suite, threads=[2, 1], size="quick", repeat=None, peers=peers,
               progress=progress, spawn=spawn, configs=configs)
    (bar,) = bars
    return suite, tasks, bar


def test_runner_interleaves_one_process_per_runtime_and_round() -> None:
    suite, tasks, bar = _run_fake(isolate=False, peers={"torch"})
    order = [(t["threads"], t["runtime"]["framework"], [j["case"]["key"] for j in t["jobs"]])
             for t in tasks]
    one_round = [(2, "steadygrad", ["a", "b"]), (2, "torch", ["a", "b"]),
                 (1, "steadygrad", ["a", "b", "pinned"]), (1, "torch", ["a", "b"])]
    # round 3 leaves out the contender that failed in round 2
    last = [(2, "steadygrad", ["a", "b"]), (2, "torch", ["a"]),
            (1, "steadygrad", ["a", "b", "pinned"]), (1, "torch", ["a"])]
    assert order == one_round * 2 + last
    assert tasks[0]["plan"] == {"repeat": 5, "rounds": 3, "min_time": 0.0, "warmup": 2,
                                "warmup_s": 0.0}
    assert bar.closed and bar.n == bar.total == 3 * (4 + 4 + 1)
    got = {(m.threads, m.case.key): m for m in suite.reported}
    assert sorted(got) == [(1, "a"), (1, "b"), (1, "pinned"), (2, "a"), (2, "b")]
    a = got[(2, "a")].results["sg"]
    assert a["samples"] == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]  # every round's samples, in order
    assert a["seconds"] == 2.5 and a["best_seconds"] == 1.0 and a["extra"] == 2
    assert got[(2, "a")].seconds("torch") == 12.5
    for t in (1, 2):
        assert got[(t, "b")].results["torch"]["error"] == "boom"
        assert got[(t, "b")].errors() == [f"torch b {t}t: boom"]
    assert "torch" not in got[(1, "pinned")].results


def test_runner_isolates_measurements_and_drops_absent_peers() -> None:
    suite, tasks, bar = _run_fake(isolate=True, peers=set())
    assert all(len(t["jobs"]) == 1 for t in tasks)
    assert {t["runtime"]["framework"] for t in tasks} == {"steadygrad"}
    assert len(tasks) == bar.total == bar.n == 3 * 5
    assert all(set(m.case.contenders) == {"sg"} for m in suite.reported)


def test_runner_runs_only_the_configs_asked_for() -> None:
    suite, tasks, _ = _run_fake(isolate=False, peers={"torch"}, configs=["b"])
    assert {j["case"]["key"] for t in tasks for j in t["jobs"]} == {"b"}
    assert sorted((m.threads, m.case.key) for m in suite.reported) == [(1, "b"), (2, "b")]


def _gemm_task(jobs: list[tuple[dict[str, Any], str]], runtime: Runtime) -> dict[str, Any]:
    return {"suite": "gemm", "threads": 1, "runtime": runtime.to_json(),
            "plan": {"repeat": 2, "rounds": 1, "min_time": 0.0, "warmup": 1, "warmup_s": 0.0},
            "jobs": [{"case": c, "contender": name} for c, name in jobs]}


def test_worker_reports_each_job_and_applies_the_runtime_env() -> None:
    params = {"group": "square", "kind": "NN", "m": 16, "n": 16, "k": 16}
    generic = Runtime("steadygrad", (("STEADYGRAD_ISA", "generic"),))
    good = Case(HASWELL_KEY, params, {"steadygrad": generic}).to_json()
    bad = Case("bad", {**params, "kind": "XX"}, {"steadygrad": generic}).to_json()
    results: dict[int, dict[str, Any]] = {}
    worker.spawn(_gemm_task([(good, "steadygrad"), (bad, "steadygrad")], generic),
                 lambda i, r: results.setdefault(i, r))
    assert sorted(results) == [0, 1]
    samples = results[0]["samples"]
    assert len(samples) == 2 and all(math.isfinite(s) and s > 0 for s in samples)
    assert results[0]["info"]["isa"] == "generic"  # STEADYGRAD_ISA reached the child's import
    assert results[1]["error"].startswith("KeyError"), results[1]


def test_worker_that_cannot_start_fails_every_job() -> None:
    case = Case("x", {}, {"sg": STEADYGRAD}).to_json()
    results: dict[int, dict[str, Any]] = {}
    worker.spawn(_gemm_task([(case, "sg"), (case, "sg")], Runtime("tensorflow")),
                 lambda i, r: results.setdefault(i, r))
    assert [results[i]["error"] for i in (0, 1)] == \
        ["ValueError: unknown framework 'tensorflow'"] * 2
    results.clear()
    worker.spawn(_gemm_task([(case, "sg")], STEADYGRAD), lambda i, r: results.setdefault(i, r),
                 timeout=0.01)
    assert results == {0: {"error": "timed out after 0 s"}}


def _positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_tiny_gemm_and_optim_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert cli.main(["gemm", "optim", "--tiny", "--threads", "1", "--compare", "numpy",
                     "--json", str(out), "--no-progress"]) == 0
    assert "GEMM" in capsys.readouterr().out
    suites = json.loads(out.read_text())["suites"]
    gemm = suites["gemm"]
    assert gemm["errors"] == [] and "skipped" in gemm
    assert [r["case"] for r in gemm["rows"]] == ["square NN", "mlp b8 16->32 fwd",
                                                 "square NN bf16"]
    for row in gemm["rows"][:2]:
        assert _positive(row["steadygrad_gflops"]) and _positive(row["numpy_gflops"]), row
        assert row["numpy_x"] == pytest.approx(row["steadygrad_gflops"] / row["numpy_gflops"])
        assert row["raw"]["gflops"]["steadygrad"] == row["steadygrad_gflops"]
        assert row["path"] in ("sup", "packed") and "torch_gflops" not in row
        assert row["precision"] == "fp32"
    bf16 = gemm["rows"][2]  # the precision axis: the kernel that ran, the speed-up over fp32
    assert bf16["precision"] == "bf16" and "numpy_gflops" not in bf16
    assert bf16["path"] == "bf16 " + sg.cpu_info()["bf16_path"]
    assert bf16["bf16_x"] == pytest.approx(bf16["steadygrad_gflops"]
                                           / gemm["rows"][0]["steadygrad_gflops"])
    optim = suites["optim"]
    assert optim["errors"] == []
    probe = optim["probe"]["1"]
    assert _positive(probe["rw_gbs"]) and _positive(probe["read_gbs"])
    plain, clipped = optim["rows"]
    assert (plain["clip"], clipped["clip"]) == ("-", "2-norm")
    assert _positive(plain["sg_guard_ms"]) and "sg_guard_ms" not in clipped
    for row in optim["rows"]:
        assert _positive(row["sg_ms"]) and "torch_ms" not in row and row["torch_x"] is None
        assert row["sg_gbs"] == pytest.approx(row["sg_bytes"] * row["params"] / row["sg_ms"] / 1e6)
        assert row["sg_probe_pct"] == pytest.approx(100 * row["sg_gbs"] / probe["rw_gbs"])


def test_each_library_is_timed_in_a_fresh_process_of_its_own() -> None:
    """A real gemm run: numpy, torch and steadygrad each in its own process, which has loaded
    no other peer framework (torch's thread pool never shares a process with ours), and the
    bf16 case's contenders in theirs."""
    pytest.importorskip("torch")
    cases = [c for c in load("gemm").cases("tiny") if c.key in ("square NN", "square NN bf16")]
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for rt in (STEADYGRAD, Runtime("numpy"), TORCH):
        jobs = [(c.to_json(), name) for c in cases for name, r in c.contenders.items() if r == rt]
        worker.spawn(_gemm_task(jobs, rt),
                     lambda i, r, jobs=jobs: records.setdefault(
                         (jobs[i][0]["key"], jobs[i][1]), r))
    assert len(records) == 5 and all("error" not in r for r in records.values()), records
    pids = {name: {r["process"]["pid"] for (_, n), r in records.items() if n == name}
            for name in ("steadygrad", "numpy", "torch")}
    assert all(len(p) == 1 for p in pids.values()), pids  # one process per runtime
    assert len(set.union(*pids.values())) == 3, pids      # and no two runtimes share one
    for (_, name), r in records.items():
        assert r["process"]["loaded"] == (["torch"] if name == "torch" else []), (name, r)
