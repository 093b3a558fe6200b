"""`python -m steadygrad`: print what steadygrad runs on and time one GEMM against numpy."""

from __future__ import annotations

import numpy as np

import steadygrad as sg
from steadygrad.bench.timing import median_seconds


def main() -> None:
    info = sg.cpu_info()
    print("steadygrad", info["version"])
    for key in ("cpu", "isa", "isa_supported", "threads", "compiler"):
        print(f"  {key:14s} {info[key]}")
    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    t_sg = median_seconds(lambda: sg.ops.gemm(a, b, out=out))
    t_np = median_seconds(lambda: np.matmul(a, b, out=out))
    flops = 2.0 * n**3
    print(f"gemm {n}^3: steadygrad {flops / t_sg / 1e9:7.1f} GFLOP/s, "
          f"numpy {flops / t_np / 1e9:7.1f} GFLOP/s, ratio {t_np / t_sg:.2f}x")


if __name__ == "__main__":
    main()
