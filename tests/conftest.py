"""Shared fixtures: run a test on every ISA path this machine supports (others are skipped
with a visible reason), thread-count control, and float64 reference tolerances."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import steadygrad as sg
from steadygrad._threads import threads

ALL_ISAS = ("generic", "avx2", "avx512")


def _supported() -> list[str]:
    return list(sg.cpu_info()["isa_supported"])


@pytest.fixture(params=ALL_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Selects each ISA path in turn (sg.set_isa) and restores the previous one afterwards."""
    name = request.param
    if name not in _supported():
        pytest.skip(f"ISA path '{name}' not supported by this CPU/OS ({sg.cpu_info()['cpu']}; "
                    f"supported: {_supported()})")
    before = sg.get_isa()
    sg.set_isa(name)
    try:
        yield name
    finally:
        sg.set_isa(before)


num_threads = threads  # the library's context manager (steadygrad._threads)

# Each bf16 GEMM path with the ISA path it runs on: the reference path (inputs rounded, the
# ISA's fp32 kernels) on every ISA, the native kernels on AVX-512's tile.
BF16_PATHS = (("reference", "generic"), ("reference", "avx2"), ("reference", "avx512"),
              ("avx512bf16", "avx512"), ("amx", "avx512"))


@pytest.fixture(params=BF16_PATHS, ids=[f"{p}-{i}" for p, i in BF16_PATHS])
def bf16_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs the test at matmul precision bf16 on one bf16 path (and ISA path), skipped with a
    visible reason where this CPU/OS lacks it; restores precision, bf16 path and ISA after."""
    path, isa_name = request.param
    info = sg.cpu_info()
    if path not in info["bf16_paths_supported"]:
        pytest.skip(f"bf16 path '{path}' not supported by this CPU/OS/build ({info['cpu']}; "
                    f"supported: {info['bf16_paths_supported']})")
    if isa_name not in _supported():
        pytest.skip(f"ISA path '{isa_name}' not supported by this CPU/OS ({info['cpu']})")
    before = (sg.get_isa(), sg._core._get_bf16_path())
    sg.set_isa(isa_name)
    sg._core._set_bf16_path(path)
    try:
        with sg.set_matmul_precision("bf16"):
            assert sg.cpu_info()["bf16_path"] == path  # the path under test is the one that runs
            yield path
    finally:
        sg._core._set_bf16_path(before[1])
        sg.set_isa(before[0])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def gemm_tolerance(k: int, scale: float = 1.0) -> float:
    """Absolute tolerance for a float32 dot product of length k of O(scale) terms."""
    return 8.0 * np.finfo(np.float32).eps * max(k, 1) ** 0.5 * scale * 4.0


def assert_close(got: np.ndarray, want: np.ndarray, atol, rtol: float = 0.0, what: str = "") -> None:
    """assert_allclose that names the worst coordinate, the array shape and the case.

    `atol` may be an array broadcastable to `want` (per-element error bounds). NaN must match
    NaN and infinities must match exactly."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != expected {want.shape}"
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_got, nan_want):
        idx = tuple(int(i) for i in np.argwhere(nan_got != nan_want)[0])
        raise AssertionError(f"{what}: NaN mismatch at {idx} of {want.shape}: got {got[idx]!r}, "
                             f"want {want[idx]!r}")
    finite = np.isfinite(want)
    inf_bad = ~finite & ~nan_want & (got != want)
    if inf_bad.any():
        idx = tuple(int(i) for i in np.argwhere(inf_bad)[0])
        raise AssertionError(f"{what}: infinity mismatch at {idx} of {want.shape}: got "
                             f"{got[idx]!r}, want {want[idx]!r}")
    tol = np.broadcast_to(np.asarray(atol, dtype=np.float64), want.shape) + rtol * np.abs(want)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(got - want), 0.0)
    excess = np.where(finite, err - tol, -np.inf)
    if excess.size and (excess > 0).any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), want.shape))
        raise AssertionError(
            f"{what}: {int((excess > 0).sum())} of {want.size} elements out of tolerance; worst "
            f"at {idx} of {want.shape}: got {got[idx]!r}, want {want[idx]!r}, |err| "
            f"{err[idx]:.3g} > tol {tol[idx]:.3g}")


def float_bits(x: float) -> int:
    """The IEEE bits of a Python float (double) result, for bitwise comparisons."""
    return int(np.float64(x).view(np.int64))


