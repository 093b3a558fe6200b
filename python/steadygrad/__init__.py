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
from steadygrad.diagnostics import check_init
from steadygrad.io import load, save
from steadygrad.random import manual_seed
from steadygrad.train import evaluate, fit, predict

__all__ = [
    "__version__",
    "check_init",
    "cpu_info",
    "evaluate",
    "fit",
    "get_isa",
    "get_num_threads",
    "load",
    "manual_seed",
    "nn",
    "ops",
    "optim",
    "predict",
    "save",
    "set_isa",
    "set_num_threads",
]
