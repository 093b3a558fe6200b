"""The one timing loop of steadygrad-bench: warm-up, then samples of a call, each sample
looping it until a minimum time has passed. runner.py decides which process runs it and
how rounds interleave; this file only measures one callable in the current process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from steadygrad.bench.suite import Plan


def time_sample(fn: Callable[[], object], min_time: float = 0.0) -> float:
    """One timing sample: calls fn() until at least min_time has passed (at least once) and
    returns the seconds per call."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / calls


def timed(fn: Callable[[], object], plan: Plan) -> dict[str, Any]:
    """One round of the plan for fn: plan.warmup calls (caches, lazily allocated state, JAX's
    compile, thread pools awake), lasting at least plan.warmup_s, then plan.per_round samples."""
    calls, t0 = 0, time.perf_counter()
    while calls < plan.warmup or time.perf_counter() - t0 < plan.warmup_s:
        fn()
        calls += 1
    return {"samples": [time_sample(fn, plan.min_time) for _ in range(plan.per_round)]}


def summarize(samples: list[float]) -> dict[str, Any]:
    """The figures of a contender's samples over all rounds. The median is one of the samples
    (the upper one for an even count); the best shows how far a busy machine pushed it up."""
    ordered = sorted(samples)
    return {"seconds": ordered[len(ordered) // 2], "best_seconds": ordered[0],
            "samples": samples}


def median_seconds(fn: Callable[[], object], repeat: int = 7, min_time: float = 0.0) -> float:
    """Median seconds per call of fn in this process (for one-off checks such as
    `python -m steadygrad`; suites go through runner.py)."""
    samples = timed(fn, Plan(repeat=repeat, min_time=min_time, warmup=1))["samples"]
    return float(summarize(samples)["seconds"])
