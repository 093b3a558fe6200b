"""Thin wrapper: `python benchmarks/bench_gemm.py [options]` = `steadygrad-bench gemm [options]`.
Run numpy unforced: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gemm.py
"""

from __future__ import annotations

import sys

from steadygrad.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["gemm", *sys.argv[1:]]))
