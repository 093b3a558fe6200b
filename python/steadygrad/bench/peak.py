"""The FMA peak (GFLOP/s) that "% of peak" figures divide by. Prefers the GEMM suite's
measured probe; without it, a nominal figure from the clock and the ISA's FMA width."""

from __future__ import annotations

from typing import Any

import steadygrad as sg

# flops per cycle per core: 2 FMA pipes x lanes x 2 (Zen 3 AVX2: 2 x 8 x 2; AVX-512: 2 x 16 x 2)
_FLOPS_PER_CYCLE = {"avx512": 64, "avx2": 32, "generic": 8}
_cache: dict[int, dict[str, Any]] = {}


def _nominal_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def fma_peak(threads: int) -> dict[str, Any]:
    """{'gflops': float | None, 'source': str} for `threads` cores on the ISA in use."""
    if threads in _cache:
        return _cache[threads]
    result: dict[str, Any] = {"gflops": None, "source": "unavailable"}
    try:
        from steadygrad.bench import gemm as gemm_suite

        probe = getattr(gemm_suite, "fma_peak_gflops", None)
        if probe is not None:
            result = {"gflops": float(probe(threads)), "source": "measured FMA probe (gemm suite)"}
    except ImportError:
        pass
    if result["gflops"] is None:
        mhz = _nominal_mhz()
        if mhz:
            fpc = _FLOPS_PER_CYCLE.get(sg.get_isa(), 8)
            result = {"gflops": threads * fpc * mhz / 1e3,
                      "source": f"nominal: {threads} x {fpc} flop/cycle x {mhz:.0f} MHz"}
    _cache[threads] = result
    return result
