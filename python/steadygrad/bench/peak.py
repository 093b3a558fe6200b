"""The FMA peak (GFLOP/s) that "% of peak" figures divide by: the GEMM family's measured
FMA-loop probe (`_core._fma_peak_gflops`); without it, a nominal figure from the clock and the
ISA's FMA width."""

from __future__ import annotations

from typing import Any

import steadygrad as sg
from steadygrad import _core

# flops per cycle per core: 2 FMA pipes x lanes x 2 (Zen 3 AVX2: 2 x 8 x 2; AVX-512: 2 x 16 x 2)
_FLOPS_PER_CYCLE = {"avx512": 64, "avx2": 32, "generic": 8}
_cache: dict[int, dict[str, Any]] = {}
_probe: dict[str, float] = {}


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
    probe = getattr(_core, "_fma_peak_gflops", None)  # the gemm family's FMA-loop probe
    if probe is not None:
        # one-core probe x threads (cores do not share FMA units); best of 3 short runs, since
        # a busy neighbour can only make the probe read low (and % of peak read high)
        if "one_core" not in _probe:
            _probe["one_core"] = max(float(probe(sg.get_isa(), 0.15)) for _ in range(3))
        one = _probe["one_core"]
        result = {"gflops": threads * one,
                  "source": f"measured FMA peak {one:.1f} GFLOP/s per core ({sg.get_isa()}) "
                            f"x {threads} threads"}
    if result["gflops"] is None:
        mhz = _nominal_mhz()
        if mhz:
            fpc = _FLOPS_PER_CYCLE.get(sg.get_isa(), 8)
            result = {"gflops": threads * fpc * mhz / 1e3,
                      "source": f"nominal: {threads} x {fpc} flop/cycle x {mhz:.0f} MHz"}
    _cache[threads] = result
    return result
