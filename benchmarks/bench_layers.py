"""Thin wrapper: `python benchmarks/bench_layers.py [options]` = `steadygrad-bench layers [options]`."""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["layers", *sys.argv[1:]]))
