"""The sklearn benchmark suite (steadygrad-bench sklearn, benchmarks/bench_sklearn.py): its
tiny case measured in this process for both frameworks, and the report's rows. No timing
is asserted: the figures' presence and the accuracies' agreement are."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is in the test extras")

from steadygrad.bench import suite
from steadygrad.bench.sklearn import SUITE


def test_tiny_case_measures_both_and_reports_the_ratio() -> None:
    (case,) = SUITE.cases("tiny")
    assert set(case.contenders) == {"steadygrad", "sklearn"}
    plan = SUITE.plan("tiny")
    m = suite.Measured(case, 1)
    for name in case.contenders:
        r = SUITE.measure(case, name, plan)
        assert len(r["samples"]) == plan.per_round and all(s > 0 for s in r["samples"])
        assert r["epochs_run"] == [case.params["epochs"]] * plan.per_round
        m.results[name] = {**r, "seconds": r["samples"][0]}
    # the same initial weights and epochs: test accuracies agree within a few test samples
    ours, theirs = (m.results[n]["accuracy"][0] for n in ("steadygrad", "sklearn"))
    assert abs(ours - theirs) <= 0.03
    report = SUITE.report([m], suite.RunInfo("tiny", plan, [1]))
    (row,) = report["rows"]
    assert row["speedup_x"] == pytest.approx(m.seconds("sklearn") / m.seconds("steadygrad"))
    assert row["steadygrad_acc"] == ours and row["sklearn_acc"] == theirs
    assert {key for key, _ in report["columns"]} <= set(row)
