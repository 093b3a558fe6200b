"""steadygrad: fast, stable neural-network training on the CPU.

Hot paths (GEMM, layer backward passes, fused optimizer steps) are C++ with AVX-512/AVX2
kernels chosen at run time; this package is the thin Python layer over them.
"""

from __future__ import annotations

from steadygrad import nn, ops, optim
from steadygrad._core import (
    __version__,
    cpu_info,
    get_isa,
    get_num_threads,
    set_isa,
    set_num_threads,
)
from steadygrad.random import manual_seed

__all__ = [
    "__version__",
    "cpu_info",
    "get_isa",
    "get_num_threads",
    "manual_seed",
    "nn",
    "ops",
    "optim",
    "set_isa",
    "set_num_threads",
]
