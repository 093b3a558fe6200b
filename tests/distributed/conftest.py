"""The distributed tests run under MPI with 2 ranks, as .ci/run does:

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py -m pytest -p no:cacheprovider tests/distributed

Every rank runs every test, in the same order, so each test makes the same collectives on both
ranks; a test does all of its collectives before its assertions (a failing rank must not leave
the other waiting), and agree() makes a verdict collective. Outside mpiexec (the README's plain
`python -m pytest`) they are collected and skipped with the reason."""

from __future__ import annotations

import os
import pathlib
import tempfile

import pytest

import steadygrad.distributed as dist
from steadygrad.distributed.comm import launched_by_mpi

HERE = pathlib.Path(__file__).parent
RUN = ("OMP_NUM_THREADS=1 mpiexec -n 2 python -m mpi4py -m pytest -p no:cacheprovider "
       "tests/distributed")


def _why_skipped() -> str | None:
    if not launched_by_mpi():
        return f"distributed tests run under MPI with 2 ranks: {RUN} (.ci/run does)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed: pip install 'steadygrad[mpi]'"
    if dist.world_size() != 2:
        return f"distributed tests need exactly 2 ranks, got {dist.world_size()}: {RUN}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Under MPI each rank gets a base temporary directory of its own (the ranks would
    otherwise number, make and clean up pytest's shared ones at the same time)."""
    if launched_by_mpi() and _why_skipped() is None and config.option.basetemp is None:
        config.option.basetemp = os.path.join(
            tempfile.gettempdir(), f"sg-dist-{os.getuid()}-{os.getppid()}-rank{dist.rank()}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in pathlib.Path(item.path).parents]
    why = _why_skipped() if mine else None
    if why:
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=why))
