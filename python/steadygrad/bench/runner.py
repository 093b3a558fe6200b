"""Runs one suite by the one method every suite shares: each (case, contender) is measured in
a fresh process of its runtime (runtimes' idle thread pools spin on the cores for a while
after a call, so two frameworks in one process slow each other; JAX's pool is sized at
import); `plan.rounds` rounds interleave the runtimes (sg, torch, jax, sg, torch, jax, ...) so
that a burst of load from other processes lands on every framework's samples; the figure is
the median over all rounds. Progress goes to the `progress` callback, one step per result."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from steadygrad.bench import worker
from steadygrad.bench.suite import Case, Measured, Plan, RunInfo, Runtime, Size, Suite
from steadygrad.bench.timing import summarize
from steadygrad.progress import Bar

ProgressFactory = Callable[[int, str], Bar]  # (total steps, description) -> bar
Spawn = Callable[[dict[str, Any], worker.OnResult], None]


@dataclasses.dataclass(frozen=True)
class Job:
    unit: int  # index into the run's measured list
    contender: str
    runtime: Runtime


def keep_contenders(case: Case, peers: set[str] | frozenset[str]) -> Case:
    """The case without the contenders whose framework is a peer not taking part."""
    kept = {k: rt for k, rt in case.contenders.items()
            if rt.framework == "steadygrad" or rt.framework in peers}
    return dataclasses.replace(case, contenders=kept)


def _units(suite: Suite, cases: list[Case], threads: list[int]) -> list[Measured]:
    counts = threads[:1] if suite.first_threads_only else threads
    units = [Measured(c, t) for t in counts for c in cases if c.threads is None]
    return units + [Measured(c, c.threads) for c in cases if c.threads is not None]


def _processes(suite: Suite, units: list[Measured]) -> list[tuple[int, Runtime, list[Job]]]:
    """(threads, runtime, jobs) per process of one round, in the order they run."""
    procs: dict[object, tuple[int, Runtime, list[Job]]] = {}
    for i, u in enumerate(units):
        for name, rt in u.case.contenders.items():
            key = (i, name) if suite.isolate else (u.threads, rt)
            procs.setdefault(key, (u.threads, rt, []))[2].append(Job(i, name, rt))
    return list(procs.values())


def run(suite: Suite, *, threads: list[int], size: Size, repeat: int | None,
        peers: set[str] | frozenset[str], progress: ProgressFactory,
        spawn: Spawn = worker.spawn, configs: list[str] | None = None) -> dict[str, Any]:
    """Measures every case of `suite` at `size` (only those of `configs` when given, with
    the size's plan) and returns the suite's report."""
    plan = suite.plan(size)
    if repeat is not None:
        plan = dataclasses.replace(plan, repeat=repeat)
    cases = suite.named_cases(configs) if configs else suite.cases(size)
    units = _units(suite, [keep_contenders(c, peers) for c in cases], threads)
    procs = _processes(suite, units)
    raw: dict[tuple[int, str], dict[str, Any]] = {}
    bar = progress(plan.rounds * sum(len(jobs) for _, _, jobs in procs), suite.name)
    try:
        for _ in range(plan.rounds):
            for t, rt, jobs in procs:
                _run_process(suite.name, t, rt, plan, jobs, units, raw, bar, spawn)
    finally:
        bar.close()
    for (i, name), result in raw.items():
        if "samples" in result and "error" not in result:
            result.update(summarize(result["samples"]))
        units[i].results[name] = result
    return suite.report(units, RunInfo(size, plan, threads))


def _run_process(suite: str, threads: int, runtime: Runtime, plan: Plan, jobs: list[Job],
                 units: list[Measured], raw: dict[tuple[int, str], dict[str, Any]], bar: Bar,
                 spawn: Spawn) -> None:
    """One process of one round: its jobs less those that failed in an earlier round;
    samples add up over the rounds, other figures are the last round's."""
    todo = [j for j in jobs if "error" not in raw.get((j.unit, j.contender), {})]
    if len(todo) < len(jobs):
        bar.update(len(jobs) - len(todo))
    if not todo:
        return
    bar.set_postfix_str(f"{runtime.framework} {threads}t")

    def on_result(k: int, result: dict[str, Any]) -> None:
        job = todo[k]
        got = raw.setdefault((job.unit, job.contender), {})
        samples = got.get("samples", []) + result.get("samples", [])
        got.update(result)
        if "samples" in result:
            got["samples"] = samples
        bar.update(1)

    task = {"suite": suite, "threads": threads, "runtime": runtime.to_json(),
            "plan": dataclasses.asdict(plan),
            "jobs": [{"case": units[j.unit].case.to_json(), "contender": j.contender}
                     for j in todo]}
    spawn(task, on_result)
