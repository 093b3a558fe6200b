"""`python -m steadygrad`: what steadygrad runs on (version, CPU, ISA path, threads, compiler)
and one 1024^3 GEMM timed against numpy; `--help` says so, `--no-gemm` skips the timing."""

from __future__ import annotations

import argparse

import numpy as np

import steadygrad as sg
from steadygrad.bench.report import ratio_cell
from steadygrad.bench.timing import median_seconds

GEMM_N = 1024


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m steadygrad`."""
    p = argparse.ArgumentParser(
        prog="python -m steadygrad",
        description="Print the steadygrad build and what it runs on (version, CPU, the ISA "
                    "path in use and the supported ones, threads, compiler), then time one "
                    f"{GEMM_N}^3 float32 GEMM in steadygrad and in numpy (a few seconds).",
        epilog="Benchmarks of every kernel family and of whole training steps against numpy, "
               "PyTorch and JAX: steadygrad-bench --help. STEADYGRAD_ISA=generic|avx2|avx512 "
               "selects a lower ISA path, OMP_NUM_THREADS the thread count.")
    p.add_argument("--version", action="version", version=f"steadygrad {sg.__version__}")
    p.add_argument("--no-gemm", dest="gemm", action="store_false",
                   help="only print the build and CPU, time nothing")
    return p


def main(argv: list[str] | None = None) -> None:
    """Prints the build and CPU information and, unless --no-gemm, the GEMM comparison."""
    args = build_parser().parse_args(argv)
    info = sg.cpu_info()
    print("steadygrad", info["version"])
    for key in ("cpu", "isa", "isa_supported", "threads", "compiler"):
        print(f"  {key:14s} {info[key]}")
    if not args.gemm:
        return
    n = GEMM_N
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t_sg = median_seconds(lambda: sg.ops.gemm(a, b, out=out))
    t_np = median_seconds(lambda: np.matmul(a, b, out=out))
    flops = 2.0 * n**3
    print(f"gemm {n}^3: steadygrad {flops / t_sg / 1e9:7.1f} GFLOP/s, "
          f"numpy {flops / t_np / 1e9:7.1f} GFLOP/s: steadygrad {ratio_cell(t_np / t_sg)}")


if __name__ == "__main__":
    main()
