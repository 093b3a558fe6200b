"""GEMM benchmark: steadygrad vs numpy (OpenBLAS) and torch; see steadygrad.bench.gemm.

Usage: python benchmarks/bench_gemm.py [--quick] [--threads 1,2] [--json PATH]
Run numpy unforced: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_gemm.py
"""

from __future__ import annotations

from steadygrad.bench.gemm import main

if __name__ == "__main__":
    main()
