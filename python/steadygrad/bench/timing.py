"""Timing and machine-description helpers shared by every benchmark suite."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import steadygrad as sg


def median_time(fn: Callable[[], Any], repeat: int = 7, warmup: int = 2, min_time: float = 0.0) -> float:
    """Median wall time of fn() in seconds over `repeat` runs, after `warmup` runs.

    If min_time > 0, each run loops fn() until at least min_time has passed (for tiny ops)
    and reports the time per call.
    """
    for _ in range(warmup):
        fn()
    times = sorted(time_sample(fn, min_time) for _ in range(repeat))
    return times[len(times) // 2]


def time_sample(fn: Callable[[], Any], min_time: float = 0.0) -> float:
    """One timing sample: calls fn() until at least min_time has passed (at least once) and
    returns the seconds per call. The one sampling loop every suite uses."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / calls


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries numpy loaded, with the kernel ('architecture') they run."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure BLAS is loaded
    return [
        {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for d in threadpool_info()
        if d.get("user_api") == "blas"
    ]


def machine_info() -> dict[str, Any]:
    info = dict(sg.cpu_info())
    info["python"] = platform.python_version()
    info["numpy"] = np.__version__
    info["blas"] = blas_info()
    info["env"] = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def tiny() -> bool:
    """True under the hidden `steadygrad-bench --tiny` (or STEADYGRAD_BENCH_TINY=1): suites
    then run the smallest real measurement they have, so the CLI tests finish in seconds."""
    return os.environ.get("STEADYGRAD_BENCH_TINY", "") not in ("", "0")
