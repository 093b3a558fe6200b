"""Optional peer frameworks (numpy, PyTorch, JAX, scikit-learn): which are importable, their versions,
and the machine description the CLI prints and the JSON records (the one `machine_info`).
A missing peer is a skip, never an error."""

from __future__ import annotations

import importlib
import os
import platform
from typing import Any

import numpy as np

import steadygrad as sg

PEERS = ("numpy", "torch", "jax", "sklearn")
_MODULES = {"numpy": ("numpy",), "torch": ("torch",), "jax": ("jax", "optax"),
            "sklearn": ("sklearn",)}
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def peer_status(name: str) -> tuple[bool, str]:
    """(available, version or reason). Imports the peer's modules; never raises."""
    versions = []
    for mod in _MODULES[name]:
        try:
            m = importlib.import_module(mod)
        except Exception as exc:  # ImportError, or a broken install raising anything else
            return False, f"{mod} not importable ({type(exc).__name__}: {str(exc)[:80]})"
        versions.append(f"{mod} {getattr(m, '__version__', '?')}")
    return True, ", ".join(versions)


def available_peers(requested: set[str]) -> tuple[set[str], dict[str, str]]:
    """Splits the requested peers into importable ones and {peer: reason} for the rest."""
    ok: set[str] = set()
    skipped: dict[str, str] = {}
    for name in sorted(requested):
        good, info = peer_status(name)
        if good:
            ok.add(name)
        else:
            skipped[name] = info
    return ok, skipped


def blas_info() -> list[dict[str, Any]]:
    """The BLAS libraries numpy loaded, with the kernel ('architecture') they run."""
    try:
        tpc = importlib.import_module("threadpoolctl")
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    np.ones((2, 2)) @ np.ones((2, 2))  # make sure BLAS is loaded
    keys = ("internal_api", "version", "architecture", "num_threads", "filepath")
    return [{k: d.get(k) for k in keys} for d in tpc.threadpool_info()
            if d.get("user_api") == "blas"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def openblas_warnings() -> list[str]:
    """numpy's OpenBLAS picks its kernel from these; a stale value skews numpy figures."""
    return [
        f"{v}={os.environ[v]} is set: numpy/OpenBLAS figures use that override "
        f"(run with `env -u {v}` for a fair comparison)"
        for v in OPENBLAS_VARS
        if v in os.environ
    ]


def machine_info(compare: set[str]) -> dict[str, Any]:
    """Everything the header shows and the JSON records about this machine and build."""
    info = dict(sg.cpu_info())
    flags = cpu_flags()
    info["cpu_model"] = cpu_model()
    info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
    info["available_cpus"] = available_cpus()
    info["python"] = platform.python_version()
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except (AttributeError, OSError):
        info["loadavg_start"] = None
    versions: dict[str, str | None] = {"steadygrad": sg.__version__, "numpy": np.__version__}
    for name in ("torch", "jax", "sklearn"):
        if name in compare:
            ok, ver = peer_status(name)
            if ok:  # "jax 0.4, optax 0.2" -> {"jax": "0.4", "optax": "0.2"}
                versions.update(dict(part.split(" ", 1) for part in ver.split(", ")))
    info["versions"] = versions
    info["blas"] = blas_info()
    info["env"] = {
        k: os.environ.get(k)
        for k in (*OPENBLAS_VARS, "OMP_NUM_THREADS", "OMP_PROC_BIND", "STEADYGRAD_ISA")
    }
    info["warnings"] = openblas_warnings() + load_warnings()
    return info


def load_warnings() -> list[str]:
    """Other processes on the cores skew every timing (spinning OpenMP threads worst)."""
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):
        return []
    cpus = available_cpus()
    if load1 > 0.5 * cpus:
        return [f"load average {load1:.2f} on {cpus} CPUs before the run: other processes "
                "are competing for the cores, timings will be noisy"]
    return []
