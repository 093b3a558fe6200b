"""Optimizer-step benchmark (steadygrad vs torch.optim); see steadygrad.bench.optim.

Run: flock /tmp/steadygrad-bench.lock python benchmarks/bench_optim.py [--threads 1 2]
"""

from __future__ import annotations

from steadygrad.bench.optim import main

if __name__ == "__main__":
    main()
