"""The distributed benchmark suite without launching anything: the scaling model's formula,
its fit of latency and bandwidth, and the report's derived figures from given timings (the
suite's real run, under mpiexec, is tests/distributed/test_launch.py's)."""

from __future__ import annotations

import pytest

from steadygrad.bench import distributed, scaling, suite


def test_ring_allreduce_model():
    assert scaling.ring_allreduce_s(1e6, 1, 1e-5, 1e9) == 0.0
    # p = 2: two messages of latency and the whole buffer once over the link
    assert scaling.ring_allreduce_s(1e6, 2, 1e-5, 1e9) == pytest.approx(2e-5 + 1e-3)
    # large p: the bandwidth term tends to twice the buffer
    assert scaling.ring_allreduce_s(1e6, 1000, 0.0, 1e9) == pytest.approx(2e-3 * 999 / 1000)


def test_latency_and_bandwidth_fit_invert_the_model():
    alpha, beta, n = 7e-6, 3e9, 4e6
    small = scaling.ring_allreduce_s(0.0, 2, alpha, beta)
    large = scaling.ring_allreduce_s(n, 2, alpha, beta)
    got = scaling.fit_latency_bandwidth(small, large, n)
    assert got == pytest.approx((alpha, beta))


def test_projection_efficiency():
    p = scaling.project(0.01, 0.5, 1e8, 8, 1e-5, 1e9)
    comm = scaling.ring_allreduce_s(1e8, 8, 1e-5, 1e9)
    assert p["step_ms"] == pytest.approx((0.01 + 0.5 * comm) * 1e3)
    assert p["efficiency"] == pytest.approx(0.01 / (0.01 + 0.5 * comm))
    rows = scaling.projections(0.01, 0.5, 1e8, 1e-5)
    assert [(r["network"], r["ranks"]) for r in rows] == [
        (net, p) for net in scaling.NETWORKS for p in scaling.RANKS]


def test_report_derives_ratios_hidden_fraction_and_projection():
    case = distributed.SUITE.named_cases(["M"])[0]
    m = suite.Measured(case, 1)
    for name, s in [("steadygrad_1x1", 0.030), ("steadygrad_2x1", 0.020),
                    ("steadygrad_1x2", 0.018), ("torch_2x1", 0.040), ("torch_1x2", 0.030)]:
        m.results[name] = {"seconds": s, "best_seconds": s, "samples": [s]}
    m.results["steadygrad_2x1"].update(allreduce_s=0.004, wait_s=0.001, grad_bytes=8e6,
                                       allreduce_small_s=2e-5)
    out = distributed.SUITE.report([m], suite.RunInfo("quick", distributed.SUITE.plan("quick"), [1]))
    (row,) = out["rows"]
    assert row["torch_x"] == pytest.approx(2.0) and row["torch_target_met"]
    assert row["own_1x2_x"] == pytest.approx(0.018 / 0.020)  # 1x2 time / 2x1 time: 2x1 slower
    assert row["own_1x2_met"]  # within 1.3x
    assert row["hidden_pct"] == pytest.approx(75.0)
    assert row["exposed_pct_of_step"] == pytest.approx(5.0)
    assert len(row["projection"]) == len(scaling.NETWORKS) * len(scaling.RANKS)
    assert any(n.startswith("M projected on 25 Gb/s") for n in out["notes"])
