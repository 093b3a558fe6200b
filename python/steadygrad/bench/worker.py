"""Fresh-process measurements: `python -m steadygrad.bench.worker '<json task>'` runs one
framework on one config and prints one JSON line. Used for peak memory (every framework,
a clean heap each) and for JAX step timings (its thread pool is sized at import, so the
thread count is set through CPU affinity before the import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def limit_threads(framework: str, threads: int) -> None:
    """Must run before the framework is imported."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if framework == "jax":
        try:
            cpus = sorted(os.sched_getaffinity(0))[:threads]
            os.sched_setaffinity(0, cpus)
        except (AttributeError, OSError):
            pass


def set_runtime_threads(framework: str, threads: int) -> None:
    if framework == "steadygrad":
        import steadygrad as sg

        sg.set_num_threads(threads)
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)


def import_framework(framework: str) -> None:
    """Imports everything the framework's step needs and runs one tiny op, so thread pools
    and lazy modules count in the baseline, not in the model's memory."""
    import numpy as np

    if framework == "steadygrad":
        import steadygrad as sg
        from steadygrad import nn, optim  # noqa: F401

        a = np.ones((8, 8), np.float32)
        sg.ops.gemm(a, a)
    elif framework == "torch":
        import torch

        (torch.ones(8, 8) @ torch.ones(8, 8)).sum().item()
    elif framework == "jax":
        import jax.numpy as jnp
        import optax  # noqa: F401

        (jnp.ones((8, 8)) @ jnp.ones((8, 8))).block_until_ready()


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    from steadygrad.bench import memory, train

    framework, threads = task["framework"], int(task["threads"])
    limit_threads(framework, threads)
    import_framework(framework)
    set_runtime_threads(framework, threads)
    if task["task"] == "memory":
        return memory.measure_in_process(framework, task["config"], int(task.get("steps", 3)))
    if task["task"] == "train":
        return train.time_in_process(framework, task["config"], int(task["repeat"]),
                                     float(task["min_time"]))
    raise ValueError(f"unknown worker task {task['task']!r}")


def spawn(task: dict[str, Any], timeout: float = 900.0,
          env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs `task` in a fresh interpreter; returns its JSON, or {'error': ...}."""
    env = dict(os.environ, **(env_extra or {}))
    cmd = [sys.executable, "-m", "steadygrad.bench.worker", json.dumps(task)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"worker exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


def main() -> None:
    task = json.loads(sys.argv[1])
    try:
        result = run_task(task)
    except Exception as exc:  # reported to the parent as a row error, not a crash
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, default=float), flush=True)


if __name__ == "__main__":
    main()
