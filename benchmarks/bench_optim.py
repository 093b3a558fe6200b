"""Thin wrapper: `python benchmarks/bench_optim.py [options]` = `steadygrad-bench optim [options]`."""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["optim", *sys.argv[1:]]))
