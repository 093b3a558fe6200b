"""sg.ops.global_norm: L2 and inf against float64 references on every ISA path, bitwise
identical for 1 and 2 threads and across every supported ISA path (sizes spanning several
8192-element chunks plus tails), NaN/Inf inputs, n = 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import float_bits, num_threads

import steadygrad as sg

TIME_BUDGET_S = 10
CHUNK = 8192
# Around the 16-lane step and the 8192 chunk; >= 4 chunks engages the parallel path.
SIZES = [1, 7, 15, 16, 17, 33, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5, 4 * CHUNK,
         4 * CHUNK + 17, 9 * CHUNK + 8191, 250_007]


def _x(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + n)
    return (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3], n)).astype(np.float32)


@pytest.mark.parametrize("n", SIZES)
def test_l2_and_inf_vs_float64(isa, n):
    x = _x(n)
    copy = x.copy()
    l2 = sg.ops.global_norm(x)
    np.testing.assert_array_equal(x, copy)
    want = math.sqrt(float(np.sum(x.astype(np.float64) ** 2)))
    # Squares of float32 values are exact in double; only the double sums round.
    assert abs(l2 - want) <= 1e-13 * want, f"n={n}: L2 {l2!r} vs float64 {want!r}"
    assert sg.ops.global_norm(x, 2.0) == l2 and sg.ops.global_norm(x, 2) == l2
    assert sg.ops.global_norm(x, float("inf")) == float(np.max(np.abs(x))), f"n={n}: inf norm"
    assert sg.ops.global_norm(x, math.inf) == sg.ops.global_norm(x, np.inf)


def test_any_rank_is_the_flat_norm(isa):
    x = _x(6 * 7 * 11).reshape(6, 7, 11)
    assert sg.ops.global_norm(x) == sg.ops.global_norm(x.ravel())
    assert sg.ops.global_norm(x, np.inf) == sg.ops.global_norm(x.ravel(), np.inf)


def test_matches_torch(isa):
    x = _x(3 * CHUNK + 123)
    t = torch.from_numpy(x.astype(np.float64))
    assert abs(sg.ops.global_norm(x) - float(torch.linalg.vector_norm(t))) <= 1e-13 * float(
        torch.linalg.vector_norm(t))
    assert sg.ops.global_norm(x, np.inf) == float(torch.linalg.vector_norm(t, np.inf))


def test_no_float32_overflow(isa):
    """Squares accumulate in double: float32-max inputs give a finite L2 (torch float32: inf)."""
    x = np.full(1000, 3.0e38, np.float32)
    assert sg.ops.global_norm(x) == pytest.approx(3.0e38 * math.sqrt(1000), rel=1e-7)


def test_empty(isa):
    for shape in [(0,), (3, 0)]:
        x = np.zeros(shape, np.float32)
        assert sg.ops.global_norm(x) == 0.0
        assert sg.ops.global_norm(x, np.inf) == 0.0


@pytest.mark.parametrize("n", [5, 40, 5 * CHUNK + 3])
@pytest.mark.parametrize("where", ["first", "body", "last"])
def test_nan_inf_inputs(isa, n, where):
    pos = {"first": 0, "body": n // 2, "last": n - 1}[where]
    x = _x(n)
    for bad, l2_want, inf_want in [(np.inf, math.inf, math.inf), (-np.inf, math.inf, math.inf),
                                   (np.nan, math.nan, math.nan)]:
        y = x.copy()
        y[pos] = bad
        l2, ninf = sg.ops.global_norm(y), sg.ops.global_norm(y, np.inf)
        assert (math.isnan(l2) if math.isnan(l2_want) else l2 == l2_want), (bad, where, l2)
        assert (math.isnan(ninf) if math.isnan(inf_want) else ninf == inf_want), (bad, where, ninf)
    y = x.copy()
    y[pos], y[n // 3] = np.inf, np.nan  # both: NaN wins, as in numpy and torch
    assert math.isnan(sg.ops.global_norm(y)) and math.isnan(sg.ops.global_norm(y, np.inf))


@pytest.mark.parametrize("n", SIZES)
def test_thread_count_invariance(isa, n):
    x = _x(n, seed=1)
    res = {}
    for t in (1, 2):
        with num_threads(t):
            res[t] = (float_bits(sg.ops.global_norm(x)), float_bits(sg.ops.global_norm(x, np.inf)))
    assert res[1] == res[2], f"n={n}: 1 thread {res[1]} vs 2 threads {res[2]} (bits)"


@pytest.mark.parametrize("n", SIZES)
def test_bitwise_identical_across_isas(n):
    supported = list(sg.cpu_info()["isa_supported"])
    if len(supported) < 2:
        pytest.skip(f"only {supported} supported here: nothing to compare")
    x = _x(n, seed=2)
    before = sg.get_isa()
    bits = {}
    try:
        for name in supported:
            sg.set_isa(name)
            with num_threads(2):
                bits[name] = (float_bits(sg.ops.global_norm(x)),
                              float_bits(sg.ops.global_norm(x, np.inf)))
    finally:
        sg.set_isa(before)
    assert len(set(bits.values())) == 1, f"n={n}: norms differ between ISA paths: {bits}"
