"""Thin wrapper: `python benchmarks/bench_memory.py [options]` = `steadygrad-bench memory [options]`."""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["memory", *sys.argv[1:]]))
