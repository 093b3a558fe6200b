"""Thin wrapper: `python benchmarks/bench_train.py [options]` = `steadygrad-bench train [options]`."""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
