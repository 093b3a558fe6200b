"""The contract every benchmark suite meets (gemm, optim, layers, train, memory, sklearn,
distributed): a Suite lists
Cases, each naming its contenders and the Runtime (framework + environment) each one runs in;
the runner (runner.py) measures them all by one method and hands the figures to the suite's
`report`. Values only: nothing here times, spawns or prints."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, cast

Size = Literal["tiny", "quick", "full"]
NAMES = ("gemm", "optim", "layers", "train", "memory", "sklearn", "distributed")
FRAMEWORKS = ("steadygrad", "numpy", "torch", "jax", "sklearn")
# where each suite's `durations` were measured (or, where no run was recorded, estimated from
# the measured runs and the suite's sizes; `steadygrad-bench SUITE --help` says "about")
REFERENCE_MACHINE = ("the reference machine: an AMD EPYC (Zen 3) KVM guest with 2 cores, "
                     "--threads 2, every peer installed")
TIME_RATIO_NOTE = ("sg vs <peer>: steadygrad is that many times faster (or slower) than the "
                   "peer; the JSON's <peer>_x is peer time / steadygrad time (above 1: "
                   "steadygrad faster)")


def ratio_column(peer: str) -> list[str]:
    """The table column of the `<peer>_x` ratio. Its cells say which side wins ('2.41x
    faster', report.ratio_cell), so the header only names the peer."""
    return [f"{peer}_x", f"sg vs {peer}"]


@dataclass(frozen=True)
class Runtime:
    """The process a contender runs in: the framework it imports and sizes to the thread
    count, and environment variables set (a None value: unset) before the interpreter starts,
    for what a library reads only when it loads (STEADYGRAD_ISA, OPENBLAS_CORETYPE)."""

    framework: str
    env: tuple[tuple[str, str | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"framework": self.framework, "env": [list(kv) for kv in self.env]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Runtime:
        return cls(str(d["framework"]), tuple((str(k), v) for k, v in d["env"]))


STEADYGRAD, NUMPY, TORCH, JAX, SKLEARN = (Runtime(f) for f in FRAMEWORKS)


@dataclass(frozen=True)
class Plan:
    """How each (case, contender, thread count) is timed: `rounds` interleaved rounds, each a
    fresh process per runtime, in which the contender gets `warmup` calls (and at least
    `warmup_s` seconds of them), then its share of the `repeat` samples, each sample calling
    it until `min_time` has passed. The figure is the median of all samples."""

    repeat: int
    rounds: int = 1
    min_time: float = 0.0
    warmup: int = 2
    warmup_s: float = 0.0

    @property
    def per_round(self) -> int:
        return -(-self.repeat // self.rounds)

    def describe(self) -> str:
        warm = f"{self.warmup} warm-up call{'s' * (self.warmup != 1)}"
        if self.warmup_s:
            warm += f" (at least {self.warmup_s * 1e3:.0f} ms)"
        each = f", each >= {self.min_time * 1e3:.0f} ms" if self.min_time else ""
        return (f"{self.rounds} interleaved round{'s' * (self.rounds != 1)}, a fresh process "
                f"per framework in each; {self.per_round} sample{'s' * (self.per_round != 1)} "
                f"per round{each} after {warm}; figures are medians over all samples")


@dataclass(frozen=True)
class Case:
    """One row of a suite. `params` (JSON-able) is all the worker needs to build it;
    `contenders` maps each column prefix to its runtime, in measuring order; `threads` pins
    a thread count (None: each of the run's thread counts)."""

    key: str
    params: dict[str, Any]
    contenders: dict[str, Runtime]
    threads: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "params": self.params, "threads": self.threads,
                "contenders": {k: rt.to_json() for k, rt in self.contenders.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        return cls(str(d["key"]), dict(d["params"]),
                   {k: Runtime.from_json(v) for k, v in d["contenders"].items()}, d["threads"])


@dataclass
class Measured:
    """A case's figures at one thread count: contender -> the worker's result, timings
    reduced by the runner to {"seconds" (median), "best_seconds", "samples"}, or
    {"error": str} for a contender that failed."""

    case: Case
    threads: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def seconds(self, contender: str) -> float | None:
        r = self.results.get(contender, {})
        return float(r["seconds"]) if "seconds" in r else None

    def errors(self) -> list[str]:
        return [f"{name} {self.case.key} {self.threads}t: {r['error']}"
                for name, r in self.results.items() if "error" in r]


@dataclass(frozen=True)
class RunInfo:
    """What a suite's report needs to know about the run it reports."""

    size: Size
    plan: Plan
    threads: list[int]


class Suite(Protocol):
    name: str
    about: str  # what the suite measures, for `steadygrad-bench SUITE --help`
    durations: tuple[int, int]  # seconds a --quick and a --full run take on REFERENCE_MACHINE
    peers: frozenset[str]  # the peer frameworks its cases can run beside steadygrad
    isolate: bool  # each measurement in a process of its own (a clean heap), not one per runtime
    first_threads_only: bool  # measured at the first --threads value only
    config_names: tuple[str, ...]  # the configurations --configs may name (empty: none)

    def plan(self, size: Size) -> Plan: ...

    def cases(self, size: Size) -> list[Case]: ...

    def named_cases(self, names: list[str]) -> list[Case]:
        """The cases of these configurations (each in config_names), in that order: what
        --configs runs instead of the size's cases."""
        ...

    def config_of(self, case: Case) -> str | None:
        """The configuration a case belongs to (None: a case every run has, e.g. a probe)."""
        ...

    def measure(self, case: Case, contender: str, plan: Plan) -> dict[str, Any]:
        """Runs in the worker process, after the contender's framework is imported and
        sized: the contender's figures (`timing.timed(...)` for a timing suite)."""
        ...

    def report(self, measured: list[Measured], run: RunInfo) -> dict[str, Any]:
        """The suite's result: {"suite", "title", "columns": [[key, header], ...],
        "rows": [dict, ...], "notes": [str, ...], ...anything else for the JSON}."""
        ...


class BaseSuite:
    """A Suite's defaults: one process per runtime and round, every thread count, the plan
    of each size from the class's `plans`, and no named configurations."""

    plans: ClassVar[dict[Size, Plan]]
    name: str
    about: str
    durations: tuple[int, int]
    isolate = False
    first_threads_only = False
    config_names: tuple[str, ...] = ()

    def plan(self, size: Size) -> Plan:
        return self.plans[size]

    def named_cases(self, names: list[str]) -> list[Case]:
        raise ValueError(f"suite {self.name!r} has no named configurations")

    def config_of(self, case: Case) -> str | None:
        return case.key if self.config_names else None


def load(name: str) -> Suite:
    """The suite object of steadygrad.bench.<name> (raises ImportError if it cannot load)."""
    if name not in NAMES:
        raise ImportError(f"no benchmark suite {name!r}")
    return cast(Suite, importlib.import_module(f"steadygrad.bench.{name}").SUITE)
