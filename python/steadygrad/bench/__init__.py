"""Benchmark suites shared by `steadygrad-bench` and the scripts in benchmarks/."""

from __future__ import annotations
