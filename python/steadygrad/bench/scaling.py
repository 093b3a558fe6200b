"""The data-parallel scaling model of the distributed suite: a ring allreduce of n bytes over
p ranks sends 2 (p - 1) messages of n / p bytes from each rank, so

    T_allreduce(n, p) = 2 (p - 1) * alpha + 2 (p - 1) / p * n / beta

(alpha: per-message latency, beta: per-link bandwidth in bytes/s), and a data-parallel step
whose compute takes t_c (the same per rank at a fixed per-rank batch) and hides a fraction h
of its allreduce behind the backward takes

    T_step(p) = t_c + (1 - h) * T_allreduce(n, p),    efficiency(p) = t_c / T_step(p).

alpha and beta come from two measured allreduces (a tiny one: latency; the gradient buffer:
bandwidth) on 2 ranks; a network's beta replaces the measured one to project onto it."""

from __future__ import annotations

from typing import Any

FORMULA = ("T_step(p) = t_c + (1 - h) * (2 (p - 1) alpha + 2 (p - 1) / p * n / beta), "
           "efficiency = t_c / T_step(p)")


def ring_allreduce_s(nbytes: float, ranks: int, alpha: float, beta: float) -> float:
    """Seconds of a ring allreduce of `nbytes` across `ranks` (0 for one rank)."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / beta


def fit_latency_bandwidth(small_s: float, large_s: float, large_bytes: float,
                          ranks: int = 2) -> tuple[float, float]:
    """(alpha, beta) from the times of an allreduce of a few bytes (latency only) and one of
    `large_bytes`, both measured across `ranks`."""
    alpha = small_s / (2 * (ranks - 1))
    transfer = max(large_s - small_s, 1e-12)
    return alpha, 2 * (ranks - 1) / ranks * large_bytes / transfer


def project(compute_s: float, hidden: float, grad_bytes: float, ranks: int, alpha: float,
            beta: float) -> dict[str, float]:
    """The projected step time and efficiency at `ranks` (see the module docstring)."""
    comm = ring_allreduce_s(grad_bytes, ranks, alpha, beta)
    step = compute_s + (1.0 - min(max(hidden, 0.0), 1.0)) * comm
    return {"ranks": ranks, "allreduce_ms": comm * 1e3, "step_ms": step * 1e3,
            "efficiency": compute_s / step if step > 0 else 1.0}


NETWORKS = {"25 Gb/s": 25e9 / 8, "100 Gb/s": 100e9 / 8}  # bytes/s per link
RANKS = (8, 64, 512)


def projections(compute_s: float, hidden: float, grad_bytes: float, alpha: float
                ) -> list[dict[str, Any]]:
    """project() for each network of NETWORKS and each rank count of RANKS."""
    return [{"network": net, **project(compute_s, hidden, grad_bytes, p, alpha, beta)}
            for net, beta in NETWORKS.items() for p in RANKS]
