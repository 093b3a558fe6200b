"""Shared fixtures: run a test on every ISA path this machine supports (others are skipped
with a visible reason), thread-count control, and float64 reference tolerances."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

import steadygrad as sg

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


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    before = sg.get_num_threads()
    sg.set_num_threads(n)
    try:
        yield
    finally:
        sg.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def gemm_tolerance(k: int, scale: float = 1.0) -> float:
    """Absolute tolerance for a float32 dot product of length k of O(scale) terms."""
    return 8.0 * np.finfo(np.float32).eps * max(k, 1) ** 0.5 * scale * 4.0
