"""Benchmark suites shared by `steadygrad-bench` and the scripts in benchmarks/.

suite.py is the contract (Suite, Case, Runtime, Plan); gemm, optim, layers, train and memory
each define one Suite; runner.py measures any of them by one method (a fresh process per
runtime, interleaved rounds, medians) through worker.py, whose timing loop is timing.py;
cli.py parses options and report.py prints. Nothing here is imported by the library itself
(except timing.median_seconds, which `python -m steadygrad` uses)."""

from __future__ import annotations
