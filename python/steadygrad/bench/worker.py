"""The process side of the runner: `python -m steadygrad.bench.worker '<json task>'` imports
one runtime's framework, sizes it to the thread count, then runs the task's jobs (a suite's
(case, contender) pairs) and prints one JSON line per job as it finishes. `spawn` is the
parent's end: it starts that process and hands each line to a callback."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from steadygrad.bench.suite import Case, Plan, Runtime, load

OnResult = Callable[[int, dict[str, Any]], None]  # (job index, result)


def limit_threads(framework: str, threads: int) -> None:
    """JAX sizes its pool from the CPUs it may use when it is imported: pin them first."""
    if framework == "jax":
        with contextlib.suppress(AttributeError, OSError):  # not Linux: all CPUs
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def set_runtime_threads(framework: str, threads: int) -> None:
    if framework == "steadygrad":
        import steadygrad as sg

        sg.set_num_threads(threads)
    elif framework == "torch":
        import torch

        torch.set_num_threads(threads)
    try:  # numpy's BLAS (already loaded by steadygrad's import) in every runtime
        tpc = importlib.import_module("threadpoolctl")
    except ImportError:  # OPENBLAS_NUM_THREADS from spawn() sized it at load
        return
    tpc.threadpool_limits(limits=threads, user_api="blas")


def import_framework(framework: str) -> None:
    """Imports everything the framework's runs need and runs one tiny op, so thread pools
    and lazy modules exist before any measurement (and count in a memory baseline)."""
    import numpy as np

    if framework == "steadygrad":
        import steadygrad as sg
        from steadygrad import nn, optim  # noqa: F401

        a = np.ones((8, 8), np.float32)
        sg.ops.gemm(a, a)
    elif framework == "numpy":
        np.ones((8, 8), np.float32) @ np.ones((8, 8), np.float32)
    elif framework == "torch":
        import torch

        (torch.ones(8, 8) @ torch.ones(8, 8)).sum().item()
    elif framework == "jax":
        jnp = importlib.import_module("jax.numpy")
        importlib.import_module("optax")
        (jnp.ones((8, 8)) @ jnp.ones((8, 8))).block_until_ready()
    elif framework == "sklearn":
        importlib.import_module("sklearn.neural_network")
        np.ones((8, 8)) @ np.ones((8, 8))
    else:
        raise ValueError(f"unknown framework {framework!r}")


PEER_MODULES = ("torch", "jax")


def process_record(framework: str) -> dict[str, Any]:
    """Which process a job ran in and which peer frameworks were loaded in it: each runtime
    gets a fresh process of its own, so a steadygrad or numpy job never shares one with torch's
    or JAX's thread pools (tests check this through a real run)."""
    return {"pid": os.getpid(), "framework": framework,
            "loaded": sorted(m for m in PEER_MODULES if m in sys.modules)}


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}


def run_task(task: dict[str, Any], emit: OnResult) -> None:
    runtime = Runtime.from_json(task["runtime"])
    threads = int(task["threads"])
    jobs = task["jobs"]
    try:
        suite = load(task["suite"])
        limit_threads(runtime.framework, threads)
        import_framework(runtime.framework)
        set_runtime_threads(runtime.framework, threads)
    except Exception as exc:  # every job of this runtime fails the same way
        for i in range(len(jobs)):
            emit(i, _error(exc))
        return
    plan = Plan(**task["plan"])
    for i, job in enumerate(jobs):
        try:
            result = suite.measure(Case.from_json(job["case"]), job["contender"], plan)
        except Exception as exc:  # reported to the parent as a row error, not a crash
            result = _error(exc)
        result["process"] = process_record(runtime.framework)
        emit(i, result)


def _print_line(i: int, result: dict[str, Any]) -> None:
    print(json.dumps({"job": i, "result": result}, default=float), flush=True)


def spawn(task: dict[str, Any], on_result: OnResult, timeout: float = 900.0) -> None:
    """Runs `task` in a fresh interpreter; `on_result` gets every job's result as its line
    arrives (a job the process never reported gets {'error': ...})."""
    runtime = Runtime.from_json(task["runtime"])
    env = dict(os.environ)
    # numpy's OpenBLAS sizes its pool when it loads, before any code of ours runs
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(task["threads"])
    for key, value in runtime.env:
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, "-m", "steadygrad.bench.worker", json.dumps(task)]
    done: set[int] = set()
    killed = threading.Event()
    with (tempfile.TemporaryFile("w+") as err,  # a pipe could fill and stall the child
          subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env) as proc):

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith('{"job"'):
                    msg = json.loads(line)
                    done.add(int(msg["job"]))
                    on_result(int(msg["job"]), msg["result"])
            rc = proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        tail = (err.read().strip().splitlines() or ["(no output)"])[-1]
    why = (f"timed out after {timeout:.0f} s" if killed.is_set()
           else f"worker exit {rc}: {tail[:200]}")
    for i in range(len(task["jobs"])):
        if i not in done:
            on_result(i, {"error": why})


if __name__ == "__main__":
    run_task(json.loads(sys.argv[1]), _print_line)