# --- test-time guard --------------------------------------------------------------------
# A test module may declare TIME_BUDGET_S; the summary reports modules that took longer (and
# all budgeted modules together against TOTAL_TIME_BUDGET_S), so a slow-down is visible in CI.
# It reports and never fails the run: wall time on a shared 2-core machine is noise, and
# speed belongs to benchmarks, not to test assertions. STEADYGRAD_TEST_TIME_SCALE scales the
# budgets (0 silences the report). Collection and imports are not counted.
TOTAL_TIME_BUDGET_S = 120.0

_module_seconds: dict[str, float] = {}
_module_budget: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    module = report.nodeid.split("::", 1)[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        budget = getattr(item.module, "TIME_BUDGET_S", None) if item.module else None
        if budget is not None:
            _module_budget[item.nodeid.split("::", 1)[0]] = float(budget)
    _gate_distributed(items)


# --- the distributed tests --------------------------------------------------------------
# tests/distributed/ runs under MPI with 2 ranks, as .ci/run does (DISTRIBUTED_RUN). Every
# rank runs every test in the same order, so each test makes the same collectives on both
# ranks; a test makes all of them before its assertions (a failing rank must not leave the
# other waiting) and mpi_support.agree makes a verdict collective. Outside mpiexec (the
# README's plain `python -m pytest`) they are collected and skipped with that command as
# the reason. (No conftest.py of their own: it would shadow this one's `from conftest import`.)
DISTRIBUTED = pathlib.Path(__file__).parent / "distributed"
DISTRIBUTED_RUN = ("OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py -m pytest -p no:cacheprovider "
                   "tests/distributed")


def _distributed_skip_reason() -> str | None:
    from steadygrad.distributed.comm import launched_by_mpi

    if not launched_by_mpi():
        return f"distributed tests run under MPI with 2 ranks: {DISTRIBUTED_RUN} (.ci/run does)"
    import steadygrad.distributed as dist

    try:
        ranks = dist.world_size()
    except ImportError as e:  # started by mpiexec, but without mpi4py
        return str(e)
    if ranks != 2:
        return f"distributed tests need exactly 2 ranks, got {ranks}: {DISTRIBUTED_RUN}"
    return None


def _gate_distributed(items: list[pytest.Item]) -> None:
    mine = [item for item in items if DISTRIBUTED in pathlib.Path(item.path).parents]
    why = _distributed_skip_reason() if mine else None
    for item in mine if why else ():
        item.add_marker(pytest.mark.skip(reason=why))


def pytest_configure(config: pytest.Config) -> None:
    """Under MPI each rank gets a base temporary directory of its own (the ranks would
    otherwise number, make and clean up pytest's shared ones at the same time)."""
    import os
    import tempfile

    from steadygrad.distributed.comm import launched_by_mpi

    if launched_by_mpi() and config.option.basetemp is None and _distributed_skip_reason() is None:
        import steadygrad.distributed as dist

        config.option.basetemp = os.path.join(
            tempfile.gettempdir(), f"sg-dist-{os.getuid()}-{os.getppid()}-rank{dist.rank()}")


def _over_budget() -> list[str]:
    import os

    scale = float(os.environ.get("STEADYGRAD_TEST_TIME_SCALE", "1"))
    if scale <= 0:
        return []
    over = [f"{m}: {_module_seconds[m]:.1f} s > budget {b * scale:.0f} s"
            for m, b in sorted(_module_budget.items())
            if _module_seconds.get(m, 0.0) > b * scale]
    total = sum(_module_seconds.get(m, 0.0) for m in _module_budget)
    if total > TOTAL_TIME_BUDGET_S * scale:
        over.append(f"all budgeted modules: {total:.1f} s > {TOTAL_TIME_BUDGET_S * scale:.0f} s")
    return over


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _module_budget:
        total = sum(_module_seconds.get(m, 0.0) for m in _module_budget)
        terminalreporter.write_line(
            f"time budget: {total:.1f} s in {len(_module_budget)} budgeted modules; "
            + ", ".join(f"{m.rsplit('/', 1)[-1]} {_module_seconds.get(m, 0.0):.1f}/{b:.0f} s"
                        for m, b in sorted(_module_budget.items())))
    for line in _over_budget():
        terminalreporter.write_line(f"TIME BUDGET EXCEEDED: {line}", red=True)



def plan_set(m: Any, what: str) -> set[int]:
    """Indices of the layers that, in the model's plan, fuse a ReLU ('fused'), fuse one whose
    backward they apply too ('fused_masked'), or write dL/dx over their input ('donate')."""
    plan = m.plan()
    if what == "donate":
        return {lp.index for lp in plan if lp.donate_input}
    fused = {lp.index for lp in plan if lp.epilogue == "relu"}
    if what == "fused":
        return fused
    return {i for i in fused if plan[i + 1].producer_masks_grad}
